"""Durability: what berthd acknowledged survives SIGKILL; missed lifecycle events are caught up on start."""

from __future__ import annotations

import json
import signal

from berthtest import create_lease, events, lease_params, make_hosts, ts, wait_until


def snapshot(rpc) -> dict:
    return {
        "hosts": rpc.call("host.list")["items"],
        "leases": rpc.call("lease.list", {"limit": 1000})["items"],
        "events": events(rpc),
        "actions": [{k: v for k, v in a.items() if k not in ("status", "attempts", "updated_at", "last_error")}
                    for a in rpc.call("actions.list", {"limit": 1000})["items"]],
        "now": rpc.call("clock.now")["now"],
    }


def test_acknowledged_state_survives_sigkill(daemon):
    daemon.start()
    rpc = daemon.client()
    make_hosts(rpc, "h1", "h2", "h3")
    rpc.call("host.update", {"name": "h3", "properties": {"rack": "r9"}})
    a = create_lease(rpc, ts(1), ts(3), count=2, name="a", before_end_s=600)
    b = create_lease(rpc, ts(2), ts(6), name="b", reservations=[{"kind": "host", "min": 1, "max": 2}])
    c = create_lease(rpc, ts(8), ts(9), name="c", idempotency_key="c-key")
    d = create_lease(rpc, ts(8), ts(9), name="d")
    rpc.call("lease.update", {"id": b["id"], "end": ts(7)})
    rpc.call("lease.delete", {"id": d["id"]})
    rpc.call("clock.set", {"now": ts(2, minutes=30)})  # a active, b active
    before = snapshot(rpc)
    ids = [a["id"], b["id"], c["id"], d["id"]]
    gets = [rpc.call("lease.get", {"id": i}) for i in ids]

    assert daemon.kill() == -signal.SIGKILL
    daemon.restart(now=None)  # keep the saved manual clock
    rpc = daemon.client()
    assert [rpc.call("lease.get", {"id": i}) for i in ids] == gets
    assert snapshot(rpc) == before
    # The calendar was rebuilt too: nothing can double-book what survived.
    e = rpc.error("lease.create", lease_params(ts(2, minutes=30), ts(2, minutes=40), count=2), -32002)
    assert e.reason == "no_capacity"
    # The idempotency record survived: the retry gets the same lease.
    assert rpc.call("lease.create", lease_params(ts(8), ts(9), name="c", idempotency_key="c-key")) == gets[2]
    # And the daemon carries on: the leases end on time.
    rpc.call("clock.set", {"now": ts(10)})
    assert [rpc.call("lease.get", {"id": i})["status"] for i in ids] == ["ended", "ended", "ended", "deleted"]


def test_every_acknowledged_write_survives_sigkill_mid_stream(daemon):
    daemon.start()
    rpc = daemon.client()
    make_hosts(rpc, *[f"h{i}" for i in range(10)])
    # Pipeline many creates, read only some replies, and kill: every reply that arrived is on disk.
    n = 60
    payload = b"".join(
        (json.dumps({"jsonrpc": "2.0", "method": "lease.create", "id": i,
                                   "params": lease_params(ts(1 + i), ts(2 + i), name=f"l{i}")}) + "\n").encode()
        for i in range(n))
    rpc.send_raw(payload)
    acked = [rpc.recv()["result"] for _ in range(n // 2)]
    daemon.kill()
    daemon.restart()
    rpc = daemon.client()
    for lease in acked:
        assert rpc.call("lease.get", {"id": lease["id"]}) == lease
    stored = rpc.call("lease.list", {"limit": 1000})["items"]
    assert n // 2 <= len(stored) <= n
    assert len(events(rpc, types=["lease.created"])) == len(stored)


def test_missed_events_are_caught_up_on_start_in_time_order(daemon):
    daemon.start()
    rpc = daemon.client()
    make_hosts(rpc, "h1", "h2")
    a = create_lease(rpc, ts(1), ts(3), name="a", before_end_s=1800)
    b = create_lease(rpc, ts(2), ts(4), name="b")
    c = create_lease(rpc, ts(20), ts(21), name="c")
    daemon.kill()
    # The daemon was down while a and b started and ended; it comes back at 05:00.
    daemon.restart(now=ts(5))
    rpc = daemon.client()
    assert rpc.call("clock.now") == {"now": ts(5)}
    statuses = {x["id"]: x["status"] for x in rpc.call("lease.list")["items"]}
    assert statuses == {a["id"]: "ended", b["id"]: "ended", c["id"]: "pending"}
    caught_up = [(e["type"], e["lease_id"], e["at"]) for e in events(rpc, types=["lease.*"])
                 if e["type"] != "lease.created"]
    assert caught_up == [
        ("lease.started", a["id"], ts(1)),
        ("lease.started", b["id"], ts(2)),
        ("lease.before_end", a["id"], ts(2, minutes=30)),
        ("lease.ended", a["id"], ts(3)),
        ("lease.ended", b["id"], ts(4)),
    ]
    # The actions owed for those transitions were written and are delivered.
    for lease in (a, b):
        def delivered(lid=lease["id"]):
            items = rpc.call("actions.list", {"lease_id": lid})["items"]
            return [a["kind"] for a in items] == ["lease.start", "lease.end"] and \
                all(a["status"] == "done" for a in items)
        wait_until(delivered, f"actions of lease {lease['name']} delivered")
    ends = {x["lease_id"]: x["created_at"] for x in rpc.call("actions.list", {"limit": 1000})["items"]
            if x["kind"] == "lease.end"}
    assert ends == {a["id"]: ts(3), b["id"]: ts(4)}
    # Restarting again changes nothing: events are not fired twice.
    before = events(rpc)
    daemon.kill()
    daemon.restart(now=None)
    assert events(daemon.client()) == before


def test_manual_clock_survives_restart(daemon):
    daemon.start()
    rpc = daemon.client()
    rpc.call("clock.advance", {"seconds": 12345})
    assert daemon.kill() == -signal.SIGKILL
    daemon.restart(now=None)
    assert daemon.client().call("clock.now") == {"now": ts(seconds=12345)}
    daemon.client().call("clock.set", {"now": ts(48)})
    assert daemon.terminate() == 0
    daemon.restart(now=None)
    assert daemon.client().call("clock.now") == {"now": ts(48)}
    # --now on the command line wins over the saved time.
    daemon.restart(now=ts(50))
    assert daemon.client().call("clock.now") == {"now": ts(50)}


def test_graceful_restart_keeps_everything(daemon):
    daemon.start()
    rpc = daemon.client()
    make_hosts(rpc, "h1")
    create_lease(rpc, ts(1), ts(2))
    before = snapshot(rpc)
    assert daemon.terminate() == 0
    daemon.restart(now=None)
    assert snapshot(daemon.client()) == before
