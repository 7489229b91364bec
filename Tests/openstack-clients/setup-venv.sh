#!/usr/bin/env bash
# Creates, or reuses when it is already up to date, the virtualenv that holds the real OpenStack
# command-line client (python-openstackclient) with the Blazar plugin (python-blazarclient) for
# the integration tests: <repo>/.venv-osc (git-ignored), from
# Tests/openstack-clients/requirements-clients.txt (exact pins, wheels only).
#
# Idempotent and safe to run concurrently (flock on <venv>.lock). The venv is reused while its
# .ready stamp matches the requirements file's hash and the Python version; otherwise it is
# rebuilt from scratch. Exit status 0 means `.venv-osc/bin/openstack` is usable and its
# `reservation` commands (the blazarclient plugin) are loaded.
#
# Environment: BERTH_OSC_VENV (default <repo>/.venv-osc),
#              BERTH_OSC_PYTHON (default python3; must be >= 3.10 for python-openstackclient 10).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
venv=${BERTH_OSC_VENV:-$repo/.venv-osc}
req=$here/requirements-clients.txt
python=${BERTH_OSC_PYTHON:-python3}

if ! command -v "$python" >/dev/null 2>&1; then
  echo "setup-venv.sh: $python not found" >&2
  exit 2
fi
pyver=$("$python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "setup-venv.sh: python-openstackclient 10 needs Python >= 3.10, $python is $pyver" >&2
  exit 2
fi
want="$(sha256sum <"$req" | cut -d' ' -f1) python-$pyver"

exec 9>"$venv.lock"
flock 9
if [ -f "$venv/.ready" ] && [ "$(cat "$venv/.ready")" = "$want" ] && [ -x "$venv/bin/openstack" ]; then
  echo "openstack client venv: $venv is up to date"
  exit 0
fi

start=$EPOCHREALTIME
rm -rf "$venv"
"$python" -m venv "$venv"
# --only-binary: every pinned package ships a wheel; failing fast beats compiling C extensions.
"$venv/bin/python" -m pip install -q --disable-pip-version-check --no-input \
  --only-binary :all: -r "$req"
"$venv/bin/python" -m pip check -q >/dev/null 2>&1 || "$venv/bin/python" -m pip check
"$venv/bin/python" -c 'import openstackclient.shell, blazarclient.client, blazarclient.osc.plugin' 2>/dev/null
# The plugin is registered: `openstack reservation lease list` exists (exit 2 would be "unknown command").
"$venv/bin/openstack" reservation lease list --help >/dev/null 2>&1
printf '%s\n' "$want" >"$venv/.ready"
echo "openstack client venv: installed python-openstackclient $(sed -n 's/^python-openstackclient==//p' "$req")," \
  "python-blazarclient $(sed -n 's/^python-blazarclient==//p' "$req") into $venv in" \
  "$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
