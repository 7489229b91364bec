"""A lease's life on the manual clock: pending -> active -> ended, with durable events, cloud actions
delivered by the simulator adapter, and the same events pushed to subscribers."""

from __future__ import annotations

from berthtest import create_lease, events, make_hosts, ts, wait_until

START, BEFORE_END, END = ts(1), ts(2, minutes=30), ts(3)


def lease_events(rpc, lease_id):
    return [e for e in events(rpc) if e.get("lease_id") == lease_id]


def actions_done(rpc, lease_id, kinds):
    items = rpc.call("actions.list", {"lease_id": lease_id})["items"]
    if sorted(a["kind"] for a in items) == sorted(kinds) and all(a["status"] == "done" for a in items):
        return items
    return None


def test_statuses_follow_the_clock(rpc):
    make_hosts(rpc, "h1", "h2")
    lease = create_lease(rpc, START, END, before_end_s=1800)
    lid = lease["id"]
    assert lease["status"] == "pending"
    assert all(r["status"] == "pending" for r in lease["reservations"])

    rpc.call("clock.set", {"now": ts(0, minutes=59, seconds=59)})
    assert rpc.call("lease.get", {"id": lid})["status"] == "pending"

    assert rpc.call("clock.advance", {"seconds": 1}) == {"now": START}
    got = rpc.call("lease.get", {"id": lid})
    assert got["status"] == "active"
    assert all(r["status"] == "active" for r in got["reservations"])
    assert got["reservations"][0]["allocations"] == lease["reservations"][0]["allocations"]

    rpc.call("clock.set", {"now": BEFORE_END})
    assert rpc.call("lease.get", {"id": lid})["status"] == "active"
    assert [e["type"] for e in lease_events(rpc, lid)][-1] == "lease.before_end"

    rpc.call("clock.set", {"now": ts(2, minutes=59, seconds=59)})
    assert rpc.call("lease.get", {"id": lid})["status"] == "active"
    rpc.call("clock.advance", {"seconds": 1})
    got = rpc.call("lease.get", {"id": lid})
    assert got["status"] == "ended"
    assert all(r["status"] == "ended" for r in got["reservations"])


def test_one_clock_jump_fires_every_event_in_order_at_its_scheduled_time(rpc):
    make_hosts(rpc, "h1")
    lease = create_lease(rpc, START, END, before_end_s=1800)
    lid = lease["id"]
    # Jump far past the end in one step: every transition is processed before the reply ...
    assert rpc.call("clock.advance", {"seconds": 10 * 3600}) == {"now": ts(10)}
    assert rpc.call("lease.get", {"id": lid})["status"] == "ended"
    evs = lease_events(rpc, lid)
    # ... in time order, each stamped with the time it was due, not the time the clock reached.
    assert [(e["type"], e["at"]) for e in evs] == [
        ("lease.created", ts(0)),
        ("lease.started", START),
        ("lease.before_end", BEFORE_END),
        ("lease.ended", END),
    ]
    seqs = [e["seq"] for e in evs]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert all(e["project_id"] == "proj-a" for e in evs)
    assert [e for e in evs if e["type"] == "lease.before_end"][0]["data"]["end"] == END


def test_events_of_several_leases_interleave_in_time_order(rpc):
    make_hosts(rpc, "h1", "h2")
    a = create_lease(rpc, ts(1), ts(3), name="a")
    b = create_lease(rpc, ts(2), ts(4), name="b")
    rpc.call("clock.set", {"now": ts(5)})
    got = [(e["type"], e["lease_id"], e["at"]) for e in events(rpc, types=["lease.started", "lease.ended"])]
    assert got == [
        ("lease.started", a["id"], ts(1)),
        ("lease.started", b["id"], ts(2)),
        ("lease.ended", a["id"], ts(3)),
        ("lease.ended", b["id"], ts(4)),
    ]


def test_actions_are_enqueued_and_delivered(rpc):
    make_hosts(rpc, "h1", "h2")
    lease = create_lease(rpc, START, END, count=2)
    lid = lease["id"]
    assert rpc.call("actions.list", {"lease_id": lid})["items"] == []  # nothing owed before it starts

    rpc.call("clock.set", {"now": START})
    started = rpc.call("actions.list", {"lease_id": lid})["items"]
    assert [a["kind"] for a in started] == ["lease.start"]
    assert started[0]["lease_id"] == lid and started[0]["created_at"] == START
    assert sorted(started[0]["payload"]["hosts"]) == ["h1", "h2"]

    done = wait_until(lambda: actions_done(rpc, lid, ["lease.start"]), "lease.start delivered")
    assert done[0]["attempts"] >= 1 and done[0]["last_error"] is None

    rpc.call("clock.set", {"now": ts(4)})
    items = wait_until(lambda: actions_done(rpc, lid, ["lease.start", "lease.end"]), "lease.end delivered")
    end = [a for a in items if a["kind"] == "lease.end"][0]
    assert end["created_at"] == END
    assert rpc.call("actions.list", {"status": "pending"})["items"] == []
    assert {a["id"] for a in rpc.call("actions.list", {"status": "done"})["items"]} == {a["id"] for a in items}


def test_a_lease_that_never_started_owes_the_cloud_nothing(rpc):
    make_hosts(rpc, "h1")
    lease = create_lease(rpc, START, END)
    rpc.call("lease.delete", {"id": lease["id"]})
    rpc.call("clock.set", {"now": ts(5)})
    assert rpc.call("actions.list", {"lease_id": lease["id"]})["items"] == []
    assert [e["type"] for e in lease_events(rpc, lease["id"])] == ["lease.created", "lease.deleted"]


def test_subscribers_receive_the_events_as_notifications(berthd):
    rpc = berthd.client()
    make_hosts(rpc, "h1")
    watcher = berthd.client()
    sub = watcher.call("events.subscribe", {"types": ["lease.*"]})["subscription"]
    everything = berthd.client()
    sub_all = everything.call("events.subscribe")["subscription"]
    only_end = berthd.client()
    only_end.call("events.subscribe", {"types": ["lease.ended"]})

    lease = create_lease(rpc, START, END, before_end_s=1800)
    make_hosts(rpc, "h2")  # a host event: not lease.*
    rpc.call("clock.set", {"now": ts(4)})

    got = watcher.events_received(4)
    assert [(e["type"], e["at"]) for e in got] == [
        ("lease.created", ts(0)), ("lease.started", START), ("lease.before_end", BEFORE_END), ("lease.ended", END)]
    assert all(e["lease_id"] == lease["id"] and e["subscription"] == sub for e in got)
    # The notifications are the durable events.
    durable = {e["seq"]: e for e in events(rpc)}
    for e in got:
        assert {k: v for k, v in e.items() if k != "subscription"} == durable[e["seq"]]

    all_types = [e["type"] for e in everything.events_received(5)]
    assert all_types == ["lease.created", "host.created", "lease.started", "lease.before_end", "lease.ended"]
    assert only_end.events_received(1)[0]["type"] == "lease.ended"

    # Nothing else was sent to the filtered subscribers: a call's reply is the next line.
    for c in (watcher, only_end):
        c.send({"jsonrpc": "2.0", "method": "clock.now", "id": "probe"})
        reply = c.recv_message()
        assert reply.get("id") == "probe", f"unexpected extra notification: {reply}"
    assert sub != sub_all


def test_subscription_ends_with_its_connection(berthd):
    rpc = berthd.client()
    make_hosts(rpc, "h1")
    w = berthd.client()
    w.call("events.subscribe")
    w.close()
    # Publishing to a closed connection's subscription must not disturb anything.
    create_lease(rpc, START, END)
    rpc.call("clock.set", {"now": ts(4)})
    assert rpc.call("system.health")["status"] == "ok"
    w2 = berthd.client()
    w2.call("events.subscribe", {"types": ["host.*"]})
    make_hosts(rpc, "h9")
    assert w2.events_received(1)[0]["host"] == "h9"


def test_events_list_paging_and_type_filter(rpc):
    make_hosts(rpc, "h1", "h2", "h3")
    for i in range(3):
        create_lease(rpc, ts(1 + i), ts(2 + i), name=f"l{i}")
    everything = events(rpc)
    assert [e["seq"] for e in everything] == list(range(1, len(everything) + 1))
    page1 = rpc.call("events.list", {"limit": 2})
    assert [e["seq"] for e in page1["items"]] == [1, 2] and page1["next_cursor"] == 2
    page2 = rpc.call("events.list", {"after_seq": page1["next_cursor"], "limit": 2})
    assert [e["seq"] for e in page2["items"]] == [3, 4]
    last = rpc.call("events.list", {"after_seq": len(everything)})
    assert last == {"items": [], "next_cursor": None}
    created = rpc.call("events.list", {"types": ["lease.created"]})["items"]
    assert [e["type"] for e in created] == ["lease.created"] * 3
    hosts = rpc.call("events.list", {"types": ["host.*"]})["items"]
    assert [e["host"] for e in hosts] == ["h1", "h2", "h3"]


def test_a_lease_starting_now_is_active_at_once(rpc):
    make_hosts(rpc, "h1")
    rpc.call("clock.set", {"now": ts(5)})
    lease = create_lease(rpc, "now", ts(6))
    assert lease["status"] == "active" and lease["start"] == ts(5)
    assert [(e["type"], e["at"]) for e in lease_events(rpc, lease["id"])] == [
        ("lease.created", ts(5)), ("lease.started", ts(5))]
    assert [a["kind"] for a in rpc.call("actions.list", {"lease_id": lease["id"]})["items"]] == ["lease.start"]
    # A start a few seconds in the past (client clock skew) is taken as now, too.
    rpc.call("clock.advance", {"seconds": 3600})
    late = create_lease(rpc, ts(5, minutes=59, seconds=50), ts(7))
    assert late["start"] == ts(6) and late["status"] == "active"


def test_demo_inventory_is_created_only_when_asked_and_only_once(daemon):
    daemon.start()
    assert daemon.client().call("host.list")["items"] == []
    daemon.restart(args=["--demo"], now=None)
    demo = daemon.client().call("host.list")["items"]
    assert demo
    daemon.restart(args=["--demo"], now=None)
    assert daemon.client().call("host.list")["items"] == demo
