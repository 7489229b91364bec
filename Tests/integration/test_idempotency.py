"""idempotency_key: a retried call returns the first result and acts once."""

from __future__ import annotations

from berthtest import events, lease_params, make_hosts, ts


def test_same_key_and_params_returns_the_first_result_and_creates_one_lease(rpc):
    make_hosts(rpc, "h1", "h2")
    params = lease_params(ts(1), ts(2), idempotency_key="retry-1")
    first = rpc.call("lease.create", params)
    rpc.call("clock.advance", {"seconds": 60})  # a retry later must still get the first result
    second = rpc.call("lease.create", params)
    third = rpc.call("lease.create", dict(reversed(list(params.items()))))  # member order does not matter
    assert first == second == third
    leases = rpc.call("lease.list")["items"]
    assert [x["id"] for x in leases] == [first["id"]]
    assert len(events(rpc, types=["lease.created"])) == 1
    # Without a key the same params do act again (on the other host).
    other = rpc.call("lease.create", lease_params(ts(1), ts(2)))
    assert other["id"] != first["id"]


def test_same_key_with_different_params_is_a_conflict(rpc):
    make_hosts(rpc, "h1", "h2")
    first = rpc.call("lease.create", lease_params(ts(1), ts(2), idempotency_key="k"))
    for change in ({"end": ts(3)}, {"name": "other"}, {"reservations": [{"kind": "host", "count": 2}]}):
        e = rpc.error("lease.create", {**lease_params(ts(1), ts(2), idempotency_key="k"), **change}, -32005)
        assert e.reason == "conflict"
    assert [x["id"] for x in rpc.call("lease.list")["items"]] == [first["id"]]


def test_keys_are_per_method(rpc):
    make_hosts(rpc, "h1")
    host = rpc.call("host.create", {"name": "h2", "vcpus": 1, "memory_mb": 1, "disk_gb": 1, "idempotency_key": "k"})
    assert rpc.call("host.create", {"name": "h2", "vcpus": 1, "memory_mb": 1, "disk_gb": 1,
                                    "idempotency_key": "k"}) == host
    lease = rpc.call("lease.create", lease_params(ts(1), ts(2), idempotency_key="k"))
    assert lease["name"] == "lease"


def test_idempotent_update_and_delete(rpc):
    make_hosts(rpc, "h1")
    lease = rpc.call("lease.create", lease_params(ts(1), ts(2)))
    u = {"id": lease["id"], "end": ts(3), "idempotency_key": "u1"}
    first = rpc.call("lease.update", u)
    assert rpc.call("lease.update", u) == first
    assert len(events(rpc, types=["lease.updated"])) == 1
    d = {"id": lease["id"], "idempotency_key": "d1"}
    refund = rpc.call("lease.delete", d)
    assert rpc.call("lease.delete", d) == refund  # a retry, not a second delete
    assert rpc.error("lease.delete", {"id": lease["id"]}, -32005)  # without the key it is one
    assert len(events(rpc, types=["lease.deleted"])) == 1


def test_a_failed_call_does_not_use_up_its_key(rpc):
    e = rpc.error("lease.create", lease_params(ts(1), ts(2), idempotency_key="later"), -32002)
    assert e.reason == "no_capacity"
    make_hosts(rpc, "h1")
    lease = rpc.call("lease.create", lease_params(ts(1), ts(2), idempotency_key="later"))
    assert lease["status"] == "pending"


def test_invalid_keys_are_rejected(rpc):
    make_hosts(rpc, "h1")
    for bad in ("", 5, "k" * 256):
        e = rpc.error("lease.create", lease_params(ts(1), ts(2), idempotency_key=bad), -32602)
        assert e.error_paths == ["idempotency_key"]
