# Sourced by scripts/run and scripts/test: create or reuse .venv at the repo root, with this
# project installed editable. Idempotent: a second call only checks a stamp and returns.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
EXTRAS="${GETIACTION_EXTRAS:-dev}"
STAMP="$VENV/.getiaction-installed"
# Re-install when pyproject.toml changes or different extras are asked for.
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16) $EXTRAS"

if [ ! -x "$PY" ]; then
    echo "[setup] creating $VENV" >&2
    python3 -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    echo "[setup] installing getiaction-export[$EXTRAS] into $VENV" >&2
    "$PY" -m pip install -q --upgrade pip setuptools wheel >&2
    if ! "$PY" -c "import torch" 2>/dev/null; then
        # A CPU torch where one can be had without a multi-GB download (this machine keeps
        # torch 2.13.0 on local disk); elsewhere whatever torch pip resolves stands.
        "$PY" -m pip install -q "torch==2.13.0" >&2 || echo "[setup] torch 2.13.0 not available locally; pip will resolve torch" >&2
    fi
    "$PY" -m pip install -q -e "$ROOT[$EXTRAS]" >&2
    echo "$WANT" > "$STAMP"
fi
