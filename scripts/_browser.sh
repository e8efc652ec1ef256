# Sourced by scripts/test: make sure headless Chromium (Debian's package) is there for the browser tests
# (tests/getiaction_export/test_html_report.py), then export CHROMIUM (its path) and
# GETIACTION_REQUIRE_BROWSER=1 (the tests fail, rather than skip, when the browser does not work).
# Idempotent and quick: when chromium answers, nothing is installed. Otherwise it runs
#   apt-get install -y --no-install-recommends chromium
# as root, or through sudo when that needs no password, and stops with what to install when neither works.
# GETIACTION_BROWSER=skip leaves the browser out (the browser tests then skip).
#   source scripts/_browser.sh      # or: bash scripts/_browser.sh
set -euo pipefail
if [ "${GETIACTION_BROWSER:-}" = skip ]; then
    echo "[browser] GETIACTION_BROWSER=skip: the browser tests will be skipped" >&2
else
    CHROMIUM="${CHROMIUM:-$(command -v chromium || true)}"
    if [ -z "$CHROMIUM" ] || ! "$CHROMIUM" --version >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ]; then
            SUDO=()
        elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            SUDO=(sudo -n)
        else
            echo "[browser] Chromium is missing and this user cannot install it (not root, no passwordless sudo)." >&2
            echo "[browser] Install it: apt-get install -y --no-install-recommends chromium" >&2
            echo "[browser] (or set CHROMIUM=/path/to/chromium, or GETIACTION_BROWSER=skip to skip the browser tests)" >&2
            exit 1
        fi
        echo "[browser] installing Debian's chromium" >&2
        if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >&2
        then  # a fresh machine may have no package lists yet
            "${SUDO[@]}" apt-get update -q >&2
            "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >&2
        fi
        CHROMIUM="$(command -v chromium)"
    fi
    export CHROMIUM GETIACTION_REQUIRE_BROWSER=1
    echo "[browser] $("$CHROMIUM" --version 2>/dev/null)" >&2
fi
