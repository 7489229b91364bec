"""Cloud credits over the socket (docs/credits.md): grants, lease costs, enforcement
(-32003), refunds on update/delete, the paged ledger, bad input, roles, restart and a race.

The daemon runs with {"enforce_credits": true} unless a test says otherwise. Amounts are compared
exactly through decimal.Decimal of their JSON text (the daemon writes at most six decimals)."""

from __future__ import annotations

import os
import threading
from decimal import Decimal

import pytest

from berthtest import RPCClient, RPCError, calls_as, lease_params, make_hosts, make_host, request, ts

ENFORCE = {"enforce_credits": True}
NOBODY = 65534


def D(x) -> Decimal:
    return Decimal(str(x))


def gpu(profile: str = "1g.5gb", count: int = 1) -> dict:
    return {"kind": "gpu", "profile": profile, "count": count}


def grant(rpc, project: str, resource_class: str, amount, **extra) -> dict:
    return rpc.call("credits.grant", {"project_id": project, "resource_class": resource_class, "amount": amount,
                                      **extra})


def balance(rpc, project: str = "proj-a") -> dict:
    return rpc.call("credits.balance", {"project_id": project})


def figures(rpc, project: str = "proj-a", rc: str = "host_hours") -> tuple:
    """(granted, spent, available, expired) as Decimals; checks granted - spent == available + expired."""
    b = balance(rpc, project)[rc]
    g, s, a, e = D(b["granted"]), D(b["spent"]), D(b["available"]), D(b.get("expired", 0))
    assert g - s == a + e, b
    return g, s, a, e


def ledger(rpc, project: str = "proj-a", limit: int = 1000) -> list[dict]:
    out, cursor = [], None
    while True:
        params = {"project_id": project, "limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        page = rpc.call("credits.ledger", params)
        assert len(page["items"]) <= limit
        out += page["items"]
        if page["next_cursor"] is None:
            return out
        cursor = page["next_cursor"]


def ledger_sums(entries: list[dict], rc: str) -> tuple[Decimal, Decimal]:
    """(granted, spent) recomputed from the entries of one class."""
    granted = spent = Decimal(0)
    for e in entries:
        if e["resource_class"] != rc:
            continue
        a = D(e["amount"])
        if e["kind"] in ("grant", "adjustment"):
            granted += a
        elif e["kind"] == "charge":
            spent += a
        elif e["kind"] == "refund":
            spent -= a
    return granted, spent


def cost(lease: dict) -> dict:
    return {k: D(v) for k, v in lease["cost"].items()}


@pytest.fixture
def crpc(daemon):
    """An admin client of a daemon that enforces credits."""
    daemon.start(config=ENFORCE)
    return daemon.client()


# 1 -------------------------------------------------------------------------------------------

def test_grant_then_gpu_lease_costs_slice_hours_and_dry_run_charges_nothing(crpc):
    rpc = crpc
    make_host(rpc, "g1", gpus=[{"model": "A100-40GB"}])
    g = grant(rpc, "proj-a", "gpu_slice_hours", 100, note="allocation")
    assert (g["kind"], g["resource_class"], D(g["amount"]), g["project_id"]) == ("grant", "gpu_slice_hours", 100, "proj-a")
    assert g["valid_from"] is None and g["valid_to"] is None and g["lease_id"] is None and g["note"] == "allocation"
    assert ledger(rpc) == [g]
    assert figures(rpc, rc="gpu_slice_hours") == (100, 0, 100, 0)

    params = lease_params(ts(1), ts(11), reservations=[gpu("1g.5gb")])
    dry = rpc.call("lease.create", {**params, "dry_run": True})
    assert cost(dry) == {"gpu_slice_hours": 10}
    assert figures(rpc, rc="gpu_slice_hours") == (100, 0, 100, 0)
    assert ledger(rpc) == [g]
    assert rpc.call("lease.list")["items"] == []

    lease = rpc.call("lease.create", params)
    assert cost(lease) == {"gpu_slice_hours": 10}
    assert rpc.call("lease.get", {"id": lease["id"]})["cost"] == lease["cost"]
    assert figures(rpc, rc="gpu_slice_hours") == (100, 10, 90, 0)
    entries = ledger(rpc)
    assert [e["kind"] for e in entries] == ["grant", "charge"]
    charge = entries[1]
    assert charge["lease_id"] == lease["id"] and D(charge["amount"]) == 10
    assert charge["resource_class"] == "gpu_slice_hours"
    assert sum(D(d["amount"]) for d in charge["draws"]) == 10
    assert {d["grant_id"] for d in charge["draws"]} == {g["id"]}
    # Other classes were never touched.
    assert set(balance(rpc)) == {"gpu_slice_hours"}


# 2 -------------------------------------------------------------------------------------------

def test_insufficient_credits_is_refused_and_stores_nothing(crpc):
    rpc = crpc
    make_hosts(rpc, "h1", "h2")
    g = grant(rpc, "proj-a", "host_hours", 5)
    e = rpc.error("lease.create", lease_params(ts(1), ts(4), count=2), -32003)  # 2 hosts x 3 h = 6 > 5
    assert e.reason == "insufficient_credits"
    assert e.data["resource_class"] == "host_hours"
    assert isinstance(e.data["required"], (int, float)) and isinstance(e.data["available"], (int, float))
    assert (D(e.data["required"]), D(e.data["available"])) == (6, 5)
    assert e.message
    # Nothing stored: no lease, no entry, balance untouched; capacity still free.
    assert rpc.call("lease.list")["items"] == []
    assert ledger(rpc) == [g]
    assert figures(rpc) == (5, 0, 5, 0)
    # dry_run reports the same refusal.
    rpc.error("lease.create", lease_params(ts(1), ts(4), count=2, dry_run=True), -32003)
    # Exactly what is available is accepted.
    ok = rpc.call("lease.create", lease_params(ts(1), ts(6)))
    assert cost(ok) == {"host_hours": 5}
    assert figures(rpc) == (5, 5, 0, 0)
    e = rpc.error("lease.create", lease_params(ts(1), ts(2), name="one-more"), -32003)
    assert (D(e.data["required"]), D(e.data["available"])) == (1, 0)


def test_a_lease_running_past_every_valid_grant_is_refused(crpc):
    rpc = crpc
    make_hosts(rpc, "h1")
    grant(rpc, "proj-b", "host_hours", 100, valid_to=ts(5))
    e = rpc.error("lease.create", lease_params(ts(1), ts(7), project="proj-b"), -32003)
    assert e.data["resource_class"] == "host_hours"
    assert (D(e.data["required"]), D(e.data["available"])) == (6, 4)
    assert e.data.get("short_from") == ts(5)
    # A grant valid only later does not pay for earlier time either.
    grant(rpc, "proj-c", "host_hours", 100, valid_from=ts(3))
    e = rpc.error("lease.create", lease_params(ts(1), ts(4), project="proj-c"), -32003)
    assert (D(e.data["required"]), D(e.data["available"])) == (3, 1)  # only ts(3)-ts(4) is covered
    assert e.data.get("short_from") == ts(1)
    assert rpc.call("lease.list")["items"] == []
    assert figures(rpc, "proj-b") == (100, 0, 100, 0)
    # Inside the validity it is accepted.
    ok = rpc.call("lease.create", lease_params(ts(1), ts(5), project="proj-b"))
    assert cost(ok) == {"host_hours": 4}
    assert figures(rpc, "proj-b") == (100, 4, 96, 0)


# 3 -------------------------------------------------------------------------------------------

def test_extend_charges_shorten_refunds_and_delete_before_start_refunds_all(crpc):
    rpc = crpc
    make_hosts(rpc, "h1")
    grant(rpc, "proj-a", "host_hours", 100)
    before = balance(rpc)
    lease = rpc.call("lease.create", lease_params(ts(1), ts(3)))
    assert cost(lease) == {"host_hours": 2} and figures(rpc) == (100, 2, 98, 0)
    lease = rpc.call("lease.update", {"id": lease["id"], "end": ts(5)})
    assert cost(lease) == {"host_hours": 4} and figures(rpc) == (100, 4, 96, 0)
    # A dry-run update shows the new cost and charges nothing.
    dry = rpc.call("lease.update", {"id": lease["id"], "end": ts(11), "dry_run": True})
    assert cost(dry) == {"host_hours": 10} and figures(rpc) == (100, 4, 96, 0)
    lease = rpc.call("lease.update", {"id": lease["id"], "end": ts(1, minutes=30)})
    assert cost(lease) == {"host_hours": Decimal("0.5")} and figures(rpc) == (100, Decimal("0.5"), Decimal("99.5"), 0)
    # Extending beyond the balance is refused with what the extension needs, and changes nothing.
    e = rpc.error("lease.update", {"id": lease["id"], "end": ts(201)}, -32003)
    assert (D(e.data["required"]), D(e.data["available"])) == (Decimal("199.5"), Decimal("99.5"))
    assert rpc.call("lease.get", {"id": lease["id"]}) == lease
    avail = figures(rpc)[2]
    result = rpc.call("lease.delete", {"id": lease["id"]})
    assert {k: D(v) for k, v in result["refund"].items()} == {"host_hours": Decimal("0.5")}
    assert figures(rpc)[2] - avail == D(result["refund"]["host_hours"])
    assert balance(rpc) == before
    kinds = [e["kind"] for e in ledger(rpc)]
    assert kinds == ["grant", "charge", "charge", "refund", "refund"]


def test_delete_while_active_refunds_the_unused_remainder_exactly(crpc):
    rpc = crpc
    make_hosts(rpc, "h1")
    make_host(rpc, "g1", gpus=[{"model": "A100-40GB"}])
    grant(rpc, "proj-a", "host_hours", 100)
    grant(rpc, "proj-a", "gpu_slice_hours", 100)
    host_lease = rpc.call("lease.create", lease_params(ts(1), ts(11)))
    gpu_lease = rpc.call("lease.create", lease_params(ts(1), ts(11), name="g", reservations=[gpu("3g.20gb")]))
    assert cost(gpu_lease) == {"gpu_slice_hours": 40}
    rpc.call("clock.advance", {"seconds": 3600 + 1807})  # 30 min 7 s into both leases
    assert rpc.call("lease.get", {"id": host_lease["id"]})["status"] == "active"
    # Kept: ceil(1 x 1807 / 3600 x 10^6) = 501945 micro-credits; the rest comes back.
    before = figures(rpc)
    r = rpc.call("lease.delete", {"id": host_lease["id"]})
    assert {k: D(v) for k, v in r["refund"].items()} == {"host_hours": Decimal("9.498055")}
    after = figures(rpc)
    assert after[2] - before[2] == D(r["refund"]["host_hours"])
    assert after == (100, Decimal("0.501945"), Decimal("99.498055"), 0)
    assert cost(rpc.call("lease.get", {"id": host_lease["id"]})) == {"host_hours": Decimal("0.501945")}
    # 4 eighths x 1807 s = ceil(2007777.7...) = 2007778 micro-credits kept.
    before = figures(rpc, rc="gpu_slice_hours")
    r = rpc.call("lease.delete", {"id": gpu_lease["id"]})
    assert {k: D(v) for k, v in r["refund"].items()} == {"gpu_slice_hours": Decimal("37.992222")}
    after = figures(rpc, rc="gpu_slice_hours")
    assert after[2] - before[2] == Decimal("37.992222")
    assert after == (100, Decimal("2.007778"), Decimal("97.992222"), 0)


# 4 -------------------------------------------------------------------------------------------

def test_ledger_pages_in_order_and_sums_to_the_balance(crpc):
    rpc = crpc
    make_hosts(rpc, "h1", "h2")
    grant(rpc, "proj-a", "host_hours", 50)
    grant(rpc, "proj-a", "host_hours", 0.25)
    grant(rpc, "other", "host_hours", 7)  # another project's entries never show
    a = rpc.call("lease.create", lease_params(ts(1), ts(4)))
    rpc.call("lease.update", {"id": a["id"], "end": ts(6)})
    rpc.call("lease.update", {"id": a["id"], "end": ts(2)})
    b = rpc.call("lease.create", lease_params(ts(3), ts(5), name="b", count=2))
    rpc.call("lease.delete", {"id": b["id"]})
    full = ledger(rpc)
    assert [e["kind"] for e in full] == ["grant", "grant", "charge", "charge", "refund", "charge", "refund"]
    assert [D(e["amount"]) for e in full] == [50, Decimal("0.25"), 3, 2, 4, 4, 4]
    assert all(e["project_id"] == "proj-a" for e in full)
    seqs = [e["seq"] for e in full]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [e["lease_id"] for e in full[2:]] == [a["id"]] * 3 + [b["id"]] * 2
    # Paging one or three at a time gives the same entries in the same order.
    assert ledger(rpc, limit=1) == full
    assert ledger(rpc, limit=3) == full
    first = rpc.call("credits.ledger", {"project_id": "proj-a", "limit": 3})
    assert first["items"] == full[:3] and first["next_cursor"] is not None
    last = rpc.call("credits.ledger", {"project_id": "proj-a", "cursor": first["next_cursor"], "limit": 100})
    assert last["items"] == full[3:] and last["next_cursor"] is None
    # Sum of the ledger == balance.
    g, s, av, ex = figures(rpc)
    assert ledger_sums(full, "host_hours") == (g, s) == (Decimal("50.25"), 1)
    assert av == g - s and ex == 0
    assert ledger(rpc, "nobody") == []


# 5 -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("params, path", [
    ({"amount": 0}, "amount"),
    ({"amount": -5}, "amount"),
    ({"amount": "-0.5"}, "amount"),
    ({"amount": 0.1234567}, "amount"),
    ({"resource_class": "tpu_hours"}, "resource_class"),
    ({"valid_from": ts(5), "valid_to": ts(4)}, "valid_to"),
    ({"valid_from": ts(5), "valid_to": ts(5)}, "valid_to"),
    ({"colour": "blue"}, "colour"),
])
def test_bad_grants_are_invalid_params_with_paths(crpc, params, path):
    rpc = crpc
    e = rpc.error("credits.grant", {"project_id": "proj-a", "resource_class": "host_hours", "amount": 10, **params},
                  -32602)
    assert path in e.error_paths, e.data
    assert all(err.get("message") for err in e.data["errors"])
    assert ledger(rpc) == []
    assert balance(rpc) == {}


def test_balance_of_an_unknown_project_is_empty(crpc):
    assert balance(crpc, "no-such-project") == {}
    assert crpc.call("credits.ledger", {"project_id": "no-such-project"}) == {"items": [], "next_cursor": None}


@pytest.mark.skipif(os.geteuid() != 0, reason="switches uid and creates a group: run as root")
def test_grant_by_a_portal_caller_is_forbidden_but_reading_is_allowed(daemon, make_group):
    name, gid = make_group("cred")
    daemon.start(config={**ENFORCE, "roles": {"portal": {"groups": [name]}}})
    rpc = daemon.client()
    grant(rpc, "proj-a", "host_hours", 3)
    replies = calls_as(NOBODY, gid, daemon.socket_path, [
        request("credits.grant", {"project_id": "proj-a", "resource_class": "host_hours", "amount": 10}, 1),
        request("credits.balance", {"project_id": "proj-a"}, 2),
        request("credits.ledger", {"project_id": "proj-a"}, 3),
    ])
    assert replies[0]["error"]["code"] == -32004, replies[0]
    assert replies[0]["error"]["data"]["reason"] == "forbidden"
    assert D(replies[1]["result"]["host_hours"]["granted"]) == 3
    assert len(replies[2]["result"]["items"]) == 1
    assert figures(rpc) == (3, 0, 3, 0)


# 6 -------------------------------------------------------------------------------------------

def test_enforcement_off_records_costs_without_grants(daemon):
    daemon.start()  # no config: enforce_credits defaults to false
    rpc = daemon.client()
    make_hosts(rpc, "h1", "h2")
    lease = rpc.call("lease.create", lease_params(ts(1), ts(3), count=2))
    assert cost(lease) == {"host_hours": 4}
    g, s, a, e = figures(rpc)
    assert (g, s) == (0, 4) and a + e == -4
    assert [x["kind"] for x in ledger(rpc)] == ["charge"]
    grant(rpc, "proj-a", "host_hours", 1)
    g, s, a, e = figures(rpc)
    assert (g, s) == (1, 4) and a + e == -3
    lease = rpc.call("lease.update", {"id": lease["id"], "end": ts(2)})
    assert cost(lease) == {"host_hours": 2}
    g, s, a, e = figures(rpc)
    assert (g, s) == (1, 2) and a + e == -1
    r = rpc.call("lease.delete", {"id": lease["id"]})
    assert {k: D(v) for k, v in r["refund"].items()} == {"host_hours": 2}
    assert figures(rpc) == (1, 0, 1, 0)
    assert ledger_sums(ledger(rpc), "host_hours") == (1, 0)


# 7 -------------------------------------------------------------------------------------------

def test_balance_ledger_and_costs_survive_sigkill(daemon):
    daemon.start(config=ENFORCE)
    rpc = daemon.client()
    make_hosts(rpc, "h1", "h2")
    make_host(rpc, "g1", gpus=[{"model": "A100-40GB"}])
    grant(rpc, "proj-a", "host_hours", 40, valid_to=ts(0, days=2))
    grant(rpc, "proj-a", "gpu_slice_hours", 12.5)
    a = rpc.call("lease.create", lease_params(ts(1), ts(4)))
    rpc.call("lease.update", {"id": a["id"], "end": ts(6)})
    b = rpc.call("lease.create", lease_params(ts(2), ts(3), name="b"))
    rpc.call("lease.delete", {"id": b["id"]})
    rpc.call("lease.create", lease_params(ts(1), ts(11), name="g", reservations=[gpu("1g.5gb")]))
    rpc.call("clock.advance", {"seconds": 3600 + 61})
    rpc.call("lease.delete", {"id": a["id"]})  # active: refund of the remainder
    snapshot = (balance(rpc), ledger(rpc), rpc.call("lease.list")["items"])
    now = rpc.call("clock.now")["now"]
    daemon.kill()
    daemon.restart(now=None)  # keep the saved manual clock
    rpc = daemon.client()
    assert rpc.call("clock.now")["now"] == now
    assert (balance(rpc), ledger(rpc), rpc.call("lease.list")["items"]) == snapshot
    # And the restarted daemon keeps enforcing against the replayed ledger.
    avail = figures(rpc, rc="gpu_slice_hours")[2]
    assert avail == Decimal("2.5")
    e = rpc.error("lease.create", lease_params(ts(12), ts(15), reservations=[gpu("1g.5gb")]), -32003)
    assert (D(e.data["required"]), D(e.data["available"])) == (3, Decimal("2.5"))


# 8 -------------------------------------------------------------------------------------------

def test_32_clients_racing_cannot_overspend(daemon):
    daemon.start(config=ENFORCE)
    rpc = daemon.client()
    make_hosts(rpc, *[f"h{i:02d}" for i in range(32)])
    grant(rpc, "proj-a", "host_hours", 10)
    clients = [RPCClient(daemon.socket_path) for _ in range(32)]
    barrier = threading.Barrier(len(clients))
    results: list = [None] * len(clients)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = clients[i].call("lease.create", lease_params(ts(1), ts(2), name=f"l{i}"))
        except RPCError as e:
            results[i] = e
        except BaseException as e:  # noqa: BLE001 - reported below
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(clients))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        for c in clients:
            c.close()
    ok = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, RPCError)]
    assert len(ok) + len(refused) == 32, results
    assert len(ok) == 10, [getattr(r, "code", r) for r in results]
    assert all(e.code == -32003 and e.data["resource_class"] == "host_hours" for e in refused)
    assert all(cost(l) == {"host_hours": 1} for l in ok)
    assert figures(rpc) == (10, 10, 0, 0)
    assert len(rpc.call("lease.list")["items"]) == 10
    assert [e["kind"] for e in ledger(rpc)].count("charge") == 10
