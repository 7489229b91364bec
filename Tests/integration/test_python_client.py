"""The Python client for portal backends (clients/python, import `berth_client`) against the real
berthd: a method for every advertised RPC method with the contract's params, every method callable,
one exception class per error code (each provoked for real where the daemon can produce it), a
lease's life on the manual clock, and the event subscription iterator across daemon restarts.

conftest.py puts clients/python/src first on sys.path, so this tests the working tree's package."""

from __future__ import annotations

import datetime as dt
import inspect
import json
import os
import pickle
import signal
import socket
import threading

import pytest

import berth_client
from berth_client import (UNSET, BerthClient, BerthConnectionError, BerthError, BerthTimeout, Conflict, Forbidden,
                          InsufficientCredits, InternalError, InvalidParams, InvalidRequest, MethodNotFound,
                          NoCapacity, NotFound, ParseError, PolicyViolation, RequestTooLarge, Unavailable,
                          UpstreamError, error_from_reply, format_time, parse_time)
from berthtest import DEFAULT_NOW, SCHEMAS, events as all_events, run_as, ts

UTC = dt.timezone.utc
T0 = parse_time(DEFAULT_NOW)
HOST = {"kind": "host", "count": 1}
WAIT = 60.0  # seconds to wait for an event the daemon owes us


def T(hours: float = 0, **kw) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours, **kw)


@pytest.fixture
def client(berthd):
    with BerthClient(berthd.socket_path, timeout=60) as c:
        yield c


def add_hosts(c: BerthClient, *names: str, **fields) -> None:
    for n in names:
        c.host_create(name=n, vcpus=fields.get("vcpus", 32), memory_mb=fields.get("memory_mb", 65536),
                      disk_gb=fields.get("disk_gb", 500), **{k: v for k, v in fields.items()
                                                             if k not in ("vcpus", "memory_mb", "disk_gb")})


def take(sub, n: int) -> list[dict]:
    """The next `n` events, each within WAIT seconds."""
    out = []
    for _ in range(n):
        ev = sub.next(timeout=WAIT)
        assert ev is not None, f"only {len(out)} of {n} events arrived: {out}"
        out.append(ev)
    return out


# ------------------------------------------------------------------------------------------------
# The method list cannot drift from what the daemon advertises
# ------------------------------------------------------------------------------------------------

def _check_methods_against(doc: dict) -> None:
    advertised = {m["name"]: m for m in doc["methods"]}
    assert set(berth_client.RPC_METHODS.values()) == set(advertised), (
        "client and daemon disagree on the method list: "
        f"missing {sorted(set(advertised) - set(berth_client.RPC_METHODS.values()))}, "
        f"extra {sorted(set(berth_client.RPC_METHODS.values()) - set(advertised))}")
    for name, method in advertised.items():
        py = name.replace(".", "_")
        assert berth_client.RPC_METHODS.get(py) == name
        fn = getattr(BerthClient, py, None)
        assert callable(fn), f"BerthClient has no method {py} for {name}"
        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.name != "self"]
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params), f"{py}: params must be keyword-only"
        got = {p.name.rstrip("_"): p for p in params}
        want = {p["name"]: p for p in method["params"]}
        assert set(got) == set(want), f"{py}: params {sorted(got)} but {name} takes {sorted(want)}"
        for pname, p in want.items():
            has_default = got[pname].default is not inspect.Parameter.empty
            if p.get("required"):
                assert not has_default, f"{py}({pname}) is required by the contract"
            else:
                assert got[pname].default is UNSET, f"{py}({pname}) is optional: its default must be UNSET"


def test_client_has_a_method_for_every_method_the_daemon_advertises(client):
    _check_methods_against(client.rpc_discover())


def test_client_matches_the_openrpc_file_in_schemas():
    """The same check without a daemon, against schemas/openrpc.json (what rpc.discover serves)."""
    _check_methods_against(json.loads((SCHEMAS / "openrpc.json").read_text()))


class RecordingClient(BerthClient):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.called: list[str] = []

    def call(self, method, params=None):
        self.called.append(method)
        return super().call(method, params)


def test_every_method_is_callable(berthd):
    with RecordingClient(berthd.socket_path) as c:
        assert c.rpc_discover()["openrpc"]
        assert c.system_health()["status"] == "ok"
        assert c.clock_now() == {"now": DEFAULT_NOW}

        add_hosts(c, "h1", "h2", properties={"rack": "r1"})
        c.host_create(name="h3", vcpus=16, memory_mb=32768, disk_gb=100, gpus=[{"model": "A100-40GB"}],
                      properties={"rack": "r2"}, reservable=True, idempotency_key="h3")
        assert c.host_get(name="h3")["gpus"] == [{"model": "A100-40GB"}]
        assert [h["name"] for h in c.host_list(properties={"rack": "r1"})["items"]] == ["h1", "h2"]
        assert c.host_update(name="h3", properties={"rack": "r3"})["properties"] == {"rack": "r3"}

        entry = c.credits_grant(project_id="proj-a", resource_class="host_hours", amount=100,
                                valid_from=T(), valid_to="2031-01-01T00:00:00+02:00", note="welcome")
        assert entry["kind"] == "grant" and entry["valid_to"] == "2030-12-31T22:00:00Z"
        assert c.credits_balance(project_id="proj-a")["host_hours"]["available"] == 100
        assert [e["kind"] for e in c.credits_ledger(project_id="proj-a", limit=10)["items"]] == ["grant"]

        windows = c.availability_find(reservations=[HOST], duration_s=dt.timedelta(hours=1), earliest=T(),
                                      latest=T(10), limit=2)["items"]
        assert windows[0] == {"start": ts(0), "end": ts(1)}

        lease = c.lease_create(name="run", project_id="proj-a", user_id="alice", start=T(1), end=T(3),
                               before_end_s=dt.timedelta(minutes=30), reservations=[HOST],
                               idempotency_key="lease-1")
        assert (lease["start"], lease["end"], lease["before_end_s"]) == (ts(1), ts(3), 1800)
        assert c.lease_get(id=lease["id"])["id"] == lease["id"]
        page = c.lease_list(project_id="proj-a", status="pending", from_=T(2), to="2030-01-01T05:00:00Z", limit=10)
        assert [x["id"] for x in page["items"]] == [lease["id"]] and page["next_cursor"] is None
        assert c.lease_update(id=lease["id"], end=T(4), dry_run=True)["end"] == ts(4)
        assert c.lease_update(id=lease["id"], name="run-2", end=T(4))["name"] == "run-2"

        cal = c.calendar_get(from_=T(), to=T(5), hosts=[lease["reservations"][0]["allocations"][0]["host"]])
        assert len(cal["hosts"]) == 1 and cal["hosts"][0]["allocations"][0]["lease_id"] == lease["id"]

        p = c.preemptible_create(project_id="proj-b", vcpus=2, memory_mb=1024, disk_gb=10,
                                 min_lifetime_s=dt.timedelta(minutes=10), slurm_node="node-1")
        assert c.preemptible_get(id=p["id"])["slurm_node"] == "node-1"
        assert [x["id"] for x in c.preemptible_list(project_id="proj-b")["items"]] == [p["id"]]
        assert "preempt_at" in c.preemptible_horizon(id=p["id"])
        assert "preempt_at" in c.preemptible_horizon(host=p["host"])
        assert c.preemptible_delete(id=p["id"])["status"] == "ended"

        assert c.clock_set(now=T(0, minutes=30)) == {"now": ts(0, minutes=30)}
        assert c.events_subscribe(types=["lease.*"])["subscription"]
        assert c.clock_advance(seconds=dt.timedelta(minutes=30)) == {"now": ts(1)}
        types = [e["type"] for e in c.events_list(after_seq=0, limit=1000, types=["lease.*"])["items"]]
        assert types == ["lease.created", "lease.updated", "lease.started"]
        # The raw subscription's notifications were queued while calls waited for their replies.
        assert [n["params"]["type"] for n in c.notifications] == ["lease.started"]
        assert all(a["lease_id"] == lease["id"] for a in c.actions_list(lease_id=lease["id"], limit=10)["items"])

        assert "host_hours" in c.lease_delete(id=lease["id"], idempotency_key="del-1")["refund"]
        assert c.host_delete(name="h3") == {}

        advertised = {m["name"] for m in c.rpc_discover()["methods"]}
        assert advertised <= set(c.called), f"not called: {sorted(advertised - set(c.called))}"


def test_batch_returns_results_and_errors_in_order(client):
    add_hosts(client, "h1")
    out = client.batch([("clock.now", None), ("host.get", {"name": "nope"}), ("host.get", {"name": "h1"})])
    assert out[0] == {"now": DEFAULT_NOW}
    assert isinstance(out[1], NotFound) and out[1].method == "host.get"
    assert out[2]["name"] == "h1"
    assert client.batch([]) == []


def test_iter_items_follows_the_cursor(client):
    add_hosts(client, "h1")
    ids = [client.lease_create(name=f"l{i}", project_id="p", start=T(i + 1), end=T(i + 2), reservations=[HOST])["id"]
           for i in range(5)]
    # Oldest first by creation time, then id: all five were created at the same (manual) time.
    assert [x["id"] for x in client.iter_items("lease.list", {"limit": 2})] == sorted(ids)
    evs = list(client.iter_items("events.list", {"limit": 2}))
    assert [e["seq"] for e in evs] == list(range(1, 7))


# ------------------------------------------------------------------------------------------------
# One exception class per error code
# ------------------------------------------------------------------------------------------------

ALL_CODES = {
    -32700: ParseError, -32600: InvalidRequest, -32601: MethodNotFound, -32602: InvalidParams,
    -32603: InternalError, -32001: NotFound, -32002: NoCapacity, -32003: InsufficientCredits,
    -32004: Forbidden, -32005: Conflict, -32006: UpstreamError, -32007: Unavailable, -32008: PolicyViolation,
}


def test_every_error_code_of_the_contract_has_its_class():
    doc = json.loads((SCHEMAS / "openrpc.json").read_text())
    contract = {e["code"]: name for name, e in doc["components"]["errors"].items()}
    assert set(contract) == set(ALL_CODES) == set(berth_client.ERROR_CLASSES)
    for code, name in contract.items():
        cls = berth_client.ERROR_CLASSES[code]
        assert cls is ALL_CODES[code] and cls.__name__ == name and issubclass(cls, BerthError)
        e = error_from_reply({"code": code, "message": "m", "data": {"reason": cls.REASON}}, "x.y")
        assert type(e) is cls and (e.code, e.message, e.reason, e.method) == (code, "m", cls.REASON, "x.y")
        again = pickle.loads(pickle.dumps(e))
        assert type(again) is cls and (again.code, again.data) == (code, e.data)
    unknown = error_from_reply({"code": -32099, "message": "new", "data": {"reason": "later"}})
    assert type(unknown) is BerthError and unknown.reason == "later"
    too_large = error_from_reply({"code": -32600, "message": "m", "data": {"reason": "request_too_large", "limit": 9}})
    assert type(too_large) is RequestTooLarge and isinstance(too_large, InvalidRequest) and too_large.limit == 9


def test_parse_error_and_the_connection_stays_usable(client):
    with pytest.raises(ParseError) as e:
        client._call_line(b'{"jsonrpc": "2.0", "method": ')
    assert e.value.code == -32700 and e.value.reason == "parse_error"
    assert client.clock_now() == {"now": DEFAULT_NOW}


def test_invalid_request(client):
    with pytest.raises(InvalidRequest) as e:
        client._call_line(b'{"jsonrpc": "2.0", "method": 5, "id": 1}')
    assert e.value.code == -32600 and type(e.value) is InvalidRequest
    with pytest.raises(InvalidRequest):
        client._call_line(b"[]")  # empty batch
    assert client.system_health()["status"] == "ok"


def test_request_too_large_then_the_client_reconnects(daemon):
    daemon.start(config={"max_request_bytes": 4096})
    with BerthClient(daemon.socket_path) as c:
        with pytest.raises(RequestTooLarge) as e:
            c.lease_create(name="x" * 8000, project_id="p", start=T(1), end=T(2), reservations=[HOST])
        assert e.value.code == -32600 and e.value.limit == 4096 and isinstance(e.value, InvalidRequest)
        assert not c.connected  # the daemon closes the connection after that reply
        assert c.clock_now() == {"now": DEFAULT_NOW}


def test_method_not_found(client):
    with pytest.raises(MethodNotFound) as e:
        client.call("lease.frobnicate", {})
    assert e.value.code == -32601 and e.value.method == "lease.frobnicate"


def test_invalid_params_carries_the_paths(client):
    with pytest.raises(InvalidParams) as e:
        client.lease_create(name="x", project_id="p", start=T(1), end=T(2), reservations=[{"kind": "host", "count": 0}])
    assert e.value.code == -32602 and "reservations[0].count" in e.value.paths
    assert e.value.errors[0]["message"]
    with pytest.raises(InvalidParams) as e:
        client.lease_list(status="sleeping")
    assert e.value.paths == ["status"]
    with pytest.raises(InvalidParams):
        client.preemptible_horizon()  # exactly one of host and id
    with pytest.raises(InvalidParams):
        client.lease_create(name="x", project_id="p", start="tomorrow", end=T(2), reservations=[HOST])


def test_not_found(client):
    with pytest.raises(NotFound) as e:
        client.lease_get(id="00000000-0000-4000-8000-000000000000")
    assert e.value.code == -32001 and e.value.reason == "not_found"
    with pytest.raises(NotFound):
        client.host_update(name="ghost", vcpus=2)


def test_no_capacity_with_earliest_start(client):
    add_hosts(client, "h1")
    client.lease_create(name="a", project_id="p", start=T(1), end=T(3), reservations=[HOST])
    with pytest.raises(NoCapacity) as e:
        client.lease_create(name="b", project_id="p", start=T(2), end=T(4), reservations=[HOST])
    assert e.value.code == -32002 and e.value.earliest_start == ts(3)
    with pytest.raises(NoCapacity):
        client.lease_create(name="c", project_id="p", start=T(5), end=T(6), reservations=[{"kind": "host", "count": 2}])


def test_insufficient_credits(daemon):
    daemon.start(config={"enforce_credits": True})
    with BerthClient(daemon.socket_path) as c:
        add_hosts(c, "h1")
        c.credits_grant(project_id="proj-a", resource_class="host_hours", amount=1)
        with pytest.raises(InsufficientCredits) as e:
            c.lease_create(name="long", project_id="proj-a", start=T(1), end=T(3), reservations=[HOST])
        err = e.value
        assert err.code == -32003 and (err.resource_class, err.required, err.available) == ("host_hours", 2, 1)
        assert c.lease_list(project_id="proj-a")["items"] == []


def _as_nobody(socket_path: str) -> dict:
    """Runs a BerthClient call in a child process as uid/gid 65534 (no Berth role); returns what it saw."""
    def work() -> dict:
        try:
            with BerthClient(socket_path, timeout=30) as c:
                c.lease_list()
            return {"ok": True}
        except BerthError as e:
            return {"class": type(e).__name__, "code": e.code, "reason": e.reason, "forbidden": isinstance(e, Forbidden)}

    return run_as(65534, 65534, work)


@pytest.mark.skipif(os.geteuid() != 0, reason="switches to uid 65534: run as root")
def test_forbidden_for_a_caller_without_a_role(berthd):
    assert _as_nobody(berthd.socket_path) == {"class": "Forbidden", "code": -32004, "reason": "forbidden",
                                              "forbidden": True}


def test_conflict(client):
    add_hosts(client, "h1")
    with pytest.raises(Conflict) as e:
        add_hosts(client, "h1")
    assert e.value.code == -32005
    client.clock_set(now=T(5))
    with pytest.raises(Conflict):
        client.clock_set(now=T(4))  # the clock never goes back


def test_unavailable_while_the_daemon_drains(berthd, client):
    """A batch that is being worked through when SIGTERM arrives: what had not started yet is
    refused with -32007 (returned per call by batch())."""
    watcher = client.subscribe(types=["host.created"], reconnect=False)
    out: dict = {}

    def run():
        with BerthClient(berthd.socket_path) as c:
            out["replies"] = c.batch([("host.create", {"name": f"x{i}", "vcpus": 1, "memory_mb": 1, "disk_gb": 1})
                                      for i in range(1000)])

    t = threading.Thread(target=run)
    t.start()
    assert watcher.next(timeout=WAIT) is not None  # the batch is being handled: stop now
    os.kill(berthd.pid, signal.SIGTERM)
    t.join(WAIT)
    assert not t.is_alive()
    replies = out["replies"]
    refused = [r for r in replies if isinstance(r, BerthError)]
    assert refused, "the whole batch was done before the stop began"
    assert all(type(r) is Unavailable and r.code == -32007 and r.reason == "unavailable" for r in refused), refused[:3]
    assert berthd.wait_exit() == 0
    watcher.close()


def test_policy_violation(daemon):
    daemon.start(config={"max_lease_duration_s": 7200})
    with BerthClient(daemon.socket_path) as c:
        add_hosts(c, "h1")
        with pytest.raises(PolicyViolation) as e:
            c.lease_create(name="x", project_id="p", start=T(1), end=T(3, seconds=1), reservations=[HOST])
        assert e.value.code == -32008 and e.value.rule == "max_lease_duration"


# ------------------------------------------------------------------------------------------------
# Bad input caught before anything is sent, and the connection itself
# ------------------------------------------------------------------------------------------------

def test_times_and_durations_are_converted_and_checked(client):
    add_hosts(client, "h1")
    paris = dt.timezone(dt.timedelta(hours=2))
    lease = client.lease_create(name="x", project_id="p", start=dt.datetime(2030, 1, 1, 3, 0, 0, 999, tzinfo=paris),
                                end="2030-01-01T05:00:00+02:00", reservations=[HOST])
    assert (lease["start"], lease["end"]) == (ts(1), ts(3))
    assert parse_time(lease["start"]) == T(1) and format_time(T(1)) == ts(1)
    with pytest.raises(ValueError, match="naive"):
        client.lease_update(id=lease["id"], end=dt.datetime(2030, 1, 1, 6))
    with pytest.raises(TypeError):
        client.calendar_get(from_=dt.date(2030, 1, 1), to=T(1))
    with pytest.raises(ValueError, match="whole seconds"):
        client.clock_advance(seconds=dt.timedelta(milliseconds=1500))
    assert client.lease_get(id=lease["id"])["end"] == ts(3)  # nothing was sent
    # None is sent as null where the contract allows it; UNSET (the default) is not sent at all.
    assert client.lease_update(id=lease["id"], before_end_s=600)["before_end_s"] == 600
    assert client.lease_update(id=lease["id"], name="y")["before_end_s"] == 600
    assert client.lease_create(name="z", project_id="p", start=T(4), end=T(5), reservations=[HOST],
                               before_end_s=None, user_id=None)["user_id"] is None
    with pytest.raises(InvalidParams):
        client.lease_list(limit="ten")


def test_exact_credit_amounts_with_decimals(berthd):
    from decimal import Decimal
    with BerthClient(berthd.socket_path, decimals=True) as c:
        c.credits_grant(project_id="p", resource_class="vcpu_hours", amount=Decimal("7.335278"))
        entry = c.credits_grant(project_id="p", resource_class="vcpu_hours", amount=Decimal("0.000001"))
        assert entry["amount"] == Decimal("0.000001")
        assert c.credits_balance(project_id="p")["vcpu_hours"]["available"] == Decimal("7.335279")


def test_cannot_connect_is_a_connection_error(tmp_path):
    with pytest.raises(BerthConnectionError, match="cannot connect"):
        BerthClient(str(tmp_path / "nothing.sock")).system_health()
    with pytest.raises(BerthConnectionError):
        BerthClient(str(tmp_path / "nothing.sock")).subscribe()


def test_a_daemon_that_does_not_answer_is_a_timeout(tmp_path):
    path = f"/tmp/berth-silent-{os.getpid()}.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        srv.bind(path)
        srv.listen(1)
        c = BerthClient(path, timeout=0.3)
        with pytest.raises(BerthTimeout):
            c.clock_now()
        assert isinstance(BerthTimeout("x"), (BerthConnectionError, TimeoutError))
        assert not c.connected  # a late reply must not be taken for the next call's
    finally:
        srv.close()
        os.unlink(path)


def test_an_idle_client_reconnects_after_a_restart(daemon):
    daemon.start()
    c = BerthClient(daemon.socket_path)
    add_hosts(c, "h1")
    daemon.restart(now=None)
    assert c.host_get(name="h1")["name"] == "h1"  # the old connection was closed while idle
    c.close()


# ------------------------------------------------------------------------------------------------
# A portal's lease on the manual clock
# ------------------------------------------------------------------------------------------------

def test_lease_lifecycle_with_credits_on_the_manual_clock(daemon):
    daemon.start(config={"enforce_credits": True})
    with BerthClient(daemon.socket_path) as c:
        add_hosts(c, "h1", "h2")
        c.credits_grant(project_id="proj-a", resource_class="host_hours", amount=10)

        plan = c.lease_create(name="train", project_id="proj-a", start=T(1), end=T(3), reservations=[HOST],
                              dry_run=True)
        assert plan["cost"] == {"host_hours": 2}
        assert c.lease_list(project_id="proj-a")["items"] == []

        lease = c.lease_create(name="train", project_id="proj-a", start=T(1), end=T(3), before_end_s=1800,
                               reservations=[HOST], idempotency_key="portal-req-1")
        again = c.lease_create(name="train", project_id="proj-a", start=T(1), end=T(3), before_end_s=1800,
                               reservations=[HOST], idempotency_key="portal-req-1")
        assert again["id"] == lease["id"] and lease["status"] == "pending"
        assert c.credits_balance(project_id="proj-a")["host_hours"]["available"] == 8

        c.clock_set(now=T(1))
        assert c.lease_get(id=lease["id"])["status"] == "active"
        longer = c.lease_update(id=lease["id"], end=T(4))
        assert longer["end"] == ts(4) and longer["cost"] == {"host_hours": 3}
        assert c.credits_balance(project_id="proj-a")["host_hours"]["available"] == 7
        with pytest.raises(InsufficientCredits):
            c.lease_update(id=lease["id"], end=T(20))

        other = c.lease_create(name="later", project_id="proj-a", start=T(10), end=T(12), reservations=[HOST])
        assert c.lease_delete(id=other["id"])["refund"] == {"host_hours": 2}

        c.clock_advance(seconds=3 * 3600)
        ended = c.lease_get(id=lease["id"])
        assert ended["status"] == "ended"
        with pytest.raises(Conflict):
            c.lease_update(id=lease["id"], end=T(6))
        assert [x["status"] for x in c.lease_list(project_id="proj-a")["items"]] == ["ended", "deleted"]
        types = [e["type"] for e in c.events_list(types=["lease.*"])["items"] if e.get("lease_id") == lease["id"]]
        assert types == ["lease.created", "lease.started", "lease.updated", "lease.before_end", "lease.ended"]


# ------------------------------------------------------------------------------------------------
# The subscription iterator
# ------------------------------------------------------------------------------------------------

def _lease_and_run(c: BerthClient, name: str, start: dt.datetime, end: dt.datetime) -> dict:
    lease = c.lease_create(name=name, project_id="proj-a", start=start, end=end, reservations=[HOST])
    c.clock_set(now=end)  # started and ended before the reply
    return lease


def test_subscription_catches_up_then_follows_live_in_order(berthd, client):
    add_hosts(client, "h1")
    _lease_and_run(client, "a", T(1), T(2))  # 1 host + 3 lease events before subscribing
    with client.subscribe(after_seq=0) as sub:
        first = take(sub, 4)
        assert [e["seq"] for e in first] == [1, 2, 3, 4]
        assert sub.next(timeout=0.2) is None  # nothing more yet
        _lease_and_run(client, "b", T(3), T(4))
        live = take(sub, 3)
        assert [e["type"] for e in live] == ["lease.created", "lease.started", "lease.ended"]
        assert first + live == all_events(berthd.client())  # same events, same fields, none twice
        assert "subscription" not in live[0] and sub.last_seq == 7


def test_subscription_filters_types_and_starts_from_now_by_default(client):
    add_hosts(client, "h1")
    _lease_and_run(client, "a", T(1), T(2))
    with client.subscribe(types=["lease.ended", "host.*"]) as sub:
        assert sub.last_seq == 4  # the newest matching event when it started
        add_hosts(client, "h2")
        _lease_and_run(client, "b", T(3), T(4))
        got = take(sub, 2)
        assert [(e["type"], e["seq"]) for e in got] == [("host.created", 5), ("lease.ended", 8)]
        assert sub.next(timeout=0.2) is None


def test_subscription_resumes_after_restarts_without_loss_or_duplicates(daemon):
    daemon.start()
    c = BerthClient(daemon.socket_path)
    add_hosts(c, "h1")
    sub = c.subscribe(after_seq=0, reconnect_timeout=WAIT)
    got = take(sub, 1)

    # 1. A graceful restart while the subscriber is idle; events happen before it reads again.
    daemon.restart(now=None)
    _lease_and_run(c, "a", T(1), T(2))
    got += take(sub, 3)
    assert sub.connections == 2

    # 2. A crash (SIGKILL) while the subscriber waits; the daemon comes back and goes on.
    def crash_and_continue():
        daemon.kill()
        daemon.start(now=None)
        with BerthClient(daemon.socket_path) as c2:
            _lease_and_run(c2, "b", T(3), T(4))

    t = threading.Thread(target=crash_and_continue)
    t.start()
    got += take(sub, 3)
    t.join(WAIT)
    assert sub.connections == 3

    # 3. Events published while it is connected still come after all that.
    _lease_and_run(c, "c", T(5), T(6))
    got += take(sub, 3)
    assert sub.next(timeout=0.2) is None

    stored = all_events(daemon.client())
    assert [e["seq"] for e in got] == list(range(1, 11))
    assert got == stored
    sub.close()
    c.close()


def test_subscription_without_reconnect_raises_when_the_daemon_goes(daemon):
    daemon.start()
    c = BerthClient(daemon.socket_path)
    sub = c.subscribe(reconnect=False)
    daemon.terminate()
    with pytest.raises(BerthConnectionError):
        sub.next(timeout=WAIT)
    sub.close()


def test_subscription_gives_up_after_reconnect_timeout(daemon):
    daemon.start()
    sub = BerthClient(daemon.socket_path).subscribe(reconnect_timeout=0.5)
    daemon.terminate()
    with pytest.raises(BerthConnectionError, match="could not resubscribe"):
        # Polling with short timeouts: the 0.5 s count from when the connection was lost.
        for _ in range(int(WAIT / 0.1)):
            assert sub.next(timeout=0.1) is None
    sub.close()


def test_subscription_close_from_another_thread_ends_the_iteration(client):
    add_hosts(client, "h1")
    sub = client.subscribe(after_seq=0)
    seen: list = []
    t = threading.Thread(target=lambda: seen.extend(sub))
    t.start()
    sub.close()
    t.join(WAIT)
    assert not t.is_alive() and sub.closed
    assert [e["seq"] for e in seen] in ([], [1])
    assert sub.next(timeout=0) is None
