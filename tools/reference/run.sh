#!/usr/bin/env bash
# Runs a reference script in a private virtualenv (created on first use from requirements.txt).
# The reference tools are run by hand; CI only reads the fixtures they write.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${DELTAENERGY_REF_VENV:-$here/.venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
fi
script="$1"; shift
# The ONNX scripts need their extras in the same venv.
case "$script" in
  export_onnx.py | bench_ref.py)
    "$venv/bin/python" -c "import onnxruntime, onnxscript" 2>/dev/null \
      || "$venv/bin/pip" install -q -r "$here/requirements-onnx.txt" ;;
esac
exec "$venv/bin/python" "$here/$script" "$@"
