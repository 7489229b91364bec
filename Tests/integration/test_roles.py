"""Roles from SO_PEERCRED: root is admin, config maps users and groups to portal and hook, anyone
else is refused with -32004. Clients run as other uids in forked children."""

from __future__ import annotations

import json
import os
import pwd
import signal
import stat

import pytest

from berthtest import PROBE_ID, calls_as, create_lease, lease_params, make_hosts, request, ts

NOBODY = 65534
NOGROUP = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="role tests switch uid and create groups: run as root")


def codes(replies: list) -> list:
    return [None if r is None else (r["error"]["code"] if "error" in r else "ok") for r in replies]


def assert_forbidden(reply: dict):
    assert "error" in reply, reply
    assert reply["error"]["code"] == -32004 and reply["error"]["data"]["reason"] == "forbidden", reply
    assert reply["error"]["message"]


def test_socket_is_connectable_by_anyone(berthd):
    mode = stat.S_IMODE(os.stat(berthd.socket_path).st_mode)
    assert mode == 0o666, oct(mode)
    assert stat.S_ISSOCK(os.stat(berthd.socket_path).st_mode)
    # A non-root process can connect (and is then told it has no role).
    replies = calls_as(NOBODY, NOGROUP, berthd.socket_path, [])
    assert_forbidden(replies[-1])


def test_socket_mode_comes_from_config(daemon):
    daemon.start(config={"socket_mode": "0600"})
    assert stat.S_IMODE(os.stat(daemon.socket_path).st_mode) == 0o600
    with pytest.raises(AssertionError, match="Permission denied|PermissionError"):
        calls_as(NOBODY, NOGROUP, daemon.socket_path, [])


def test_unmapped_uid_is_refused_for_every_request(berthd):
    rpc = berthd.client()
    make_hosts(rpc, "h1")
    messages = [
        request("system.health"),
        request("rpc.discover"),
        request("lease.list", id="a"),
        request("host.list", id=None),
        request("lease.create", lease_params(ts(1), ts(2)), id=7),
        request("no.such.method", id=8),
        {"jsonrpc": "2.0", "method": "lease.create", "params": lease_params(ts(1), ts(2))},  # notification
        [request("clock.now", id=1), {"jsonrpc": "2.0", "method": "clock.now"}, request("host.get", {"name": "h1"}, 2)],
    ]
    replies = calls_as(NOBODY, NOGROUP, berthd.socket_path, messages)
    for m, reply in zip(messages, replies):
        if isinstance(m, dict) and "id" in m:
            assert_forbidden(reply)
            assert reply["id"] == m["id"]
        elif isinstance(m, list):
            assert [r["id"] for r in reply] == [1, 2]
            for r in reply:
                assert_forbidden(r)
        else:
            assert reply is None
    assert replies[-1]["id"] == PROBE_ID
    assert_forbidden(replies[-1])
    # Nothing the refused caller sent had an effect.
    assert rpc.call("lease.list")["items"] == []


def test_portal_group_may_lease_but_not_manage_hosts(daemon, make_group):
    name, gid = make_group("portal")
    daemon.start(config={"roles": {"portal": {"groups": [name]}}})
    rpc = daemon.client()
    make_hosts(rpc, "h1", "h2")
    existing = create_lease(rpc, ts(1), ts(2), project="other")
    replies = calls_as(NOBODY, gid, daemon.socket_path, [
        request("lease.create", lease_params(ts(1), ts(2), project="portal-proj"), 1),
        request("lease.list", {"project_id": "portal-proj"}, 2),
        request("lease.get", {"id": existing["id"]}, 3),
        request("availability.find", {"reservations": [{"kind": "host", "count": 1}], "duration_s": 60}, 4),
        request("calendar.get", {"from": ts(0), "to": ts(3)}, 5),
        request("system.health", None, 6),
        request("host.create", {"name": "h9", "vcpus": 1, "memory_mb": 1, "disk_gb": 1}, 7),
        request("host.list", None, 8),
        request("host.delete", {"name": "h1"}, 9),
        request("events.list", None, 10),
        request("actions.list", None, 11),
        request("clock.advance", {"seconds": 10}, 12),
        request("lease.update", {"id": existing["id"], "end": ts(3)}, 13),
    ])
    assert codes(replies[:6]) == ["ok"] * 6, replies[:6]
    lease = replies[0]["result"]
    assert lease["project_id"] == "portal-proj" and lease["status"] == "pending"
    assert [x["id"] for x in replies[1]["result"]["items"]] == [lease["id"]]
    for r in replies[6:12]:
        assert_forbidden(r)
    assert codes([replies[12]]) == ["ok"]  # portal may change any project's lease it names
    # The refused calls changed nothing; the allowed one is real.
    assert [h["name"] for h in rpc.call("host.list")["items"]] == ["h1", "h2"]
    assert rpc.call("clock.now") == {"now": ts(0)}
    assert rpc.call("lease.get", {"id": lease["id"]}) == lease
    # A portal caller can delete leases too.
    replies = calls_as(NOBODY, gid, daemon.socket_path, [request("lease.delete", {"id": lease["id"]})])
    assert "refund" in replies[0]["result"]


def test_hook_group_may_read_events_but_not_lease(daemon, make_group):
    name, gid = make_group("hook")
    daemon.start(config={"roles": {"hook": {"groups": [name]}}})
    rpc = daemon.client()
    make_hosts(rpc, "h1")
    lease = create_lease(rpc, ts(1), ts(2))
    replies = calls_as(NOBODY, gid, daemon.socket_path, [
        request("events.list", None, 1),
        request("events.subscribe", {"types": ["lease.*"]}, 2),
        request("calendar.get", {"from": ts(0), "to": ts(3)}, 3),
        request("lease.get", {"id": lease["id"]}, 4),
        request("lease.list", None, 5),
        request("lease.create", lease_params(ts(3), ts(4)), 6),
        request("lease.update", {"id": lease["id"], "end": ts(3)}, 7),
        request("lease.delete", {"id": lease["id"]}, 8),
        request("availability.find", {"reservations": [{"kind": "host", "count": 1}], "duration_s": 60}, 9),
        request("host.create", {"name": "h9", "vcpus": 1, "memory_mb": 1, "disk_gb": 1}, 10),
        request("actions.list", None, 11),
    ])
    assert codes(replies[:5]) == ["ok"] * 5, replies[:5]
    assert [e["type"] for e in replies[0]["result"]["items"]] == ["host.created", "lease.created"]
    for r in replies[5:11]:
        assert_forbidden(r)
    assert rpc.call("lease.get", {"id": lease["id"]}) == lease
    assert len(rpc.call("lease.list")["items"]) == 1


def test_hook_group_manages_preemptibles(daemon, make_group):
    """The Slurm hooks run as the hook role: preemptible.* is theirs, reservations are not."""
    name, gid = make_group("hook")
    daemon.start(config={"roles": {"hook": {"groups": [name]}}})
    rpc = daemon.client()
    make_hosts(rpc, "h1")
    replies = calls_as(NOBODY, gid, daemon.socket_path, [
        request("preemptible.create", {"project_id": "slurm", "vcpus": 2, "memory_mb": 1024, "disk_gb": 5,
                                       "slurm_node": "n1"}, 1),
        request("preemptible.list", {"slurm_node": "n1"}, 2),
        request("preemptible.horizon", {"host": "h1"}, 3),
        request("lease.create", lease_params(ts(3), ts(4)), 4),
        request("credits.grant", {"project_id": "slurm", "resource_class": "host_hours", "amount": 1}, 5),
    ])
    assert codes(replies[:3]) == ["ok"] * 3, replies[:3]
    made = replies[0]["result"]
    assert replies[1]["result"]["items"] == [made]
    for r in replies[3:5]:
        assert_forbidden(r)
    replies = calls_as(NOBODY, gid, daemon.socket_path, [request("preemptible.delete", {"id": made["id"]}, 1)])
    assert replies[0]["result"]["status"] == "ended"


def test_users_are_mapped_by_name_and_root_is_always_admin(daemon):
    user = pwd.getpwuid(NOBODY).pw_name
    # Even a config that names root elsewhere cannot make it less than admin.
    daemon.start(config={"roles": {"hook": {"users": [user, "root"]}, "portal": {"groups": []}}})
    replies = calls_as(NOBODY, NOGROUP, daemon.socket_path, [
        request("events.list", None, 1), request("lease.create", lease_params(ts(1), ts(2)), 2)])
    assert codes(replies[:2]) == ["ok", -32004]
    rpc = daemon.client()
    assert rpc.call("host.create", {"name": "h1", "vcpus": 1, "memory_mb": 1, "disk_gb": 1})["name"] == "h1"


def test_sighup_reloads_roles(daemon, make_group):
    name, gid = make_group("portal")
    daemon.start(config={"roles": {}})
    before = calls_as(NOBODY, gid, daemon.socket_path, [request("lease.list")])
    assert_forbidden(before[0])
    daemon.config_path.write_text(json.dumps({"roles": {"portal": {"groups": [name]}}}))
    os.kill(daemon.pid, signal.SIGHUP)
    daemon.notify.wait_for(daemon.pid, "RELOADING", "1")
    # READY=1 again once the reload is done (the first READY=1 came at start).
    ready = daemon.notify.wait_for(daemon.pid, "READY", "1", nth=2)
    assert "reloaded" in ready.get("STATUS", "")
    after = calls_as(NOBODY, gid, daemon.socket_path, [request("lease.list")])
    assert codes(after[:1]) == ["ok"], after


def test_daemon_can_run_unprivileged(daemon):
    state = daemon.sock_dir / "state"
    daemon.start(uid=NOBODY, gid=NOGROUP, state_dir=state)
    st = os.stat(daemon.socket_path)
    assert (st.st_uid, st.st_gid) == (NOBODY, NOGROUP)
    assert os.stat(state / "berth.sqlite").st_uid == NOBODY
    rpc = daemon.client()  # root is admin whoever runs the daemon
    assert rpc.call("host.create", {"name": "h1", "vcpus": 1, "memory_mb": 1, "disk_gb": 1})["name"] == "h1"
    assert daemon.terminate() == 0
    daemon.restart(now=None)
    assert [h["name"] for h in daemon.client().call("host.list")["items"]] == ["h1"]
