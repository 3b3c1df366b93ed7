#!/usr/bin/env bash
# Stop early, with the fix, when the machine lacks what a virtual environment needs.
set -euo pipefail
python=${1:-python3}
if ! command -v "$python" >/dev/null; then
  echo "error: $python not found. Install Python 3.11 or newer (Debian: apt-get install python3 python3-venv)." >&2
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: Python 3.11 or newer is needed; $python is $("$python" -V 2>&1)." >&2
  exit 1
fi
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  echo "error: $python cannot create virtual environments. Debian: apt-get install python3-venv" >&2
  exit 1
fi
