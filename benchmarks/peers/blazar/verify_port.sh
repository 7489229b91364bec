#!/usr/bin/env bash
# Checks that bench_blazar.py's Python replay of berth-bench's generator is exact: the same leases
# on the same hosts, and the same answer (hosts chosen, or refused) to every allocator request,
# plain and rack-filtered. Compiles Sources/BerthJSON + Sources/BerthCore + the generator
# (Tests/BerthTestSupport/SplitMix64.swift) + verify_port.swift with swiftc into a temporary
# directory (never touches .build; 30 s to 2 minutes on 2 cores), then diffs its output with
# `bench_blazar.py --dump` at a few scales, one of them congested.
# Usage: benchmarks/peers/blazar/verify_port.sh [HOSTS/LEASES ...]   (needs setup.sh's venv)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
python=${BERTH_BLAZAR_VENV:-$here/.venv}/bin/python
scales=("$@")
[ ${#scales[@]} -gt 0 ] || scales=(100/1000 300/6000 1000/5000)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# BerthCore is in folders by concern; file names are unique, so one flat directory holds them,
# with the modules it imports (BerthJSON, BerthContract) and the benchmark's generator.
cp "$repo"/Sources/BerthJSON/*.swift "$repo"/Sources/BerthContract/*.swift "$repo"/Tests/BerthTestSupport/SplitMix64.swift "$tmp"/
find "$repo"/Sources/BerthCore -name '*.swift' -exec cp {} "$tmp"/ \;
sed -i -e 's/^import BerthJSON$//' -e 's/^import BerthContract$//' "$tmp"/*.swift
cp "$here/verify_port.swift" "$tmp/main.swift"
echo "compiling BerthCore with swiftc -O into $tmp ..."
(cd "$tmp" && swiftc -O -module-name VerifyPort -suppress-warnings ./*.swift -o verify)
status=0
for scale in "${scales[@]}"; do
  h=${scale%/*} l=${scale#*/}
  "$tmp/verify" "$h" "$l" 2000 >"$tmp/berth.txt"
  "$python" "$here/bench_blazar.py" --hosts "$h" --leases "$l" --dump 2000 >"$tmp/replay.txt"
  if cmp -s "$tmp/berth.txt" "$tmp/replay.txt"; then
    echo "$h hosts / $l leases: identical ($l leases placed, 2000 requests x 2, $(grep -o ' -' "$tmp/berth.txt" | wc -l) refusals)"
  else
    echo "$h hosts / $l leases: DIFFERENT"; diff "$tmp/berth.txt" "$tmp/replay.txt" | head -5; status=1
  fi
done
exit $status
