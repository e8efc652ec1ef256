# Sourced by scripts/test and scripts/run after _venv.sh: gym-pusht (the [sim] extra, in dev; rollout=pusht)
# renders with opencv, whose cv2 needs libGL.so.1 (Debian's libgl1). When cv2 imports, nothing is done;
# otherwise libgl1 is installed as root, or through sudo when that needs no password. When neither works,
# scripts/test stops (LIBGL_REQUIRED=1) and scripts/run only says what to install (rollout=pusht then
# refuses in one line; the other jobs need no libGL).
#   LIBGL_REQUIRED=1 source scripts/_libgl.sh
set -euo pipefail
if "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('cv2') is None)" 2>/dev/null \
    && ! "$PY" -c "import cv2" >/dev/null 2>&1; then
    SUDO=(none)
    if [ "$(id -u)" = 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    fi
    if [ "${SUDO[*]}" = none ]; then
        echo "[libgl] opencv (gym-pusht's renderer) needs libGL.so.1: apt-get install -y libgl1" >&2
        [ "${LIBGL_REQUIRED:-0}" = 1 ] && exit 1
    else
        echo "[libgl] installing Debian's libgl1 (opencv needs libGL.so.1)" >&2
        {
            "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libgl1 >&2 \
            || {  # a fresh machine may have no package lists yet
                "${SUDO[@]}" apt-get update -q >&2 &&
                "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libgl1 >&2
            }
        } && "$PY" -c "import cv2" >&2 || {
            echo "[libgl] could not make opencv import (apt-get install -y libgl1 by hand)" >&2
            [ "${LIBGL_REQUIRED:-0}" = 1 ] && exit 1
            true
        }
    fi
fi
