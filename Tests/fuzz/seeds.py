"""Seed requests for Berth's fuzzers: one valid call per contract method (from schemas/openrpc.json's
examples and by hand), plus batches, notifications and edge cases.

`@lease` and `@preemptible` stand for the id of a lease and a preemptible that exist: the in-process
libFuzzer harness (Sources/BerthFuzz) and the socket fuzzer (socket_fuzzer.py) both create them
and substitute the ids, so calls that need an existing id get past "not found".

`python3 Tests/fuzz/seeds.py` rewrites Tests/fuzz/corpus/seed-*.json (one request line per file).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OPENRPC = HERE.parents[1] / "schemas" / "openrpc.json"

T0 = "2030-01-01T00:00:00Z"

#: method -> list of valid params (None: no params member at all).
VALID_PARAMS: dict[str, list] = {
    "rpc.discover": [None],
    "system.health": [None, {}],
    "clock.now": [None],
    "clock.set": [{"now": "2030-01-01T00:10:00Z"}, {"now": "2030-01-01T01:00:00+01:00"}],
    "clock.advance": [{"seconds": 60}, {"seconds": 0}],
    "host.create": [
        {"name": "fz-1", "vcpus": 8, "memory_mb": 16384, "disk_gb": 100},
        {"name": "fz-gpu", "vcpus": 32, "memory_mb": 131072, "disk_gb": 500, "gpus": [{"model": "A100-40GB"}],
         "properties": {"rack": "r9", "ib": "true"}, "reservable": True, "idempotency_key": "k-host"},
    ],
    "host.get": [{"name": "compute-1"}],
    "host.list": [None, {"properties": {"rack": "r1"}},
                  {"properties": ["and", [">=", "$memory_mb", 4096], ["==", "$ib", "true"]]}],
    "host.update": [{"name": "compute-2", "state": "maintenance"},
                    {"name": "compute-3", "vcpus": 32, "properties": {"rack": "r4"}, "reservable": False}],
    "host.delete": [{"name": "compute-3"}],
    "lease.create": [
        {"name": "l-host", "project_id": "p1", "start": "2030-01-01T02:00:00Z", "end": "2030-01-01T03:00:00Z",
         "reservations": [{"kind": "host", "count": 1, "properties": {"rack": "r1"}}]},
        {"name": "l-now", "project_id": "p1", "user_id": "u1", "start": "now", "end": "2030-01-01T05:00:00Z",
         "before_end_s": 600, "reservations": [{"kind": "host", "min": 1, "max": 2}], "idempotency_key": "k-lease"},
        {"name": "train-run", "project_id": "proj-a", "start": "2030-01-01T10:00:00Z",
         "end": "2030-01-01T12:00:00Z", "reservations": [{"kind": "gpu", "profile": "1g.5gb", "count": 2}]},
        {"name": "l-inst", "project_id": "p1", "start": "2030-01-02T00:00:00Z", "end": "2030-01-02T06:00:00Z",
         "reservations": [{"kind": "instance", "vcpus": 4, "memory_mb": 8192, "disk_gb": 40, "count": 2,
                           "affinity": "different_host", "gpu_profile": "3g.20gb"}], "dry_run": True},
        {"name": "l-expr", "project_id": "p1", "start": "2030-01-03T00:00:00Z", "end": "2030-01-03T01:00:00Z",
         "reservations": [{"kind": "host", "count": 1,
                           "properties": ["or", ["in", "$rack", ["r1", "r2"]], ["not", ["<", "$vcpus", 8]]]}]},
    ],
    "lease.get": [{"id": "@lease"}],
    "lease.list": [None, {"project_id": "p1", "status": "pending", "from": T0, "to": "2030-02-01T00:00:00Z",
                          "limit": 10}],
    "lease.update": [{"id": "@lease", "name": "renamed", "end": "2030-01-01T06:00:00Z"},
                     {"id": "@lease", "start": "2030-01-01T02:00:00Z", "before_end_s": None,
                      "reservations": [{"count": 2}], "dry_run": True}],
    "lease.delete": [{"id": "@lease", "idempotency_key": "k-del"}],
    "availability.find": [{"reservations": [{"kind": "host", "count": 1}], "duration_s": 3600},
                          {"reservations": [{"kind": "gpu", "profile": "7g.40gb", "count": 1, "gpu_model": "A100-40GB"}],
                           "duration_s": 7200, "earliest": "now", "latest": "2030-01-05T00:00:00Z", "limit": 3}],
    "calendar.get": [{"from": T0, "to": "2030-01-02T00:00:00Z"},
                     {"from": T0, "to": "2030-01-02T00:00:00Z", "hosts": ["compute-1", "gpu-1"]}],
    "preemptible.create": [{"project_id": "p1", "vcpus": 2, "memory_mb": 1024, "disk_gb": 10},
                           {"project_id": "p1", "vcpus": 4, "memory_mb": 4096, "disk_gb": 20, "min_lifetime_s": 600,
                            "gpu_profile": "1g.5gb", "server": {"image": "x"}, "slurm_node": "node-1"}],
    "preemptible.get": [{"id": "@preemptible"}],
    "preemptible.list": [None, {"project_id": "p1", "host": "compute-1", "status": "running", "limit": 5}],
    "preemptible.delete": [{"id": "@preemptible"}],
    "preemptible.horizon": [{"host": "compute-1"}, {"id": "@preemptible"}],
    "credits.grant": [{"project_id": "p1", "resource_class": "host_hours", "amount": 10},
                      {"project_id": "p2", "resource_class": "gpu_slice_hours", "amount": "12.500001",
                       "valid_from": T0, "valid_to": "2031-01-01T00:00:00Z", "note": "seed"}],
    "credits.balance": [{"project_id": "p1"}],
    "credits.ledger": [{"project_id": "p1", "limit": 5}],
    "events.subscribe": [None, {"types": ["lease.*", "host.down"]}],
    "events.list": [{"after_seq": 0, "limit": 1}, {"types": ["lease.created"], "limit": 1000}],
    "actions.list": [None, {"status": "pending", "lease_id": "@lease", "limit": 10}],
}


def contract_methods() -> list[str]:
    return [m["name"] for m in json.loads(OPENRPC.read_text())["methods"]]


def request(method: str, params, rid) -> dict:
    m: dict = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        m["params"] = params
    if rid is not ...:
        m["id"] = rid
    return m


def valid_requests() -> list[dict]:
    out = []
    n = 0
    for method, plist in VALID_PARAMS.items():
        for p in plist:
            n += 1
            out.append(request(method, p, n))
    return out


def edge_lines() -> dict[str, bytes]:
    """Hand-written lines that are not (all) valid requests."""
    b = {
        "notification": json.dumps(request("system.health", None, ...)),
        "notification-batch": json.dumps([request("clock.now", None, ...), request("no.such", None, ...)]),
        "mixed-batch": json.dumps([request("clock.now", None, "a"), request("host.get", {"name": "compute-1"}, ...),
                                   request("no.such", None, 2), 42, request("host.get", {"name": "x"}, None)]),
        "empty-batch": "[]",
        "batch-of-numbers": "[1,2,3]",
        "unknown-method": json.dumps(request("lease.teleport", {"id": "x"}, 7)),
        "positional-params": json.dumps(request("host.get", ["compute-1"], 8)),
        "params-string": '{"jsonrpc":"2.0","method":"host.get","params":"x","id":9}',
        "id-types": json.dumps([request("clock.now", None, i) for i in ["s", 0, -7, 2**63 - 1, -(2**63), 1.5, None]]),
        "id-bad": '{"jsonrpc":"2.0","method":"clock.now","id":{"a":[true]}}',
        "id-huge": '{"jsonrpc":"2.0","method":"clock.now","id":123456789012345678901234567890}',
        "id-exp": '{"jsonrpc":"2.0","method":"clock.now","id":-0.0e-400}',
        "version-1": '{"jsonrpc":"1.0","method":"clock.now","id":1}',
        "no-method": '{"jsonrpc":"2.0","id":1}',
        "dup-keys": '{"jsonrpc":"2.0","method":"clock.now","method":"rpc.discover","id":1,"id":"two"}',
        "escapes": '{"jsonrpc":"2.0","method":"host.get","params":{"name":"\\u00e9\\ud83d\\ude00\\n\\t\\"\\\\\\/"},"id":"\\u0000"}',
        "bad-surrogate": '{"jsonrpc":"2.0","method":"host.get","params":{"name":"\\udc00"},"id":1}',
        "huge-numbers": json.dumps(request("clock.advance", {"seconds": 10**30}, 1)),
        "exp-number": '{"jsonrpc":"2.0","method":"lease.list","params":{"limit":1e2},"id":1}',
        "overflow-number": '{"jsonrpc":"2.0","method":"lease.list","params":{"limit":1e400},"id":1}',
        "neg-zero": '{"jsonrpc":"2.0","method":"events.list","params":{"after_seq":-0,"limit":-0.0},"id":1}',
        "unknown-field": json.dumps(request("host.get", {"name": "compute-1", "nmae": "x"}, 1)),
        "deep-props": json.dumps(request("host.list", {"properties": ["and"] + [["not", ["==", "$rack", "r1"]]] * 3}, 1)),
        "nested-200": '{"jsonrpc":"2.0","method":"host.create","params":{"name":"d","vcpus":1,"memory_mb":1,"disk_gb":1,"properties":{"x":' + "[" * 200 + "]" * 200 + "}},\"id\":1}",
        "nested-300": "[" * 300 + "]" * 300,
        "trailing": '{"jsonrpc":"2.0","method":"clock.now","id":1} x',
        "truncated": '{"jsonrpc":"2.0","method":"clock.now","id":1',
        "timestamps": json.dumps(request("calendar.get", {"from": "9999-12-31T23:59:59Z", "to": "0001-01-01T00:00:00-23:59"}, 1)),
        "lease-far": json.dumps(request("lease.create", {"name": "far", "project_id": "p1", "start": "9999-12-31T22:00:00Z",
                                                         "end": "9999-12-31T23:59:59Z", "reservations": [{"kind": "host", "count": 1}]}, 1)),
        "advance-max": json.dumps(request("clock.advance", {"seconds": 100 * 366 * 86400}, 1)),
    }
    out = {k: v.encode() for k, v in b.items()}
    out["invalid-utf8"] = b'{"jsonrpc":"2.0","method":"host.get","params":{"name":"\xff\xfe\xc0\xaf"},"id":1}'
    out["nul-bytes"] = b'{"jsonrpc":"2.0",\x00"method":"clock.now","id":1}'
    return out


def corpus() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for r in valid_requests():
        files[f"seed-{r['method']}-{r['id']}.json"] = json.dumps(r, separators=(",", ":")).encode()
    for name, line in edge_lines().items():
        files[f"seed-edge-{name}.json"] = line
    return files


def main() -> int:
    missing = set(contract_methods()) - set(VALID_PARAMS)
    if missing:
        print(f"no seed for contract methods: {sorted(missing)}", file=sys.stderr)
        return 1
    d = HERE / "corpus"
    d.mkdir(exist_ok=True)
    for old in d.glob("seed-*.json"):
        old.unlink()
    for name, data in corpus().items():
        (d / name).write_bytes(data)
    print(f"wrote {len(corpus())} seeds to {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
