# Sourced by scripts/test after _venv.sh: gym-pusht (the [sim] extra, in dev) renders with opencv, whose
# cv2 needs libGL.so.1 (Debian's libgl1). When cv2 imports, nothing is done; otherwise libgl1 is installed
# as root, or through sudo when that needs no password, else the script stops saying what to install.
#   source scripts/_libgl.sh
set -euo pipefail
if "$PY" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('cv2') is None)" 2>/dev/null \
    && ! "$PY" -c "import cv2" >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        SUDO=()
    elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=(sudo -n)
    else
        echo "[libgl] opencv (gym-pusht's renderer) needs libGL.so.1: apt-get install -y libgl1" >&2
        exit 1
    fi
    echo "[libgl] installing Debian's libgl1 (opencv needs libGL.so.1)" >&2
    if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libgl1 >&2
    then  # a fresh machine may have no package lists yet
        "${SUDO[@]}" apt-get update -q >&2
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libgl1 >&2
    fi
    "$PY" -c "import cv2" >&2
fi
