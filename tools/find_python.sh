# Sourced by tools/dist_*.sh and tools/slurm_*.sh: the Python interpreter to
# run, in $PYTHON. An explicit PYTHON=... wins; else the repository's .venv
# (where `make` installs everything); else python3, else python.
if [ -z "${PYTHON:-}" ]; then
    _cls_kd_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    if [ -x "$_cls_kd_root/.venv/bin/python" ]; then
        PYTHON="$_cls_kd_root/.venv/bin/python"
    elif command -v python3 >/dev/null 2>&1; then
        PYTHON=python3
    else
        PYTHON=python
    fi
    unset _cls_kd_root
fi
if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "$(basename "$0"): no Python interpreter '$PYTHON'; set PYTHON=/path/to/python" >&2
    exit 127
fi
echo "$(basename "$0"): using Python $PYTHON" >&2
