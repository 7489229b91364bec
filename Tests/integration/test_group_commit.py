"""Group commit: concurrent writes share fsyncs, yet every acknowledged write is on disk, and a
commit that fails acknowledges nothing and leaves nothing behind."""

from __future__ import annotations

import signal
import sqlite3
import threading

from berthtest import RPCError, create_lease, events, lease_params, make_hosts, ts, wait_until

CLIENTS = 16


def retry_unavailable(call):
    """The call's result, or None when it was refused with -32007 `unavailable` (to be retried)."""
    try:
        return call()
    except RPCError as e:
        if e.code != -32007:
            raise
        return None


def test_acknowledged_creates_from_16_clients_survive_sigkill(daemon):
    daemon.start()
    rpc = daemon.client()
    make_hosts(rpc, *[f"h{i:02}" for i in range(CLIENTS)])
    acked: list[list[dict]] = [[] for _ in range(CLIENTS)]
    enough = threading.Event()
    stop = threading.Event()
    lock = threading.Lock()
    total = [0]

    def client(k: int) -> None:
        # Each client creates one-host leases, hour after hour; the 16 clients together fill the 16
        # hosts of every hour, so every create fits. It goes on until the daemon is killed under it.
        c = daemon.client(validate=False)
        j = 0
        while not stop.is_set():
            try:
                lease = c.call("lease.create", lease_params(ts(1 + j), ts(2 + j), name=f"c{k}-{j}"))
            except Exception:  # the daemon was killed mid-request: that request was not acknowledged
                return
            acked[k].append(lease)
            j += 1
            with lock:
                total[0] += 1
                if total[0] >= 20 * CLIENTS:
                    enough.set()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    for t in threads:
        t.start()
    assert enough.wait(120), "the clients did not get their creates acknowledged"
    # SIGKILL while the clients are still sending: replies just received are on disk.
    assert daemon.kill() == -signal.SIGKILL
    stop.set()
    for t in threads:
        t.join(30)
    everything = [lease for per in acked for lease in per]
    assert len(everything) >= 20 * CLIENTS

    daemon.restart(now=None)
    rpc = daemon.client()
    for lease in everything:
        assert rpc.call("lease.get", {"id": lease["id"]}) == lease
    stored = {x["id"] for x in rpc.call("lease.list", {"limit": 1000})["items"]}
    assert {x["id"] for x in everything} <= stored
    # One event per stored lease, numbered without a gap, in commit order.
    evs = events(rpc)
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
    created = [e["lease_id"] for e in evs if e["type"] == "lease.created"]
    assert sorted(created) == sorted(stored)
    # Each client's leases were created in the order it sent them.
    position = {lid: i for i, lid in enumerate(created)}
    for per in acked:
        assert [position[x["id"]] for x in per] == sorted(position[x["id"]] for x in per)
    # The calendar was rebuilt from them: the busiest hour has no host left.
    e = rpc.error("lease.create", lease_params(ts(1), ts(2), count=1), -32002)
    assert e.reason == "no_capacity"


def test_failed_commit_acknowledges_nothing_and_leaves_no_phantom_state(daemon):
    daemon.start()
    rpc = daemon.client()
    make_hosts(rpc, "h1", "h2")
    kept = create_lease(rpc, ts(1), ts(2), count=2, name="kept")
    before = events(rpc)

    # Another process holds SQLite's write lock: berthd's commits fail (SQLITE_BUSY).
    db = sqlite3.connect(daemon.state_dir / "berth.sqlite", isolation_level=None, timeout=0)
    db.execute("BEGIN IMMEDIATE")
    errors: list[RPCError | None] = [None] * 4

    def client(k: int) -> None:
        # All four want both hosts at once: only the first could fit, and only if the others saw
        # its allocation in memory. Every one of them is answered `unavailable`.
        c = daemon.client()
        try:
            errors[k] = c.error("lease.create", lease_params(ts(5), ts(6), count=2, name=f"lost{k}"), -32007)
        except Exception as e:  # pragma: no cover - reported below
            errors[k] = e

    threads = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(e, RPCError) and e.reason == "unavailable" for e in errors), errors

    # Memory was rebuilt from the disk: reads work and show none of the failed creates.
    assert [x["name"] for x in rpc.call("lease.list")["items"]] == ["kept"]
    assert rpc.call("lease.get", {"id": kept["id"]}) == kept
    assert events(rpc) == before
    db.execute("ROLLBACK")
    db.close()

    # The capacity they held in memory is free, and event numbers go on from the disk's. (After
    # failures in a row berthd refuses writes for a short back-off, at most 5 s: retry until then.)
    after = wait_until(lambda: retry_unavailable(lambda: create_lease(rpc, ts(5), ts(6), count=2, name="after")),
                       "a write after the lock is released")
    evs = events(rpc)
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
    assert "group commit failed" in daemon.log_text()

    daemon.kill()
    daemon.restart(now=None)
    rpc = daemon.client()
    assert sorted(x["name"] for x in rpc.call("lease.list")["items"]) == ["after", "kept"]
    assert rpc.call("lease.get", {"id": after["id"]}) == after
