#!/usr/bin/env bash
# Creates, or reuses when it is already up to date, the virtualenv that holds the real OpenStack
# Keystone for the integration tests: <repo>/.venv-keystone (git-ignored), from
# Tests/keystone/requirements-keystone.txt (exact pins, wheels only).
#
# Idempotent and safe to run concurrently (flock on <venv>.lock). The venv is reused while its
# .ready stamp matches the requirements file's hash and the Python version; otherwise it is
# rebuilt from scratch. Exit status 0 means `.venv-keystone/bin/keystone-manage` and
# `.venv-keystone/bin/gunicorn` are usable.
#
# Environment: BERTH_KEYSTONE_VENV (default <repo>/.venv-keystone),
#              BERTH_KEYSTONE_PYTHON (default python3; must be >= 3.11 for keystone 30).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv=${BERTH_KEYSTONE_VENV:-$repo/.venv-keystone}
req=$here/requirements-keystone.txt
python=${BERTH_KEYSTONE_PYTHON:-python3}

if ! command -v "$python" >/dev/null 2>&1; then
  echo "setup-venv.sh: $python not found" >&2
  exit 2
fi
pyver=$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "setup-venv.sh: keystone 30 needs Python >= 3.11, $python is $pyver" >&2
  exit 2
fi
want="$(sha256sum <"$req" | cut -d' ' -f1) python-$pyver"

exec 9>"$venv.lock"
flock 9
if [ -f "$venv/.ready" ] && [ "$(cat "$venv/.ready")" = "$want" ] \
   && [ -x "$venv/bin/keystone-manage" ] && [ -x "$venv/bin/gunicorn" ]; then
  echo "keystone venv: $venv is up to date"
  exit 0
fi

start=$EPOCHREALTIME
rm -rf "$venv"
"$python" -m venv "$venv"
# --only-binary: every pinned package ships a wheel; failing fast beats compiling C extensions.
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input \
  --only-binary :all: -r "$req"
"$venv/bin/python" -m pip check -q >/dev/null 2>&1 || "$venv/bin/python" -m pip check
"$venv/bin/python" -c 'import keystone.server.flask.core, gunicorn' 2>/dev/null
printf '%s\n' "$want" >"$venv/.ready"
echo "keystone venv: installed $(sed -n 's/^keystone==//p' "$req") into $venv in $(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
