"""Instance slots (`kind: "instance"`) over the socket: capacity at every instant (not a high-water
mark), whole hosts not shared with slots, affinity, bad input, dry runs, updates, availability, the
calendar, lifecycle events and actions, and crash recovery of leases mixing every kind."""

from __future__ import annotations

import signal

import pytest

from berthtest import create_lease, events, lease_params, make_host, make_hosts, refused, ts, wait_until


def inst(vcpus: int, memory_mb: int = 1024, disk_gb: int = 10, count: int = 1, **extra) -> dict:
    return {"kind": "instance", "vcpus": vcpus, "memory_mb": memory_mb, "disk_gb": disk_gb, "count": count, **extra}


def placed(lease: dict, index: int = 0) -> list[tuple[str, int]]:
    """(host, slots) of one reservation, in the order given."""
    return [(a["host"], a["slots"]) for a in lease["reservations"][index]["allocations"]]


def instance_calendar(rpc, frm=ts(0), to=ts(0, days=30)) -> list[dict]:
    return [{**a, "host": h["name"]} for h in rpc.call("calendar.get", {"from": frm, "to": to})["hosts"]
            for a in h["allocations"] if a["kind"] == "instance"]


def check_instance_invariants(rpc) -> None:
    """No host's vcpus, memory or disk are exceeded at any instant by the slots of live leases, no
    host holds slots and a whole-host reservation at once, and the calendar matches the leases."""
    hosts = {h["name"]: h for h in rpc.call("host.list")["items"]}
    live = [l for l in rpc.call("lease.list", {"limit": 1000})["items"] if l["status"] in ("pending", "active")]
    usage: dict[str, list] = {}
    whole: dict[str, list] = {}
    for l in live:
        for r in l["reservations"]:
            for a in r["allocations"]:
                if r["kind"] == "instance":
                    assert set(a) == {"host", "slots"} and a["slots"] >= 1
                    usage.setdefault(a["host"], []).append(
                        (l["start"], l["end"], r["vcpus"] * a["slots"], r["memory_mb"] * a["slots"],
                         r["disk_gb"] * a["slots"]))
                elif r["kind"] == "host":
                    whole.setdefault(a["host"], []).append((l["start"], l["end"]))
    for name, uses in usage.items():
        for t in sorted({u[0] for u in uses}):  # the load only rises at a start
            now = [u for u in uses if u[0] <= t < u[1]]
            for k, field in ((2, "vcpus"), (3, "memory_mb"), (4, "disk_gb")):
                assert sum(u[k] for u in now) <= hosts[name][field], f"{name} {field} exceeded at {t}: {now}"
        for s, e in whole.get(name, []):
            assert not any(u[0] < e and s < u[1] for u in uses), f"{name} is shared by a whole-host reservation"
    from_leases = sorted((l["id"], a["host"], a["slots"]) for l in live for r in l["reservations"]
                         if r["kind"] == "instance" for a in r["allocations"])
    from_calendar = sorted((e["lease_id"], e["host"], e["slots"]) for e in instance_calendar(rpc)
                           if e["status"] in ("pending", "active"))
    assert from_leases == from_calendar


# --- capacity over time ---------------------------------------------------------------------------

def test_slots_fit_the_capacity_left_at_every_instant(rpc):
    make_host(rpc, "h1", vcpus=16, memory_mb=65536, disk_gb=500)
    early = create_lease(rpc, ts(1), ts(3), reservations=[inst(12)])
    late = create_lease(rpc, ts(3), ts(5), reservations=[inst(12)])
    assert placed(early) == placed(late) == [("h1", 1)]
    # 1-5 overlaps both, but they never coexist: the busiest instant uses 12 of 16 vcpus, so 4 fit
    # (a high-water mark over the window would count 24 and refuse) ...
    spanning = create_lease(rpc, ts(1), ts(5), reservations=[inst(4)])
    assert placed(spanning) == [("h1", 1)]
    # ... and nothing more does, at any instant of that span.
    e = refused(rpc, ts(2), ts(4), [inst(1)])
    assert e.data["earliest_start"] == ts(5)
    # Deleting a lease gives its capacity back for exactly its time.
    refused(rpc, ts(1), ts(3), [inst(1)])
    rpc.call("lease.delete", {"id": early["id"]})
    assert placed(create_lease(rpc, ts(1), ts(3), reservations=[inst(12)])) == [("h1", 1)]
    refused(rpc, ts(3), ts(4), [inst(1)])
    assert placed(create_lease(rpc, ts(5), ts(6), reservations=[inst(16)])) == [("h1", 1)]
    check_instance_invariants(rpc)


def test_every_dimension_limits_slots(rpc):
    make_host(rpc, "h1", vcpus=64, memory_mb=8192, disk_gb=100)
    # Memory: two of 4096 MB fill it although vcpus are plenty.
    assert placed(create_lease(rpc, ts(1), ts(2), reservations=[inst(1, 4096, 0, count=2)])) == [("h1", 2)]
    refused(rpc, ts(1), ts(2), [inst(1, 1, 0)])
    # Disk: 100 GB.
    create_lease(rpc, ts(3), ts(4), reservations=[inst(1, 1, 60)])
    e = refused(rpc, ts(3), ts(4), [inst(1, 1, 41)])
    assert e.data["earliest_start"] == ts(4)
    assert placed(create_lease(rpc, ts(3), ts(4), reservations=[inst(1, 1, 40)])) == [("h1", 1)]
    check_instance_invariants(rpc)


def test_slots_spread_over_hosts_without_affinity(rpc):
    make_hosts(rpc, "h1", "h2", "h3", vcpus=16)
    lease = create_lease(rpc, ts(1), ts(2), reservations=[inst(4, count=10)])
    got = placed(lease)
    assert sum(n for _, n in got) == 10 and len({h for h, _ in got}) == len(got) == 3
    assert all(n <= 4 for _, n in got)
    # Packing fills hosts rather than touching all of them a little: two are full.
    assert sorted(n for _, n in got) == [2, 4, 4]
    refused(rpc, ts(1), ts(2), [inst(4, count=3)])
    e = refused(rpc, ts(1), ts(2), [inst(4, count=13)])
    assert "earliest_start" not in e.data  # 12 is all three could ever hold
    check_instance_invariants(rpc)


# --- whole hosts ----------------------------------------------------------------------------------

def test_whole_host_reservations_are_not_shared_with_slots(rpc):
    make_host(rpc, "h1", vcpus=16)
    create_lease(rpc, ts(1), ts(3), reservations=[{"kind": "host", "count": 1}])
    e = refused(rpc, ts(2), ts(4), [inst(1)])
    assert e.data["earliest_start"] == ts(3)
    create_lease(rpc, ts(5), ts(6), reservations=[inst(1)])
    e = refused(rpc, ts(5, minutes=30), ts(7), [{"kind": "host", "count": 1}])
    assert e.data["earliest_start"] == ts(6)
    # Slots go to another host if there is one; a whole-host request takes the empty one.
    make_host(rpc, "h2", vcpus=16)
    assert placed(create_lease(rpc, ts(2), ts(4), reservations=[inst(1)])) == [("h2", 1)]
    make_host(rpc, "h3", vcpus=16)
    whole = create_lease(rpc, ts(5), ts(6), reservations=[{"kind": "host", "count": 2}])
    assert sorted(a["host"] for a in whole["reservations"][0]["allocations"]) == ["h2", "h3"]
    check_instance_invariants(rpc)


def test_one_lease_with_a_host_and_slots_uses_different_hosts(rpc):
    make_hosts(rpc, "h1", "h2", vcpus=16)
    lease = create_lease(rpc, ts(1), ts(2), reservations=[inst(4, count=2), {"kind": "host", "count": 1}])
    (whole,) = [a["host"] for a in lease["reservations"][1]["allocations"]]
    assert [h for h, _ in placed(lease)] == [({"h1", "h2"} - {whole}).pop()]
    refused(rpc, ts(1), ts(2), [inst(4, count=5), {"kind": "host", "count": 1}])
    check_instance_invariants(rpc)


def test_host_update_cannot_shrink_below_the_slots_it_holds(rpc):
    make_host(rpc, "h1", vcpus=16, memory_mb=16384, disk_gb=100)
    a = create_lease(rpc, ts(1), ts(3), reservations=[inst(8, 4096, 40)])
    b = create_lease(rpc, ts(2), ts(4), reservations=[inst(4, 4096, 40)])
    # Peak at 02:00-03:00: 12 vcpus, 8192 MB, 80 GB.
    for fields in ({"vcpus": 11}, {"memory_mb": 8191}, {"disk_gb": 79}):
        e = rpc.error("host.update", {"name": "h1", **fields}, -32005)
        assert sorted(e.data["lease_ids"]) == sorted([a["id"], b["id"]]) and "shrink" in e.message
    assert rpc.call("host.get", {"name": "h1"})["vcpus"] == 16
    assert rpc.call("host.update", {"name": "h1", "vcpus": 12, "memory_mb": 8192, "disk_gb": 80})["vcpus"] == 12
    refused(rpc, ts(2), ts(3), [inst(1, 1, 0)])
    # Only what is still to come counts: after 03:00, b alone (4 vcpus) is left.
    rpc.call("clock.set", {"now": ts(3)})
    rpc.error("host.update", {"name": "h1", "vcpus": 3}, -32005)
    assert rpc.call("host.update", {"name": "h1", "vcpus": 4})["vcpus"] == 4
    check_instance_invariants(rpc)


# --- affinity -------------------------------------------------------------------------------------

def test_same_host_affinity(rpc):
    make_hosts(rpc, "h1", "h2", "h3", vcpus=16)
    lease = create_lease(rpc, ts(1), ts(2), reservations=[inst(4, count=3, affinity="same_host")])
    assert len(placed(lease)) == 1 and placed(lease)[0][1] == 3
    assert lease["reservations"][0]["affinity"] == "same_host"
    # Never: 20 vcpus on one 16-vcpu host.
    e = refused(rpc, ts(1), ts(2), [inst(4, count=5, affinity="same_host")])
    assert "earliest_start" not in e.data and "same_host" in e.message
    # Busy: each host has 8 vcpus in use at 05:00-06:00, so 12 fit in total but not on one host.
    for h in ("h1", "h2", "h3"):
        create_lease(rpc, ts(5), ts(6), reservations=[inst(8, properties={"name": h})])
    e = refused(rpc, ts(5), ts(6), [inst(4, count=3, affinity="same_host")])
    assert e.data["earliest_start"] == ts(6)
    spread = create_lease(rpc, ts(5), ts(6), reservations=[inst(4, count=3)])
    assert len(placed(spread)) == 2
    check_instance_invariants(rpc)


def test_different_host_affinity(rpc):
    make_hosts(rpc, "h1", "h2", "h3", vcpus=16)
    lease = create_lease(rpc, ts(1), ts(2), reservations=[inst(1, count=3, affinity="different_host")])
    assert sorted(placed(lease)) == [("h1", 1), ("h2", 1), ("h3", 1)]
    e = refused(rpc, ts(1), ts(2), [inst(1, count=4, affinity="different_host")])
    assert "earliest_start" not in e.data and "different_host" in e.message
    # Busy: one host full at 05:00-06:00, so only two can be apart then.
    create_lease(rpc, ts(5), ts(6), reservations=[{"kind": "host", "count": 1, "properties": {"name": "h2"}}])
    e = refused(rpc, ts(5), ts(6), [inst(1, count=3, affinity="different_host")])
    assert e.data["earliest_start"] == ts(6)
    two = create_lease(rpc, ts(5), ts(6), reservations=[inst(1, count=2, affinity="different_host")])
    assert sorted(h for h, _ in placed(two)) == ["h1", "h3"]
    check_instance_invariants(rpc)


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("reservation,words", [
    (inst(33), ["33 vcpus"]),
    (inst(1, 70000), ["70000 MB"]),
    (inst(1, 1024, 600), ["600 GB"]),
    (inst(33, count=1, affinity="different_host"), ["33 vcpus"]),
])
def test_instances_larger_than_any_host_are_refused_with_a_reason(rpc, reservation, words):
    make_hosts(rpc, "h1", "h2", vcpus=32, memory_mb=65536, disk_gb=500)
    e = rpc.error("lease.create", lease_params(ts(1), ts(2), reservations=[reservation]))
    assert e.code in (-32002, -32602), e
    if e.code == -32002:
        assert e.reason == "no_capacity" and "earliest_start" not in e.data
    for w in words:
        assert w in e.message, e.message
    assert rpc.call("availability.find", {"reservations": [reservation], "duration_s": 3600})["items"] == []
    assert rpc.call("lease.list")["items"] == []


@pytest.mark.parametrize("reservation,path", [
    (inst(0), "reservations[0].vcpus"),
    (inst(1, 0), "reservations[0].memory_mb"),
    (inst(1, 1, -1), "reservations[0].disk_gb"),
    (inst(1, count=0), "reservations[0].count"),
    (inst(1, affinity="same_rack"), "reservations[0].affinity"),
    (inst(1, affinity=True), "reservations[0].affinity"),
    ({"kind": "instance", "vcpus": 1, "memory_mb": 1, "count": 1}, "reservations[0].disk_gb"),
    (inst(1, profile="1g.5gb"), "reservations[0].profile"),
])
def test_bad_instance_requests_are_invalid_params(rpc, reservation, path):
    make_host(rpc, "h1")
    e = rpc.error("lease.create", lease_params(ts(1), ts(2), reservations=[reservation]), -32602)
    assert path in e.error_paths, e.data
    e = rpc.error("availability.find", {"reservations": [reservation], "duration_s": 60}, -32602)
    assert path in e.error_paths


def test_null_affinity_is_no_affinity(rpc):
    make_hosts(rpc, "h1", "h2", vcpus=4)
    lease = create_lease(rpc, ts(1), ts(2), reservations=[inst(4, count=2, affinity=None)])
    assert lease["reservations"][0]["affinity"] is None
    assert sorted(placed(lease)) == [("h1", 1), ("h2", 1)]


# --- dry runs, updates, availability ----------------------------------------------------------------

def test_dry_run_shows_slots_and_stores_nothing(rpc):
    make_hosts(rpc, "h1", "h2", vcpus=8)
    seen = len(events(rpc))
    dry = rpc.call("lease.create", lease_params(ts(1), ts(2), reservations=[inst(4, count=3)], dry_run=True))
    assert sum(n for _, n in placed(dry)) == 3 and all(set(a) == {"host", "slots"}
                                                       for a in dry["reservations"][0]["allocations"])
    assert rpc.call("lease.list")["items"] == [] and instance_calendar(rpc) == [] and len(events(rpc)) == seen
    rpc.error("lease.get", {"id": dry["id"]}, -32001)
    real = create_lease(rpc, ts(1), ts(2), reservations=[inst(4, count=3)])
    assert placed(real) == placed(dry)


def test_update_grows_shrinks_and_extends_keeping_hosts(rpc):
    make_hosts(rpc, "h1", "h2", "h3", vcpus=16)
    lease = create_lease(rpc, ts(1), ts(3), reservations=[inst(4, count=2)])
    ((host, n),) = placed(lease)
    assert n == 2
    rid = lease["reservations"][0]["id"]
    grown = rpc.call("lease.update", {"id": lease["id"], "reservations": [{"id": rid, **inst(4, count=4)}]})
    assert placed(grown) == [(host, 4)] and grown["reservations"][0]["id"] == rid
    more = rpc.call("lease.update", {"id": lease["id"], "reservations": [inst(4, count=6)]})
    assert placed(more)[0] == (host, 4) and sum(n for _, n in placed(more)) == 6
    shrunk = rpc.call("lease.update", {"id": lease["id"], "reservations": [inst(4, count=1)]})
    assert placed(shrunk) == [(host, 1)]
    extended = rpc.call("lease.update", {"id": lease["id"], "end": ts(10)})
    assert placed(extended) == [(host, 1)] and extended["end"] == ts(10)
    # Extending into a time when its host is full moves it, and nothing else.
    create_lease(rpc, ts(10), ts(12), reservations=[{"kind": "host", "count": 1, "properties": {"name": host}}])
    moved = rpc.call("lease.update", {"id": lease["id"], "end": ts(11)})
    assert [h for h, _ in placed(moved)] != [host]
    # Same-host affinity keeps the host when it holds them all.
    pinned = create_lease(rpc, ts(20), ts(21), reservations=[inst(2, count=2, affinity="same_host")])
    ((ph, _),) = placed(pinned)
    assert placed(rpc.call("lease.update", {"id": pinned["id"], "reservations": [
        inst(2, count=8, affinity="same_host")]})) == [(ph, 8)]
    dry = rpc.call("lease.update", {"id": pinned["id"], "reservations": [inst(2, count=3, affinity="same_host")],
                                    "dry_run": True})
    assert placed(dry) == [(ph, 3)]
    assert placed(rpc.call("lease.get", {"id": pinned["id"]})) == [(ph, 8)]
    check_instance_invariants(rpc)


def test_update_refused_for_lack_of_room_changes_nothing(rpc):
    make_host(rpc, "h1", vcpus=8)
    lease = create_lease(rpc, ts(1), ts(2), reservations=[inst(4)])
    create_lease(rpc, ts(1), ts(2), reservations=[inst(4)])
    e = rpc.error("lease.update", {"id": lease["id"], "reservations": [inst(4, count=2)]}, -32002)
    assert e.data["earliest_start"] == ts(2)
    assert rpc.call("lease.get", {"id": lease["id"]}) == lease


def test_availability_find_for_instances(rpc):
    make_host(rpc, "h1", vcpus=16)
    create_lease(rpc, ts(1), ts(3), reservations=[inst(8)])
    create_lease(rpc, ts(2), ts(4), reservations=[inst(8)])
    find = lambda res, **kw: [(w["start"], w["end"]) for w in rpc.call(
        "availability.find", {"reservations": res, "duration_s": 3600, **kw})["items"]]
    assert find([inst(8)], earliest=ts(1), limit=1) == [(ts(1), ts(2))]
    assert find([inst(8)], earliest=ts(1, minutes=30), limit=2) == [(ts(3), ts(4)), (ts(4), ts(5))]
    assert find([inst(16)], earliest=ts(1), limit=1) == [(ts(4), ts(5))]
    assert find([inst(8, count=2, affinity="different_host")]) == []
    make_host(rpc, "h2", vcpus=16)
    assert find([inst(8, count=2, affinity="different_host")], earliest=ts(2), limit=1) == [(ts(3), ts(4))]


# --- calendar, lifecycle, restart -------------------------------------------------------------------

def test_calendar_shows_instance_slots(rpc):
    make_hosts(rpc, "h1", "h2", vcpus=8)
    lease = create_lease(rpc, ts(1), ts(2), name="slots", reservations=[inst(4, count=3)])
    entries = instance_calendar(rpc, ts(0), ts(3))
    assert sorted((e["host"], e["slots"]) for e in entries) == sorted(placed(lease))
    for e in entries:
        assert (e["kind"], e["lease_id"], e["reservation_id"], e["lease_name"], e["start"], e["end"]) == (
            "instance", lease["id"], lease["reservations"][0]["id"], "slots", ts(1), ts(2))
        assert "gpu" not in e and "slot" not in e
    assert instance_calendar(rpc, ts(2), ts(3)) == []


def test_lifecycle_events_and_actions_of_an_instance_lease(rpc):
    make_hosts(rpc, "h1", "h2", vcpus=8)
    lease = create_lease(rpc, ts(1), ts(3), reservations=[inst(4, count=2, affinity="different_host")])
    lid = lease["id"]
    rpc.call("clock.set", {"now": ts(1)})
    got = rpc.call("lease.get", {"id": lid})
    assert got["status"] == "active" and got["reservations"][0]["status"] == "active"
    (start,) = rpc.call("actions.list", {"lease_id": lid})["items"]
    assert start["kind"] == "lease.start" and sorted(start["payload"]["hosts"]) == ["h1", "h2"]
    assert sorted((a["host"], a["slots"]) for a in start["payload"]["allocations"]) == [("h1", 1), ("h2", 1)]
    # One more slot on a host it already holds: the cloud must hear of it.
    rpc.call("lease.update", {"id": lid, "reservations": [inst(4, count=3)]})
    assert [a["kind"] for a in rpc.call("actions.list", {"lease_id": lid})["items"]] == ["lease.start", "lease.update"]
    rpc.call("clock.set", {"now": ts(3)})
    assert rpc.call("lease.get", {"id": lid})["status"] == "ended"
    assert [e["type"] for e in events(rpc) if e.get("lease_id") == lid] == [
        "lease.created", "lease.started", "lease.updated", "lease.ended"]
    items = wait_until(lambda: (lambda xs: xs if all(a["status"] == "done" for a in xs) else None)(
        rpc.call("actions.list", {"lease_id": lid})["items"]), "instance lease actions delivered")
    assert [a["kind"] for a in items] == ["lease.start", "lease.update", "lease.end"]
    # Its capacity is free after the end.
    assert placed(create_lease(rpc, ts(3), ts(4), reservations=[inst(8, count=2)]))


def test_sigkill_and_restart_keep_every_allocation_of_every_kind(daemon):
    daemon.start()
    rpc = daemon.client()
    make_hosts(rpc, "c1", "c2", vcpus=16, memory_mb=32768)
    make_host(rpc, "g1", vcpus=32, gpus=[{"model": "A100-40GB"}, {"model": "A100-40GB"}])
    mixed = create_lease(rpc, ts(1), ts(4), name="mixed", reservations=[
        {"kind": "gpu", "profile": "3g.20gb", "count": 1}, inst(8, 8192, count=3), {"kind": "host", "count": 1}])
    spread = create_lease(rpc, ts(2), ts(6), name="spread", reservations=[inst(4, count=2, affinity="different_host")])
    later = create_lease(rpc, ts(5), ts(8), name="later", reservations=[
        inst(2, count=4, affinity="same_host"), {"kind": "gpu", "profile": "1g.5gb", "count": 3}])
    rpc.call("lease.update", {"id": spread["id"], "end": ts(7)})
    rpc.call("clock.set", {"now": ts(3)})  # mixed and spread active, later pending
    leases = rpc.call("lease.list", {"limit": 1000})
    cal = rpc.call("calendar.get", {"from": ts(0), "to": ts(24)})
    probes = [
        lease_params(ts(3), ts(4), reservations=[inst(16, count=2)], dry_run=True),
        lease_params(ts(3), ts(4), reservations=[{"kind": "host", "count": 2}], dry_run=True),
        lease_params(ts(3), ts(4), reservations=[{"kind": "gpu", "profile": "7g.40gb", "count": 2}], dry_run=True),
    ]
    before = [rpc.request("lease.create", p) for p in probes]
    assert all("error" in r and r["error"]["code"] == -32002 for r in before), before

    assert daemon.kill() == -signal.SIGKILL
    daemon.restart(now=None)
    rpc = daemon.client()
    assert rpc.call("lease.list", {"limit": 1000}) == leases
    assert rpc.call("calendar.get", {"from": ts(0), "to": ts(24)}) == cal
    after = [rpc.request("lease.create", p) for p in probes]
    assert [r["error"] for r in after] == [r["error"] for r in before]
    check_instance_invariants(rpc)
    rpc.call("clock.set", {"now": ts(5)})
    got = rpc.call("lease.get", {"id": later["id"]})
    assert got["status"] == "active" and got["reservations"] == [
        {**r, "status": "active"} for r in later["reservations"]]
    assert rpc.call("lease.get", {"id": mixed["id"]})["status"] == "ended"
