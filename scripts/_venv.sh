# Sourced by scripts/run and scripts/test: create or reuse .venv at the repo root, with this project installed
# editable and the extras asked for in GETIACTION_EXTRAS (scripts/run: none, what running needs; scripts/test: dev).
# Idempotent: when the stamp says this pyproject.toml is installed with (at least) these extras, it returns at once.
# pip's own output goes to .venv/install.log; the console gets a few [setup] lines (the log's end on failure).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
EXTRAS="${GETIACTION_EXTRAS-}"
STAMP="$VENV/.getiaction-installed"
LOG="$VENV/install.log"
HASH="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"

_installed_covers() {  # the stamp: "<pyproject hash> <extra,extra,...>"; wanted extras must be a subset
    local hash have want
    { read -r hash have < "$STAMP"; } 2>/dev/null || return 1
    [ "$hash" = "$HASH" ] || return 1
    for want in ${EXTRAS//,/ }; do
        [[ ",$have," == *",$want,"* ]] || return 1
    done
}

if [ ! -x "$PY" ] || ! _installed_covers; then
    started=$SECONDS
    [ -x "$PY" ] || { echo "[setup] creating $VENV" >&2; python3 -m venv "$VENV"; }
    echo "[setup] installing getiaction-export${EXTRAS:+[$EXTRAS]} into .venv (pip's output: .venv/install.log)" >&2
    _pip() { "$PY" -m pip install --disable-pip-version-check "$@" >> "$LOG" 2>&1; }
    TARGET="$ROOT${EXTRAS:+[$EXTRAS]}"
    # One resolution for everything. With no torch yet, ask for the CPU build this machine keeps on local disk
    # (torch 2.13.0; an unpinned torch would be a multi-GB CUDA download); elsewhere whatever torch pip resolves.
    if ! {
        if "$PY" -c "import torch" 2>/dev/null; then
            _pip -e "$TARGET"
        else
            _pip "torch==2.13.0" -e "$TARGET" || {
                echo "[setup] torch 2.13.0 is not on local disk; pip resolves torch" >&2
                _pip -e "$TARGET"
            }
        fi
    }; then
        echo "[setup] pip failed; the end of .venv/install.log:" >&2
        tail -n 25 "$LOG" >&2
        exit 1
    fi
    # keep what was installed before (scripts/test's dev) when scripts/run asks for less
    { read -r old_hash old_extras < "$STAMP"; } 2>/dev/null || old_extras=""
    [ "${old_hash:-}" = "$HASH" ] || old_extras=""
    merged="$(printf '%s\n' ${old_extras//,/ } ${EXTRAS//,/ } | sort -u | paste -sd, -)"
    echo "$HASH $merged" > "$STAMP"
    echo "[setup] ready in $((SECONDS - started)) s${merged:+ (extras: $merged)}" >&2
fi
