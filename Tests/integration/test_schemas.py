"""The machine-readable contract (schemas/) against the live daemon.

Every RPCClient call in this suite already checks its result against
schemas/methods/<method>.result.json (and errors against components/Error.json, notifications
against notifications/event.json). Here a scenario drives every implemented method through its
interesting states and checks each live result explicitly, and rpc.discover is compared with
schemas/openrpc.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict

import pytest

from berthtest import REPO, SCHEMAS, Schemas, lease_params, ts, wait_until

IMPLEMENTED = {
    "rpc.discover", "system.health", "clock.now", "clock.set", "clock.advance",
    "host.create", "host.get", "host.list", "host.update", "host.delete",
    "lease.create", "lease.get", "lease.list", "lease.update", "lease.delete",
    "availability.find", "calendar.get", "events.list", "events.subscribe", "actions.list",
    "credits.grant", "credits.balance", "credits.ledger",
    "preemptible.create", "preemptible.get", "preemptible.list", "preemptible.delete", "preemptible.horizon",
}
NOT_YET: set[str] = set()


def contract_methods() -> list[str]:
    return [m["name"] for m in json.loads((SCHEMAS / "openrpc.json").read_text())["methods"]]


def test_schema_files_are_consistent():
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "check_schemas.py")], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr


def test_rpc_discover_returns_exactly_the_openrpc_document(rpc):
    doc = rpc.call("rpc.discover")
    assert doc == json.loads((SCHEMAS / "openrpc.json").read_text())
    Schemas.get().check("methods/rpc.discover.result.json", doc)


@pytest.mark.parametrize("method", contract_methods())
def test_every_contract_method_is_served(rpc, request, method):
    if method in NOT_YET:
        request.applymarker(pytest.mark.xfail(reason=f"{method} is not implemented by berthd yet", strict=False))
    reply = rpc.request(method, {})
    # Whatever the params, a served method never answers "method not found".
    assert "result" in reply or reply["error"]["code"] != -32601, reply


def test_every_live_result_matches_its_schema(berthd):
    raw = berthd.client(validate=False)
    results: dict[str, list] = defaultdict(list)

    def call(method, params=None):
        r = raw.call(method, params)
        results[method].append((params, r))
        return r

    watcher = berthd.client(validate=False)
    call("system.health")
    call("rpc.discover")
    call("clock.now")
    results["events.subscribe"].append((None, watcher.call("events.subscribe")))
    call("host.create", {"name": "gpu-1", "vcpus": 64, "memory_mb": 262144, "disk_gb": 960,
                         "gpus": [{"model": "A100-40GB"}], "properties": {"rack": "r1", "ib": True, "gen": 3}})
    call("host.create", {"name": "cpu-1", "vcpus": 32, "memory_mb": 65536, "disk_gb": 500, "reservable": True})
    call("host.create", {"name": "cpu-2", "vcpus": 32, "memory_mb": 65536, "disk_gb": 500})
    call("host.create", {"name": "spare", "vcpus": 1, "memory_mb": 512, "disk_gb": 0})
    call("host.get", {"name": "gpu-1"})
    call("host.update", {"name": "cpu-2", "properties": {"rack": "r2"}, "state": "maintenance"})
    call("host.update", {"name": "cpu-2", "state": "up"})
    call("host.list")
    call("host.list", {"properties": ["==", "$rack", "r1"]})
    call("host.delete", {"name": "spare"})
    call("credits.grant", {"project_id": "proj-a", "resource_class": "host_hours", "amount": 100,
                           "valid_from": ts(0), "valid_to": ts(0, days=30), "note": "allocation"})
    call("credits.grant", {"project_id": "proj-a", "resource_class": "gpu_slice_hours", "amount": 2.5})
    a = call("lease.create", lease_params(ts(1), ts(3), name="a", before_end_s=600, user_id="alice",
                                          reservations=[{"kind": "host", "count": 1, "properties": {"rack": "r1"}}]))
    b = call("lease.create", lease_params(ts(2), ts(5), name="b", reservations=[
        {"kind": "host", "min": 1, "max": 2, "properties": [">=", "$memory_mb", 4096]}]))
    call("lease.create", lease_params(ts(6), ts(7), name="dry", dry_run=True))
    c = call("lease.create", lease_params(ts(8), ts(9), name="c", idempotency_key="k1"))
    call("lease.create", lease_params(ts(8), ts(9), name="c", idempotency_key="k1"))
    call("lease.update", {"id": c["id"], "end": ts(10), "name": "c2", "before_end_s": 60})
    call("lease.update", {"id": c["id"], "reservations": [
        {"id": c["reservations"][0]["id"], "kind": "host", "count": 1}, {"kind": "host", "count": 1}]})
    call("lease.get", {"id": a["id"]})
    call("availability.find", {"reservations": [{"kind": "host", "count": 2}], "duration_s": 3600})
    call("availability.find", {"reservations": [{"kind": "host", "count": 9}], "duration_s": 3600})
    pa = call("preemptible.create", {"project_id": "proj-b", "vcpus": 2, "memory_mb": 2048, "disk_gb": 10,
                                     "min_lifetime_s": 1800, "slurm_node": "node-1", "idempotency_key": "pk",
                                     "server": {"name": "pre-1", "imageRef": "img", "flavorRef": "f"}})
    call("preemptible.create", {"project_id": "proj-b", "vcpus": 2, "memory_mb": 2048, "disk_gb": 10,
                                "min_lifetime_s": 1800, "slurm_node": "node-1", "idempotency_key": "pk",
                                "server": {"name": "pre-1", "imageRef": "img", "flavorRef": "f"}})
    pg = call("preemptible.create", {"project_id": "proj-b", "vcpus": 1, "memory_mb": 1024, "disk_gb": 0,
                                     "gpu_profile": "1g.5gb"})
    call("preemptible.get", {"id": pa["id"]})
    call("preemptible.list")
    call("preemptible.list", {"host": pa["host"], "status": "running", "limit": 1, "project_id": "proj-b"})
    call("preemptible.list", {"slurm_node": "node-1"})
    call("preemptible.horizon", {"host": "cpu-1"})
    call("preemptible.horizon", {"id": pa["id"]})
    call("preemptible.delete", {"id": pg["id"]})
    # Every host for an hour, later on: the remaining preemptible must make way.
    call("lease.create", lease_params(ts(12), ts(13), name="all", count=3))
    call("preemptible.get", {"id": pa["id"]})
    call("preemptible.horizon", {"id": pa["id"]})
    call("calendar.get", {"from": ts(0), "to": ts(24)})
    call("clock.advance", {"seconds": 3600 * 2})  # a active, b active
    call("lease.update", {"id": b["id"], "end": ts(6)})
    call("clock.set", {"now": ts(4)})  # a ended
    call("lease.delete", {"id": b["id"]})  # active -> ended now
    call("lease.delete", {"id": c["id"]})  # pending
    for status in (None, "pending", "active", "ended", "deleted"):
        call("lease.list", {"status": status} if status else {})
    call("lease.list", {"limit": 1})
    call("calendar.get", {"from": ts(0), "to": ts(24), "hosts": ["gpu-1"]})
    call("events.list")
    call("events.list", {"limit": 2, "types": ["lease.*"]})
    wait_until(lambda: all(x["status"] == "done" for x in raw.call("actions.list")["items"]), "actions delivered")
    call("actions.list")
    call("actions.list", {"lease_id": b["id"], "status": "done"})
    call("actions.list", {"limit": 1})
    call("credits.balance", {"project_id": "proj-a"})
    call("credits.balance", {"project_id": "no-such-project"})
    page = call("credits.ledger", {"project_id": "proj-a", "limit": 2})
    call("credits.ledger", {"project_id": "proj-a", "cursor": page["next_cursor"]})

    s = Schemas.get()
    problems = []
    for method, calls in results.items():
        for params, result in calls:
            errs = s.errors(f"methods/{method}.result.json", result)
            if errs:
                problems.append(f"{method}({json.dumps(params)}) result: " + "; ".join(errs[:4]))
            perrs = s.errors(f"methods/{method}.params.json", params or {})
            if perrs:
                problems.append(f"{method} params accepted by berthd rejected by the schema: {json.dumps(params)}: "
                                + "; ".join(perrs[:4]))
    notes = list(watcher.notifications)
    while True:
        try:
            notes.append(watcher.recv_message(timeout=0.5))
        except TimeoutError:
            break
    assert notes, "the subscriber received no events"
    for n in notes:
        problems += [f"notification {n}: {e}" for e in s.errors("notifications/event.json", n)]
    assert not problems, "\n".join(problems)
    assert set(results) == IMPLEMENTED, set(IMPLEMENTED) - set(results)
    # Every event type and action kind the daemon produced is in the contract.
    event_types = {e["type"] for _, r in results["events.list"] for e in r["items"]}
    assert {"host.created", "host.updated", "host.deleted", "host.down", "host.up", "lease.created",
            "lease.updated", "lease.started", "lease.before_end", "lease.ended", "lease.deleted"} <= event_types
    kinds = {a["kind"] for _, r in results["actions.list"] for a in r["items"]}
    assert {"lease.start", "lease.end"} <= kinds


def test_error_objects_match_the_schema(rpc):
    """Every kind of error the daemon produces validates against components/Error.json."""
    s = Schemas.get()
    rpc.call("host.create", {"name": "h1", "vcpus": 1, "memory_mb": 1, "disk_gb": 1})
    lease = rpc.call("lease.create", lease_params(ts(1), ts(2)))
    replies = []
    for line in (b"not json\n", b"[]\n", b"42\n", b'{"jsonrpc":"2.0","method":"x.y","id":1}\n'):
        rpc.send_raw(line)
        replies.append(rpc.recv())
    for method, params in [
        ("host.create", {}),                                            # -32602
        ("host.get", {"name": "nope"}),                                 # -32001
        ("lease.create", lease_params(ts(1), ts(2))),                   # -32002 with earliest_start
        ("host.create", {"name": "h1", "vcpus": 1, "memory_mb": 1, "disk_gb": 1}),  # -32005
        ("host.delete", {"name": "h1"}),                                # -32005 with lease_ids
    ]:
        replies.append(rpc.request(method, params))
    codes = []
    for r in replies:
        assert "error" in r, r
        codes.append(r["error"]["code"])
        s.check("components/Error.json", r["error"], "error")
    assert codes == [-32700, -32600, -32600, -32601, -32602, -32001, -32002, -32005, -32005]
    assert replies[6]["error"]["data"]["earliest_start"] == ts(2)
    assert lease["id"] in replies[8]["error"]["data"]["lease_ids"]
