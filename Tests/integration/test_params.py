"""Parameter validation: -32602 with data.errors paths, and the application errors for bad references
and invalid states."""

from __future__ import annotations

import pytest

from berthtest import create_lease, lease_params, make_host, ts

HOST = {"name": "h1", "vcpus": 8, "memory_mb": 16384, "disk_gb": 100}


def paths(e) -> set[str]:
    assert e.code == -32602 and e.reason == "invalid_params", e
    errors = e.data["errors"]
    assert errors and all(x["message"] for x in errors), e.data
    return {x["path"] for x in errors}


# --- hosts --------------------------------------------------------------------------------------

def test_host_create_missing_params_lists_every_one(rpc):
    assert paths(rpc.error("host.create", {})) == {"name", "vcpus", "memory_mb", "disk_gb"}
    assert paths(rpc.error("host.create", None)) == {"name", "vcpus", "memory_mb", "disk_gb"}
    assert paths(rpc.error("host.create", {"name": "x", "vcpus": 1})) == {"memory_mb", "disk_gb"}


@pytest.mark.parametrize("field,value,path", [
    ("vcpus", "8", "vcpus"),
    ("vcpus", 8.5, "vcpus"),
    ("vcpus", 0, "vcpus"),
    ("memory_mb", -1, "memory_mb"),
    ("disk_gb", [], "disk_gb"),
    ("name", 7, "name"),
    ("name", "", "name"),
    ("name", "-leading-dash", "name"),
    ("name", "has space", "name"),
    ("properties", ["rack", "r1"], "properties"),
    ("properties", {"rack": {"nested": True}}, "properties.rack"),
    ("gpus", {"model": "A100-40GB"}, "gpus"),
    ("gpus", [{"model": "A100-40GB"}, {}], "gpus[1].model"),
    ("gpus", [{"model": "A100-40GB", "mig": True}], "gpus[0].mig"),
    ("reservable", "yes", "reservable"),
    ("state", "sideways", "state"),
])
def test_host_create_wrongly_typed_params(rpc, field, value, path):
    e = rpc.error("host.create", {**HOST, field: value})
    assert paths(e) == {path}
    # Nothing was created.
    assert rpc.call("host.list")["items"] == []


def test_unknown_fields_are_rejected_by_path(rpc):
    assert paths(rpc.error("host.create", {**HOST, "colour": "red", "vcpu": 3})) == {"colour", "vcpu"}
    make_host(rpc, "h1")
    assert paths(rpc.error("host.get", {"name": "h1", "verbose": True})) == {"verbose"}
    p = lease_params(ts(1), ts(2), extra_field=1)
    assert paths(rpc.error("lease.create", p)) == {"extra_field"}
    p = lease_params(ts(1), ts(2), reservations=[{"kind": "host", "count": 1, "colour": "red"}])
    assert paths(rpc.error("lease.create", p)) == {"reservations[0].colour"}
    assert paths(rpc.error("system.health", {"x": 1})) == {"x"}


def test_several_problems_are_reported_together(rpc):
    e = rpc.error("lease.create", {"name": "", "project_id": 5, "start": "yesterday", "end": "2030-13-01T00:00:00Z",
                                   "reservations": [{"kind": "host", "count": 0}, {"kind": "boat"}]})
    assert paths(e) >= {"name", "project_id", "start", "end", "reservations[0].count", "reservations[1].kind"}


# --- leases ---------------------------------------------------------------------------------------

def test_lease_create_missing_params(rpc):
    assert paths(rpc.error("lease.create", {})) == {"name", "project_id", "start", "end", "reservations"}


def test_end_before_start(rpc):
    make_host(rpc, "h1")
    assert paths(rpc.error("lease.create", lease_params(ts(2), ts(1)))) == {"end"}
    assert paths(rpc.error("lease.create", lease_params(ts(2), ts(2)))) == {"end"}
    assert rpc.call("lease.list")["items"] == []


def test_start_in_the_past(rpc):
    make_host(rpc, "h1")
    rpc.call("clock.set", {"now": ts(10)})
    assert paths(rpc.error("lease.create", lease_params(ts(9), ts(12)))) == {"start"}
    assert paths(rpc.error("lease.create", lease_params(ts(10, seconds=-3600 * 24), ts(12)))) == {"start"}
    assert rpc.call("lease.list")["items"] == []
    # "now" and the current instant are not in the past.
    assert create_lease(rpc, "now", ts(11))["start"] == ts(10)


@pytest.mark.parametrize("reservation,path", [
    ({"kind": "host", "count": 0}, "reservations[0].count"),
    ({"kind": "host", "count": -2}, "reservations[0].count"),
    ({"kind": "host", "count": 1.5}, "reservations[0].count"),
    ({"kind": "host", "count": "2"}, "reservations[0].count"),
    ({"kind": "host", "min": 0, "max": 2}, "reservations[0].min"),
    ({"kind": "host", "min": 1, "max": -1}, "reservations[0].max"),
    ({"kind": "host", "min": 3, "max": 2}, "reservations[0].min"),
    ({"kind": "host", "min": 2}, "reservations[0].max"),
    ({"kind": "host", "count": 1, "min": 1, "max": 1}, "reservations[0].count"),
    ({"kind": "host"}, "reservations[0].count"),
    ({"count": 1}, "reservations[0].kind"),
    ({"kind": "cabin", "count": 1}, "reservations[0].kind"),
    ({"kind": "host", "count": 1, "properties": 5}, "reservations[0].properties"),
    ({"kind": "host", "count": 1, "properties": ["xor", ["==", "$rack", "r1"]]}, "reservations[0].properties[0]"),
    ({"kind": "host", "count": 1, "properties": ["==", "rack", "r1"]}, "reservations[0].properties[1]"),
    ("host", "reservations[0]"),
])
def test_bad_reservations(rpc, reservation, path):
    make_host(rpc, "h1")
    e = rpc.error("lease.create", lease_params(ts(1), ts(2), reservations=[reservation]))
    got = paths(e)
    assert path in got
    # Without a valid kind the other members cannot be judged; otherwise the one bad member is named.
    assert got == {path} or path.endswith(".kind"), got
    assert all(p.startswith("reservations[0]") for p in got), got
    assert rpc.call("lease.list")["items"] == []


def test_reservations_must_not_be_empty(rpc):
    make_host(rpc, "h1")
    assert paths(rpc.error("lease.create", lease_params(ts(1), ts(2), reservations=[]))) == {"reservations"}
    assert paths(rpc.error("lease.create", lease_params(ts(1), ts(2), reservations={"kind": "host"}))) == {
        "reservations"}


def test_timestamps_must_be_rfc3339(rpc):
    make_host(rpc, "h1")
    for bad in ("2030-01-01", "2030-01-01 01:00:00", "01/01/2030", "2030-01-01T01:00:00", 1893459600):
        assert paths(rpc.error("lease.create", lease_params(bad, ts(5)))) == {"start"}, bad
    # An offset is accepted and normalised to UTC.
    lease = create_lease(rpc, "2030-01-01T03:00:00+02:00", "2030-01-01T02:30:00-00:30")
    assert (lease["start"], lease["end"]) == (ts(1), ts(3))


def test_paging_and_filter_params_are_checked(rpc):
    assert paths(rpc.error("lease.list", {"limit": 0})) == {"limit"}
    assert paths(rpc.error("lease.list", {"limit": 100000})) == {"limit"}
    assert paths(rpc.error("lease.list", {"status": "sleeping"})) == {"status"}
    assert paths(rpc.error("lease.list", {"cursor": "garbage"})) == {"cursor"}
    assert paths(rpc.error("lease.list", {"from": ts(2), "to": ts(1)})) == {"to"}
    assert paths(rpc.error("events.list", {"after_seq": -1})) == {"after_seq"}
    assert paths(rpc.error("events.list", {"types": "lease.*"})) == {"types"}
    assert paths(rpc.error("actions.list", {"status": "lost"})) == {"status"}
    assert paths(rpc.error("calendar.get", {"from": ts(2)})) == {"to"}
    assert paths(rpc.error("calendar.get", {"from": ts(2), "to": ts(1)})) == {"to"}
    assert paths(rpc.error("availability.find", {"reservations": [{"kind": "host", "count": 1}]})) == {"duration_s"}
    assert paths(rpc.error("availability.find", {"reservations": [{"kind": "host", "count": 1}],
                                                 "duration_s": 0})) == {"duration_s"}
    assert paths(rpc.error("clock.advance", {"seconds": -5})) == {"seconds"}
    assert paths(rpc.error("clock.set", {})) == {"now"}


# --- application errors ---------------------------------------------------------------------------

def test_unknown_host_names_are_not_found(rpc):
    make_host(rpc, "h1")
    for method, params in [
        ("host.get", {"name": "nope"}),
        ("host.update", {"name": "nope", "vcpus": 4}),
        ("host.delete", {"name": "nope"}),
        ("calendar.get", {"from": ts(0), "to": ts(1), "hosts": ["h1", "nope"]}),
    ]:
        e = rpc.error(method, params, -32001)
        assert e.reason == "not_found", (method, e)
        assert "nope" in e.message


def test_unknown_lease_ids_are_not_found(rpc):
    for method, params in [
        ("lease.get", {"id": "00000000-0000-4000-8000-000000000000"}),
        ("lease.update", {"id": "00000000-0000-4000-8000-000000000000", "name": "x"}),
        ("lease.delete", {"id": "not-even-a-uuid"}),
    ]:
        assert rpc.error(method, params, -32001).reason == "not_found"


def test_duplicate_host_name_is_a_conflict(rpc):
    first = make_host(rpc, "h1", vcpus=8)
    e = rpc.error("host.create", {**HOST, "vcpus": 64}, -32005)
    assert e.reason == "conflict"
    assert rpc.call("host.get", {"name": "h1"}) == first


def test_deleting_a_host_with_future_allocations_is_a_conflict(rpc):
    make_host(rpc, "h1")
    lease = create_lease(rpc, ts(5), ts(6))
    e = rpc.error("host.delete", {"name": "h1"}, -32005)
    assert e.reason == "conflict"
    assert lease["id"] in e.data.get("lease_ids", [lease["id"]]) and lease["id"] in e.message
    assert rpc.call("host.get", {"name": "h1"})["name"] == "h1"
    # Once the lease is gone the host can go.
    rpc.call("lease.delete", {"id": lease["id"]})
    assert rpc.call("host.delete", {"name": "h1"}) == {}
    assert rpc.error("host.get", {"name": "h1"}, -32001)


def test_deleting_a_host_with_a_current_allocation_is_a_conflict(rpc):
    make_host(rpc, "h1")
    create_lease(rpc, ts(1), ts(3))
    rpc.call("clock.set", {"now": ts(2)})
    assert rpc.error("host.delete", {"name": "h1"}, -32005).reason == "conflict"
    # After the lease has ended the host holds nothing current or future.
    rpc.call("clock.set", {"now": ts(3)})
    assert rpc.call("host.delete", {"name": "h1"}) == {}


def test_updating_an_ended_lease_is_a_conflict(rpc):
    make_host(rpc, "h1")
    lease = create_lease(rpc, ts(1), ts(2))
    rpc.call("clock.set", {"now": ts(3)})
    assert rpc.call("lease.get", {"id": lease["id"]})["status"] == "ended"
    for change in ({"end": ts(5)}, {"name": "renamed"}, {"reservations": [{"kind": "host", "count": 1}]}):
        e = rpc.error("lease.update", {"id": lease["id"], **change}, -32005)
        assert e.reason == "conflict"
    assert rpc.call("lease.get", {"id": lease["id"]})["name"] == "lease"


def test_updating_a_deleted_lease_is_a_conflict(rpc):
    make_host(rpc, "h1")
    lease = create_lease(rpc, ts(1), ts(2))
    rpc.call("lease.delete", {"id": lease["id"]})
    assert rpc.error("lease.update", {"id": lease["id"], "end": ts(3)}, -32005).reason == "conflict"
    assert rpc.error("lease.delete", {"id": lease["id"]}, -32005).reason == "conflict"


def test_moving_the_start_of_an_active_lease_is_a_conflict(rpc):
    make_host(rpc, "h1")
    lease = create_lease(rpc, ts(1), ts(4))
    rpc.call("clock.set", {"now": ts(2)})
    assert rpc.error("lease.update", {"id": lease["id"], "start": ts(3)}, -32005).reason == "conflict"
    # Its end can still move, but not into the past.
    e = rpc.error("lease.update", {"id": lease["id"], "end": ts(1, minutes=30)})
    assert paths(e) == {"end"}


def test_clock_cannot_move_backwards(rpc):
    rpc.call("clock.set", {"now": ts(5)})
    e = rpc.error("clock.set", {"now": ts(4)}, -32005)
    assert e.reason == "conflict"
    assert rpc.call("clock.now") == {"now": ts(5)}


def test_policy_max_lease_duration(daemon):
    daemon.start(config={"max_lease_duration_s": 7200})
    rpc = daemon.client()
    make_host(rpc, "h1")
    e = rpc.error("lease.create", lease_params(ts(1), ts(3, seconds=1)), -32008)
    assert e.reason == "policy_violation" and e.data["rule"] == "max_lease_duration"
    lease = create_lease(rpc, ts(1), ts(3))
    assert rpc.error("lease.update", {"id": lease["id"], "end": ts(4)}, -32008).data["rule"] == "max_lease_duration"
