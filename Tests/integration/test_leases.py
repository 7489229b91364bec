"""Leases: placement (counts, properties, no double booking, best fit in time), dry runs, updates,
deletes, listing, availability and the calendar."""

from __future__ import annotations

import threading

import pytest

from berthtest import RPCError, create_lease, events, hosts_of, lease_params, make_host, make_hosts, ts


def host_res(count=None, *, min=None, max=None, properties=None, id=None) -> dict:
    r: dict = {"kind": "host"}
    if id is not None:
        r["id"] = id
    if count is not None:
        r["count"] = count
    else:
        r["min"], r["max"] = min, max
    if properties is not None:
        r["properties"] = properties
    return r


def only(name: str) -> dict:
    """A reservation pinned to one host by name (a built-in field)."""
    return host_res(1, properties={"name": name})


# --- counts ---------------------------------------------------------------------------------------

def test_count_allocates_that_many_distinct_hosts(rpc):
    make_hosts(rpc, "h1", "h2", "h3")
    lease = create_lease(rpc, ts(1), ts(2), count=2)
    got = hosts_of(lease)
    assert len(got) == 2 and len(set(got)) == 2 and set(got) <= {"h1", "h2", "h3"}
    assert lease["reservations"][0]["count"] == 2
    assert rpc.call("lease.get", {"id": lease["id"]}) == lease


def test_count_more_than_exist_is_no_capacity_without_earliest_start(rpc):
    make_hosts(rpc, "h1", "h2")
    e = rpc.error("lease.create", lease_params(ts(1), ts(2), count=3), -32002)
    assert e.reason == "no_capacity"
    assert "earliest_start" not in e.data  # no later start would help
    assert rpc.call("lease.list")["items"] == []


def test_min_max_takes_as_many_as_are_free_up_to_max(rpc):
    make_hosts(rpc, "h1", "h2", "h3", "h4")
    create_lease(rpc, ts(1), ts(2), reservations=[only("h4")])
    full = create_lease(rpc, ts(5), ts(6), reservations=[host_res(min=1, max=3)])
    assert len(hosts_of(full)) == 3
    assert (full["reservations"][0]["min"], full["reservations"][0]["max"]) == (1, 3)
    # Over 01:00-02:00 h4 is taken: 3 are free, max 5 takes those 3.
    some = create_lease(rpc, ts(1), ts(2), reservations=[host_res(min=2, max=5)])
    assert sorted(hosts_of(some)) == ["h1", "h2", "h3"]
    # Now none are free then: even min 1 fails.
    e = rpc.error("lease.create", lease_params(ts(1), ts(2), reservations=[host_res(min=1, max=2)]), -32002)
    assert e.data["earliest_start"] == ts(2)


def test_unreservable_and_down_hosts_are_not_allocated(rpc):
    make_hosts(rpc, "h1")
    make_host(rpc, "h2", reservable=False)
    make_host(rpc, "h3")
    rpc.call("host.update", {"name": "h3", "state": "maintenance"})
    lease = create_lease(rpc, ts(1), ts(2))
    assert hosts_of(lease) == ["h1"]
    assert rpc.error("lease.create", lease_params(ts(1), ts(2), count=2), -32002)


# --- properties -----------------------------------------------------------------------------------

@pytest.fixture
def inventory(rpc):
    make_host(rpc, "small", memory_mb=2048, properties={"rack": "r1", "ib": True, "gen": "9"})
    make_host(rpc, "medium", memory_mb=4096, properties={"rack": "r2", "ib": False, "gen": "10"})
    make_host(rpc, "large", memory_mb=8192, properties={"rack": "r3", "ib": True, "gen": "11"})
    make_host(rpc, "plain", memory_mb=16384, properties={})
    return rpc


def matching(rpc, properties) -> set[str]:
    """The hosts a filter selects, found through placement: a dry run for all of them must take
    exactly those, and asking for one more must fail."""
    listed = {h["name"] for h in rpc.call("host.list", {"properties": properties})["items"]}
    if listed:
        lease = rpc.call("lease.create", lease_params(ts(1), ts(2), dry_run=True,
                                                      reservations=[host_res(len(listed), properties=properties)]))
        assert set(hosts_of(lease)) == listed
    e = rpc.error("lease.create", lease_params(ts(1), ts(2), dry_run=True,
                                               reservations=[host_res(len(listed) + 1, properties=properties)]),
                  -32002)
    assert e.reason == "no_capacity"
    return listed


@pytest.mark.parametrize("properties,expected", [
    ({"rack": "r1"}, {"small"}),
    ({"rack": "r2", "ib": False}, {"medium"}),
    ({"ib": True}, {"small", "large"}),
    ({"ib": "true"}, {"small", "large"}),  # booleans compare as their text
    ({"rack": "r9"}, set()),
    ([">=", "$memory_mb", 4096], {"medium", "large", "plain"}),
    (["<", "$memory_mb", 4096], {"small"}),
    (["and", [">=", "$memory_mb", 4096], ["==", "$ib", "true"]], {"large"}),
    (["or", ["==", "$rack", "r1"], ["==", "$rack", "r3"]], {"small", "large"}),
    (["not", ["==", "$rack", "r1"]], {"medium", "large", "plain"}),
    (["in", "$rack", ["r1", "r2", "r7"]], {"small", "medium"}),
    (["!=", "$rack", "r1"], {"medium", "large", "plain"}),
    # Numbers compare as numbers, also when stored as text: "10" > 9 although "10" < "9" as text.
    ([">", "$gen", 9], {"medium", "large"}),
    ([">=", "$gen", "10"], {"medium", "large"}),
    (["and", ["not", ["in", "$name", ["plain"]]], ["or", ["<=", "$memory_mb", 2048], [">", "$memory_mb", 5000]]],
     {"small", "large"}),
])
def test_property_filters(inventory, properties, expected):
    assert matching(inventory, properties) == expected


def test_property_filter_is_echoed_in_the_reservation(inventory):
    expr = ["and", [">=", "$memory_mb", 4096], ["==", "$ib", "true"]]
    lease = create_lease(inventory, ts(1), ts(2), reservations=[host_res(1, properties=expr)])
    assert lease["reservations"][0]["properties"] == expr
    assert hosts_of(lease) == ["large"]


# --- no double booking ------------------------------------------------------------------------------

def test_overlapping_leases_never_share_a_host(rpc):
    make_hosts(rpc, "h1", "h2")
    a = create_lease(rpc, ts(10), ts(12))
    b = create_lease(rpc, ts(11), ts(13))
    assert set(hosts_of(a)).isdisjoint(hosts_of(b))
    # Both hosts are taken from 11:00 to 12:00: a third lease there fails, and says when it would fit.
    e = rpc.error("lease.create", lease_params(ts(11, minutes=30), ts(12, minutes=30)), -32002)
    assert e.reason == "no_capacity"
    assert e.data["earliest_start"] == ts(12)
    # The earliest start it gave does fit.
    c = create_lease(rpc, e.data["earliest_start"], ts(13))
    assert hosts_of(c) == hosts_of(a)


def test_earliest_start_accounts_for_the_whole_request(rpc):
    make_hosts(rpc, "h1", "h2")
    create_lease(rpc, ts(1), ts(3), reservations=[only("h1")])
    create_lease(rpc, ts(1), ts(5), reservations=[only("h2")])
    e = rpc.error("lease.create", lease_params(ts(2), ts(4), count=2), -32002)
    assert e.data["earliest_start"] == ts(5)
    e = rpc.error("lease.create", lease_params(ts(2), ts(4), count=1), -32002)
    assert e.data["earliest_start"] == ts(3)


def test_back_to_back_leases_share_a_host(rpc):
    make_hosts(rpc, "h1")
    a = create_lease(rpc, ts(1), ts(2))
    b = create_lease(rpc, ts(2), ts(3))
    c = create_lease(rpc, ts(0), ts(1))
    assert hosts_of(a) == hosts_of(b) == hosts_of(c) == ["h1"]
    assert rpc.error("lease.create", lease_params(ts(1, minutes=59), ts(2, minutes=1)), -32002)


def test_concurrent_requests_for_the_same_window_never_double_book(berthd):
    rpc = berthd.client()
    make_hosts(rpc, *[f"h{i}" for i in range(4)])
    results: list = []
    lock = threading.Lock()
    clients = [berthd.client() for _ in range(12)]
    barrier = threading.Barrier(len(clients))

    def worker(c):
        barrier.wait()
        try:
            r = c.call("lease.create", lease_params(ts(1), ts(2), name="race"))
        except RPCError as e:
            r = e
        with lock:
            results.append(r)

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    won = [r for r in results if isinstance(r, dict)]
    lost = [r for r in results if isinstance(r, RPCError)]
    assert len(results) == 12
    assert len(won) == 4 and all(e.code == -32002 for e in lost)
    held = [h for lease in won for h in hosts_of(lease)]
    assert sorted(held) == ["h0", "h1", "h2", "h3"]
    assert len(rpc.call("lease.list")["items"]) == 4


# --- best fit in time -----------------------------------------------------------------------------

def test_best_fit_prefers_the_host_whose_free_gap_is_tightest(rpc):
    # "a" is free all day; "b" is busy until 12:00. First fit by name would pick "a" for 12:00-14:00,
    # splitting its long free run; best fit in time picks "b", right after its lease.
    make_hosts(rpc, "a", "b")
    create_lease(rpc, ts(10), ts(12), reservations=[only("b")])
    lease = create_lease(rpc, ts(12), ts(14))
    assert hosts_of(lease) == ["b"]
    # "a" stays whole: a long lease across the day still fits there.
    long = create_lease(rpc, ts(8), ts(20))
    assert hosts_of(long) == ["a"]


def test_best_fit_compares_gaps_on_both_sides(rpc):
    make_hosts(rpc, "a", "b", "c")
    create_lease(rpc, ts(2), ts(6), reservations=[only("a")])   # a: free from 06:00 (6 h before 12:00)
    create_lease(rpc, ts(2), ts(11), reservations=[only("b")])  # b: free from 11:00 (1 h before)
    create_lease(rpc, ts(16), ts(18), reservations=[only("c")])  # c: free until 16:00 (2 h after 14:00)
    lease = create_lease(rpc, ts(12), ts(14))
    assert hosts_of(lease) == ["b"]
    lease2 = create_lease(rpc, ts(12), ts(14))
    assert hosts_of(lease2) == ["c"]


# --- hosts going down -------------------------------------------------------------------------------

def test_host_down_marks_leases_it_cannot_heal_degraded(rpc):
    make_hosts(rpc, "a")
    lease = create_lease(rpc, ts(1), ts(2))
    rpc.call("host.update", {"name": "a", "state": "maintenance"})
    got = rpc.call("lease.get", {"id": lease["id"]})
    assert got["degraded"] is True and "a" in got["degraded_reason"]
    types = [e["type"] for e in events(rpc)]
    assert types[-3:] == ["host.updated", "host.down", "lease.updated"]
    # Nothing new is placed on it while it is down.
    assert rpc.error("lease.create", lease_params(ts(3), ts(4)), -32002)
    rpc.call("host.update", {"name": "a", "state": "up"})
    assert events(rpc)[-1]["type"] == "host.up"
    assert hosts_of(create_lease(rpc, ts(3), ts(4))) == ["a"]


def test_host_down_moves_future_allocations_to_free_capacity(rpc):
    make_hosts(rpc, "a", "b")
    lease = create_lease(rpc, ts(1), ts(2))
    assert hosts_of(lease) == ["a"]
    rpc.call("host.update", {"name": "a", "state": "down"})
    got = rpc.call("lease.get", {"id": lease["id"]})
    assert hosts_of(got) == ["b"] and got["degraded"] is False
    assert got["reservations"][0]["id"] == lease["reservations"][0]["id"]
    moved = [e for e in events(rpc, types=["lease.updated"]) if e["lease_id"] == lease["id"]]
    assert [(e["data"]["hosts_removed"], e["data"]["hosts_added"], e["data"]["healed_from"]) for e in moved] == \
        [(["a"], ["b"], "a")]
    # b is taken over that window now; a is down: nothing is left for another lease then.
    assert rpc.error("lease.create", lease_params(ts(1), ts(2)), -32002)


def test_host_down_keeps_what_is_elsewhere_and_moves_only_what_was_there(rpc):
    make_hosts(rpc, "a", "b", "c", "d")
    lease = create_lease(rpc, ts(1), ts(2), count=2)
    before = sorted(hosts_of(lease))
    down = before[0]
    rpc.call("host.update", {"name": down, "state": "maintenance"})
    after = sorted(hosts_of(rpc.call("lease.get", {"id": lease["id"]})))
    assert before[1] in after and down not in after and len(after) == 2


def test_host_down_heals_active_leases_and_tells_the_cloud(rpc):
    make_hosts(rpc, "a", "b")
    lease = create_lease(rpc, ts(1), ts(3))
    rpc.call("clock.set", {"now": ts(2)})
    assert rpc.call("lease.get", {"id": lease["id"]})["status"] == "active"
    rpc.call("host.update", {"name": "a", "state": "down"})
    got = rpc.call("lease.get", {"id": lease["id"]})
    assert got["status"] == "active" and hosts_of(got) == ["b"] and not got["degraded"]
    kinds = [a["kind"] for a in rpc.call("actions.list", {"lease_id": lease["id"]})["items"]]
    assert kinds.count("lease.update") == 1


def test_host_down_heals_gpu_slices_onto_another_gpu(rpc):
    make_host(rpc, "g1", gpus=[{"model": "A100-40GB"}])
    make_host(rpc, "g2", gpus=[{"model": "A100-40GB"}])
    lease = create_lease(rpc, ts(1), ts(2), reservations=[{"kind": "gpu", "profile": "3g.20gb", "count": 2}])
    held = {a["host"] for a in lease["reservations"][0]["allocations"]}
    assert len(held) == 1
    (down,) = held
    rpc.call("host.update", {"name": down, "state": "down"})
    got = rpc.call("lease.get", {"id": lease["id"]})
    allocs = got["reservations"][0]["allocations"]
    assert not got["degraded"] and len(allocs) == 2 and {a["host"] for a in allocs} == {"g1", "g2"} - {down}
    assert sorted(a["slot"] for a in allocs) == [0, 4]


def test_host_down_heals_in_start_order_and_degrades_what_no_longer_fits(rpc):
    make_hosts(rpc, "a", "b")
    first = create_lease(rpc, ts(1), ts(3), reservations=[only("a")])
    second = create_lease(rpc, ts(2), ts(4), reservations=[host_res(1)])  # b: a is taken then
    assert hosts_of(second) == ["b"]
    rpc.call("host.update", {"name": "b", "state": "down"})
    # The first lease holds a over the second's window: the second cannot move.
    got = rpc.call("lease.get", {"id": second["id"]})
    assert got["degraded"] is True and "b" in got["degraded_reason"] and hosts_of(got) == ["b"]
    assert rpc.call("lease.get", {"id": first["id"]})["degraded"] is False
    # Back up: reservable again, and the degraded lease still holds b.
    rpc.call("host.update", {"name": "b", "state": "up"})
    assert rpc.error("lease.create", lease_params(ts(2), ts(4), reservations=[only("b")]), -32002)


def test_host_down_ends_the_preemptibles_on_it(rpc):
    make_hosts(rpc, "a")
    p = rpc.call("preemptible.create", {"project_id": "slurm", "vcpus": 2, "memory_mb": 2048, "disk_gb": 10})
    assert p["host"] == "a" and p["status"] == "running"
    rpc.call("host.update", {"name": "a", "state": "down"})
    got = rpc.call("preemptible.get", {"id": p["id"]})
    assert got["status"] == "ended" and got["ended_at"] is not None
    ended = [e for e in events(rpc, types=["preemptible.ended"]) if e.get("preemptible_id") == p["id"]]
    assert [e["data"]["reason"] for e in ended] == ["host_down"]
    ends = [a for a in rpc.call("actions.list", {})["items"] if a["kind"] == "preemptible.end"]
    assert [a["payload"]["preemptible_id"] for a in ends] == [p["id"]]


def test_healing_survives_a_restart(berthd):
    rpc = berthd.client()
    make_hosts(rpc, "a", "b")
    lease = create_lease(rpc, ts(1), ts(2))
    rpc.call("host.update", {"name": "a", "state": "down"})
    berthd.restart()
    rpc = berthd.client()
    got = rpc.call("lease.get", {"id": lease["id"]})
    assert hosts_of(got) == ["b"] and not got["degraded"]
    assert rpc.error("lease.create", lease_params(ts(1), ts(2)), -32002)


# --- dry run ----------------------------------------------------------------------------------------

def test_dry_run_stores_nothing(rpc):
    make_hosts(rpc, "h1")
    before = events(rpc)
    preview = rpc.call("lease.create", lease_params(ts(1), ts(2), dry_run=True, idempotency_key="dry"))
    assert preview["status"] == "pending" and hosts_of(preview) == ["h1"]
    assert isinstance(preview["cost"], dict)
    assert rpc.error("lease.get", {"id": preview["id"]}, -32001)
    assert rpc.call("lease.list")["items"] == []
    assert events(rpc) == before
    # The capacity is still free, and the key was not used up by the dry run.
    real = create_lease(rpc, ts(1), ts(2), idempotency_key="dry")
    assert real["id"] != preview["id"]
    assert hosts_of(real) == ["h1"]


def test_dry_run_update_changes_nothing(rpc):
    make_hosts(rpc, "h1", "h2")
    lease = create_lease(rpc, ts(1), ts(2))
    preview = rpc.call("lease.update", {"id": lease["id"], "end": ts(5), "dry_run": True,
                                        "reservations": [host_res(2)]})
    assert preview["end"] == ts(5) and len(hosts_of(preview)) == 2
    assert rpc.call("lease.get", {"id": lease["id"]}) == lease
    assert [e["type"] for e in events(rpc, types=["lease.*"])] == ["lease.created"]


# --- update -----------------------------------------------------------------------------------------

def test_extend_and_shorten_keep_the_hosts(rpc):
    make_hosts(rpc, "a", "b")
    lease = create_lease(rpc, ts(1), ts(3))
    assert hosts_of(lease) == ["a"]
    # Make "b" the better fit for the extended window: a fresh placement would move to it.
    create_lease(rpc, ts(5), ts(6), reservations=[only("b")])
    longer = rpc.call("lease.update", {"id": lease["id"], "end": ts(5)})
    assert longer["end"] == ts(5) and longer["start"] == ts(1)
    assert hosts_of(longer) == ["a"]
    assert longer["reservations"][0]["id"] == lease["reservations"][0]["id"]
    shorter = rpc.call("lease.update", {"id": lease["id"], "end": ts(2)})
    assert shorter["end"] == ts(2) and hosts_of(shorter) == ["a"]
    assert rpc.call("lease.get", {"id": lease["id"]}) == shorter
    updated = events(rpc, types=["lease.updated"])
    assert len(updated) == 2
    assert all(e["data"]["hosts_added"] == [] and e["data"]["hosts_removed"] == [] for e in updated)


def test_move_keeps_hosts_where_free_and_moves_where_not(rpc):
    make_hosts(rpc, "a", "b")
    lease = create_lease(rpc, ts(1), ts(3))
    assert hosts_of(lease) == ["a"]
    moved = rpc.call("lease.update", {"id": lease["id"], "start": ts(2), "end": ts(4)})
    assert (moved["start"], moved["end"], hosts_of(moved)) == (ts(2), ts(4), ["a"])
    create_lease(rpc, ts(6), ts(8), reservations=[only("a")])
    moved = rpc.call("lease.update", {"id": lease["id"], "start": ts(6), "end": ts(7)})
    assert hosts_of(moved) == ["b"]
    last = events(rpc, types=["lease.updated"])[-1]
    assert last["data"] == {"hosts_added": ["b"], "hosts_removed": ["a"]}


def test_extension_into_a_full_window_fails_and_changes_nothing(rpc):
    make_hosts(rpc, "a")
    lease = create_lease(rpc, ts(1), ts(3))
    create_lease(rpc, ts(4), ts(6))
    e = rpc.error("lease.update", {"id": lease["id"], "end": ts(5)}, -32002)
    assert e.reason == "no_capacity"
    assert rpc.call("lease.get", {"id": lease["id"]}) == lease


def test_grow_and_shrink_keep_existing_hosts(rpc):
    make_hosts(rpc, "h1", "h2", "h3", "h4")
    lease = create_lease(rpc, ts(1), ts(3), count=2)
    first = set(hosts_of(lease))
    rid = lease["reservations"][0]["id"]
    grown = rpc.call("lease.update", {"id": lease["id"], "reservations": [host_res(3)]})
    assert first < set(hosts_of(grown)) and len(hosts_of(grown)) == 3
    assert grown["reservations"][0]["id"] == rid and grown["reservations"][0]["count"] == 3
    shrunk = rpc.call("lease.update", {"id": lease["id"], "reservations": [host_res(1)]})
    assert len(hosts_of(shrunk)) == 1 and set(hosts_of(shrunk)) < set(hosts_of(grown))
    # The released hosts are free again for the same window.
    others = create_lease(rpc, ts(1), ts(3), count=3)
    assert set(hosts_of(others)).isdisjoint(hosts_of(shrunk))


def test_update_matches_reservations_by_id(rpc):
    make_hosts(rpc, "h1", "h2", "h3")
    lease = create_lease(rpc, ts(1), ts(3), reservations=[only("h1"), host_res(1)])
    r0, r1 = lease["reservations"]
    # Name the second reservation by id, drop the first, add a new one.
    updated = rpc.call("lease.update", {"id": lease["id"], "reservations": [
        {"id": r1["id"], "kind": "host", "count": 1}, {"kind": "host", "count": 1}]})
    kept, new = updated["reservations"]
    assert kept["id"] == r1["id"] and kept["allocations"] == r1["allocations"]
    assert new["id"] not in (r0["id"], r1["id"])
    assert hosts_of(updated) == [r1["allocations"][0]["host"], new["allocations"][0]["host"]]
    assert len(set(hosts_of(updated))) == 2
    e = rpc.error("lease.update", {"id": lease["id"], "reservations": [
        {"id": "00000000-0000-4000-8000-000000000000", "kind": "host", "count": 1}]}, -32602)
    assert e.error_paths == ["reservations[0].id"]
    e = rpc.error("lease.update", {"id": lease["id"], "reservations": [
        {"id": kept["id"], "kind": "host", "count": 1}, {"id": kept["id"], "kind": "host", "count": 1}]}, -32602)
    assert e.error_paths == ["reservations[1].id"]


def test_updating_an_active_lease_that_changes_hosts_owes_the_cloud_an_update(rpc):
    make_hosts(rpc, "h1", "h2")
    lease = create_lease(rpc, ts(1), ts(3))
    rpc.call("clock.set", {"now": ts(2)})
    grown = rpc.call("lease.update", {"id": lease["id"], "reservations": [host_res(2)], "end": ts(4)})
    assert grown["status"] == "active" and sorted(hosts_of(grown)) == ["h1", "h2"]
    assert all(r["status"] == "active" for r in grown["reservations"])
    kinds = [a["kind"] for a in rpc.call("actions.list", {"lease_id": lease["id"]})["items"]]
    assert kinds == ["lease.start", "lease.update"]
    rpc.call("clock.set", {"now": ts(4)})
    assert rpc.call("lease.get", {"id": lease["id"]})["status"] == "ended"


# --- delete -----------------------------------------------------------------------------------------

def test_delete_pending_lease(rpc):
    make_hosts(rpc, "h1")
    lease = create_lease(rpc, ts(1), ts(2))
    result = rpc.call("lease.delete", {"id": lease["id"]})
    assert isinstance(result["refund"], dict)
    got = rpc.call("lease.get", {"id": lease["id"]})
    assert got["status"] == "deleted" and all(r["status"] == "deleted" for r in got["reservations"])
    assert [e["type"] for e in events(rpc, types=["lease.*"])] == ["lease.created", "lease.deleted"]
    # Its capacity is free again, and it never starts.
    assert hosts_of(create_lease(rpc, ts(1), ts(2))) == ["h1"]
    rpc.call("clock.set", {"now": ts(3)})
    assert rpc.call("lease.get", {"id": lease["id"]})["status"] == "deleted"
    assert rpc.call("actions.list", {"lease_id": lease["id"]})["items"] == []


def test_delete_active_lease_ends_it_now(rpc):
    make_hosts(rpc, "h1")
    lease = create_lease(rpc, ts(1), ts(5))
    rpc.call("clock.set", {"now": ts(2)})
    result = rpc.call("lease.delete", {"id": lease["id"]})
    assert isinstance(result["refund"], dict)
    got = rpc.call("lease.get", {"id": lease["id"]})
    assert got["status"] == "deleted"
    assert got["end"] == ts(2)
    evs = [(e["type"], e["at"]) for e in events(rpc, types=["lease.*"])]
    assert evs == [("lease.created", ts(0)), ("lease.started", ts(1)), ("lease.ended", ts(2)),
                   ("lease.deleted", ts(2))]
    assert [a["kind"] for a in rpc.call("actions.list", {"lease_id": lease["id"]})["items"]] == [
        "lease.start", "lease.end"]
    # The host is free from now on.
    assert hosts_of(create_lease(rpc, "now", ts(5))) == ["h1"]
    # Nothing fires later for the deleted lease.
    rpc.call("clock.set", {"now": ts(6)})
    assert [e["type"] for e in events(rpc, types=["lease.*"]) if e["lease_id"] == lease["id"]][-1] == "lease.deleted"


# --- list -------------------------------------------------------------------------------------------

def test_lease_list_filters(rpc):
    make_hosts(rpc, "h1", "h2")
    a = create_lease(rpc, ts(1), ts(2), project="p1", name="a")
    b = create_lease(rpc, ts(3), ts(4), project="p2", name="b")
    c = create_lease(rpc, ts(5), ts(6), project="p1", name="c")
    d = create_lease(rpc, ts(5), ts(7), project="p2", name="d")
    rpc.call("lease.delete", {"id": d["id"]})
    rpc.call("clock.set", {"now": ts(3, minutes=30)})

    def ids(**params):
        return {x["id"] for x in rpc.call("lease.list", params)["items"]}

    assert ids() == {a["id"], b["id"], c["id"], d["id"]}
    assert ids(project_id="p1") == {a["id"], c["id"]}
    assert ids(project_id="nobody") == set()
    assert ids(status="ended") == {a["id"]}
    assert ids(status="active") == {b["id"]}
    assert ids(status="pending") == {c["id"]}
    assert ids(status="deleted") == {d["id"]}
    assert ids(project_id="p2", status="active") == {b["id"]}
    # from/to select leases whose [start, end) overlaps [from, to).
    assert ids(**{"from": ts(2), "to": ts(5)}) == {b["id"]}
    assert ids(**{"from": ts(1, minutes=30), "to": ts(3, minutes=1)}) == {a["id"], b["id"]}
    assert ids(**{"from": ts(6)}) == {d["id"]}
    assert ids(to=ts(1)) == set()


def test_lease_list_cursor_paging(rpc):
    make_hosts(rpc, "h1")
    made = []
    for i in range(7):
        made.append(create_lease(rpc, ts(2 * i + 1), ts(2 * i + 2), name=f"l{i}")["id"])
        rpc.call("clock.advance", {"seconds": 1})  # distinct created_at
    full = rpc.call("lease.list", {"limit": 1000})
    assert full["next_cursor"] is None
    assert [x["id"] for x in full["items"]] == made  # oldest first, a stable order for cursors
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = rpc.call("lease.list", params)
        pages += 1
        assert len(page["items"]) <= 3
        seen += [x["id"] for x in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == made and pages == 3
    # A filtered list pages too.
    page = rpc.call("lease.list", {"limit": 2, "to": ts(7)})
    assert len(page["items"]) == 2 and page["next_cursor"]
    rest = rpc.call("lease.list", {"limit": 2, "to": ts(7), "cursor": page["next_cursor"]})
    assert [x["id"] for x in page["items"] + rest["items"]] == made[:3]


# --- availability -----------------------------------------------------------------------------------

def test_availability_find_windows(rpc):
    make_hosts(rpc, "h1", "h2")
    create_lease(rpc, ts(10), ts(12), reservations=[only("h1")])
    create_lease(rpc, ts(9), ts(13), reservations=[only("h2")])
    one = [{"kind": "host", "count": 1}]
    two = [{"kind": "host", "count": 2}]
    r = rpc.call("availability.find", {"reservations": one, "duration_s": 7200, "earliest": ts(9)})
    assert r["items"][0] == {"start": ts(12), "end": ts(14)}
    r = rpc.call("availability.find", {"reservations": two, "duration_s": 7200, "earliest": ts(9), "limit": 1})
    assert r["items"] == [{"start": ts(13), "end": ts(15)}]
    # Before the leases there is room too, from "now".
    r = rpc.call("availability.find", {"reservations": two, "duration_s": 3600 * 9})
    assert r["items"][0] == {"start": ts(0), "end": ts(9)}
    r = rpc.call("availability.find", {"reservations": one, "duration_s": 3600, "earliest": "now"})
    assert r["items"][0] == {"start": ts(0), "end": ts(1)}
    # Windows are in time order and each really fits.
    r = rpc.call("availability.find", {"reservations": one, "duration_s": 3 * 3600, "earliest": ts(8), "limit": 5})
    starts = [w["start"] for w in r["items"]]
    assert starts == sorted(starts) and starts
    for w in r["items"]:
        rpc.call("lease.create", lease_params(w["start"], w["end"], dry_run=True))
    # latest bounds the search; nothing fits is an empty list.
    r = rpc.call("availability.find", {"reservations": two, "duration_s": 7200, "earliest": ts(9), "latest": ts(14)})
    assert r["items"] == []
    r = rpc.call("availability.find", {"reservations": [{"kind": "host", "count": 3}], "duration_s": 60})
    assert r["items"] == []


# --- calendar ---------------------------------------------------------------------------------------

def test_calendar_get_shape(rpc):
    make_hosts(rpc, "h2", "h1")
    a = create_lease(rpc, ts(1), ts(2), name="early", reservations=[only("h1")], project="p1")
    b = create_lease(rpc, ts(5), ts(6), name="late", count=2, project="p2")
    cal = rpc.call("calendar.get", {"from": ts(0), "to": ts(3)})
    assert (cal["from"], cal["to"]) == (ts(0), ts(3))
    assert [h["name"] for h in cal["hosts"]] == ["h1", "h2"]
    h1, h2 = cal["hosts"]
    assert h1["state"] == "up" and h2["allocations"] == []
    [alloc] = h1["allocations"]
    assert alloc["lease_id"] == a["id"]
    assert alloc["reservation_id"] == a["reservations"][0]["id"]
    assert alloc["lease_name"] == "early" and alloc["project_id"] == "p1"
    assert alloc["kind"] == "host" and alloc["status"] == "pending"
    assert (alloc["start"], alloc["end"]) == (ts(1), ts(2))

    # Windows are half-open: touching is not overlapping.
    cal = rpc.call("calendar.get", {"from": ts(2), "to": ts(5)})
    assert all(h["allocations"] == [] for h in cal["hosts"])
    cal = rpc.call("calendar.get", {"from": ts(0), "to": ts(24), "hosts": ["h2"]})
    assert [h["name"] for h in cal["hosts"]] == ["h2"]
    assert [x["lease_id"] for x in cal["hosts"][0]["allocations"]] == [b["id"]]
    cal = rpc.call("calendar.get", {"from": ts(0), "to": ts(24)})
    assert [x["lease_id"] for x in cal["hosts"][0]["allocations"]] == [a["id"], b["id"]]

    rpc.call("clock.set", {"now": ts(5, minutes=30)})
    cal = rpc.call("calendar.get", {"from": ts(0), "to": ts(24)})
    statuses = {x["lease_id"]: x["status"] for h in cal["hosts"] for x in h["allocations"]}
    assert statuses == {a["id"]: "ended", b["id"]: "active"}
    rpc.call("lease.delete", {"id": b["id"]})
    cal = rpc.call("calendar.get", {"from": ts(5, minutes=30), "to": ts(24)})
    assert all(h["allocations"] == [] for h in cal["hosts"])
