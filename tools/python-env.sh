#!/usr/bin/env bash
# Makes (once) and prints the bin directory of a Python virtual environment built from a pinned requirements file.
# The venv lives in the user's cache, named by the file's hash and the Python version, so a changed pin makes a new
# one and an unchanged one costs nothing: tools/python-env.sh python/requirements-device.txt
set -euo pipefail

requirements=${1:?usage: tools/python-env.sh <requirements file>}
[ -f "$requirements" ] || { echo "python-env: no such requirements file: $requirements" >&2; exit 2; }
python=${PYTHON:-python3}
command -v "$python" >/dev/null 2>&1 || { echo "python-env: $python not found; install Python 3.9 or later" >&2; exit 2; }

name=$(basename "$requirements" .txt)
hash=$( { "$python" -c 'import sys; print(sys.version)'; cat "$requirements"; } | sha256sum | cut -c1-16)
root="${PYTHON_ENVS:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/dps-jwt-webhook/venv}"
venv="$root/$name-$hash"
mkdir -p "$root"

# A venv's scripts carry its absolute path, so it is built where it lives; the lock keeps two test workers from
# building it at once, and .complete marks one whose install finished.
exec 9>"$root/.$name.lock"
flock 9
if [ ! -f "$venv/.complete" ]; then
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements" >&2
  touch "$venv/.complete"
fi
echo "$venv/bin"
