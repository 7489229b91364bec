#!/usr/bin/env bash
# Creates, or reuses when it is already up to date, the virtualenv holding OpenStack Blazar 18.0.0
# from PyPI for the peer comparison: benchmarks/peers/blazar/.venv (git-ignored), from
# requirements-blazar.txt (exact pins of the whole tree).
#
# Idempotent and safe to run concurrently (flock on <venv>.lock). The venv is reused while its
# .ready stamp matches the requirements file's hash and the Python version; otherwise it is rebuilt
# from scratch. Exit status 0 means `<venv>/bin/python -c 'import blazar'` works.
#
# Environment: BERTH_BLAZAR_VENV (default benchmarks/peers/blazar/.venv),
#              BERTH_BLAZAR_PYTHON (default python3; must be >= 3.11 for blazar 18).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${BERTH_BLAZAR_VENV:-$here/.venv}
req=$here/requirements-blazar.txt
python=${BERTH_BLAZAR_PYTHON:-python3}

if ! command -v "$python" >/dev/null 2>&1; then
  echo "setup.sh: $python not found" >&2
  exit 2
fi
pyver=$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "setup.sh: blazar 18 needs Python >= 3.11, $python is $pyver" >&2
  exit 2
fi
want="$(sha256sum <"$req" | cut -d' ' -f1) python-$pyver"

exec 9>"$venv.lock"
flock 9
if [ -f "$venv/.ready" ] && [ "$(cat "$venv/.ready")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  echo "blazar venv: $venv is up to date"
  exit 0
fi

start=$EPOCHREALTIME
rm -rf "$venv"
"$python" -m venv "$venv"
# Wheels only, except simplegeneric (WSME needs it; it exists only as a pure-Python sdist).
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input \
  --only-binary :all: --no-binary simplegeneric -r "$req"
"$venv/bin/python" -m pip check -q >/dev/null 2>&1 || "$venv/bin/python" -m pip check
"$venv/bin/python" -c 'import blazar.plugins.oshosts.host_plugin, blazar.db.sqlalchemy.api, numpy' 2>/dev/null
printf '%s\n' "$want" >"$venv/.ready"
echo "blazar venv: installed blazar $(sed -n 's/^blazar==//p' "$req") into $venv in $(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
