"""Authorization matrix: every method of the contract × every role, allowed or
-32004 exactly as `x-roles` in the OpenRPC document says; portals and projects; the socket file.

Roles come from the peer's uid/gid (SO_PEERCRED): root is admin; config `roles` maps users (by
name or number) and groups (primary or supplementary) to admin, portal and hook; anyone else is
refused. Clients run as other uids in forked children (berthtest.calls_as).
"""

from __future__ import annotations

import json
import os
import stat

import pytest

from berthtest import SCHEMAS, calls_as, lease_params, make_hosts, request, ts

NOBODY = 65534
NOGROUP = 65534
PORTAL_UID = 4242  # mapped by number in `roles.portal.users`; no passwd entry needed

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="authorization tests switch uid and create groups: run as root")


@pytest.fixture
def groups(make_group):
    """Three throwaway system groups (admin, portal, hook), removed afterwards."""
    return {r: make_group(r) for r in ("admin", "portal", "hook")}


#: Who calls, as (uid, gid) given the groups fixture, and the role the contract gives them.
CALLERS = {
    "root": ("admin", lambda g: (0, 0)),
    "admin-group": ("admin", lambda g: (NOBODY, g["admin"][1])),
    "portal-group": ("portal", lambda g: (NOBODY, g["portal"][1])),
    "portal-uid": ("portal", lambda g: (PORTAL_UID, NOGROUP)),
    "hook-group": ("hook", lambda g: (NOBODY, g["hook"][1])),
    "unknown": (None, lambda g: (NOBODY, NOGROUP)),
}


def matrix_params(tag: str, f: dict, step: int) -> dict:
    """Params with which each method succeeds for a caller allowed to call it (fixtures in `f`)."""
    return {
        "rpc.discover": None,
        "system.health": None,
        "clock.now": None,
        "clock.set": {"now": ts(minutes=10 * step)},
        "clock.advance": {"seconds": 1},
        "host.create": {"name": f"new-{tag}", "vcpus": 4, "memory_mb": 4096, "disk_gb": 10},
        "host.get": {"name": f["host"]},
        "host.list": None,
        "host.update": {"name": f["host"], "properties": {"touched": tag}},
        "host.delete": {"name": f["spare_host"]},
        "lease.create": lease_params(ts(24), ts(25), name=f"new-{tag}", project=f"proj-{tag}"),
        "lease.get": {"id": f["lease"]},
        "lease.list": None,
        "lease.update": {"id": f["lease"], "end": ts(31, minutes=30)},
        "lease.delete": {"id": f["doomed_lease"]},
        "availability.find": {"reservations": [{"kind": "host", "count": 1}], "duration_s": 60},
        "calendar.get": {"from": ts(0), "to": ts(48)},
        "preemptible.create": {"project_id": f"proj-{tag}", "vcpus": 1, "memory_mb": 512, "disk_gb": 1},
        "preemptible.get": {"id": f["preemptible"]},
        "preemptible.list": None,
        "preemptible.delete": {"id": f["doomed_preemptible"]},
        "preemptible.horizon": {"host": f["host"]},
        "credits.grant": {"project_id": f"proj-{tag}", "resource_class": "host_hours", "amount": 1},
        "credits.balance": {"project_id": f["project"]},
        "credits.ledger": {"project_id": f["project"]},
        "events.subscribe": {"types": ["lease.*"]},
        "events.list": None,
        "actions.list": None,
    }


def fixtures(rpc, tag: str) -> dict:
    """Things (made as root) for one caller to read, change and delete."""
    make_hosts(rpc, f"h-{tag}", f"spare-{tag}", f"cap-{tag}")
    project = f"fix-{tag}"
    rpc.call("credits.grant", {"project_id": project, "resource_class": "host_hours", "amount": 100})
    lease = rpc.call("lease.create", lease_params(ts(30), ts(31), name=f"fix-{tag}", project=project))
    doomed = rpc.call("lease.create", lease_params(ts(32), ts(33), name=f"doomed-{tag}", project=project))
    pre = rpc.call("preemptible.create", {"project_id": project, "vcpus": 1, "memory_mb": 512, "disk_gb": 1})
    pre2 = rpc.call("preemptible.create", {"project_id": project, "vcpus": 1, "memory_mb": 512, "disk_gb": 1})
    return {"host": f"h-{tag}", "spare_host": f"spare-{tag}", "lease": lease["id"], "doomed_lease": doomed["id"],
            "preemptible": pre["id"], "doomed_preemptible": pre2["id"], "project": project}


def test_every_method_for_every_role_is_exactly_as_the_contract_says(daemon, groups):
    daemon.start(config={"roles": {"admin": {"groups": [groups["admin"][0]]},
                                   "portal": {"groups": [groups["portal"][0]], "users": [str(PORTAL_UID)]},
                                   "hook": {"groups": [groups["hook"][0]]}}})
    rpc = daemon.client()
    doc = rpc.call("rpc.discover")
    roles = {m["name"]: set(m["x-roles"]) for m in doc["methods"]}
    # The served document is the file under schemas/ (the contract's x-roles are the truth here).
    assert roles == {m["name"]: set(m["x-roles"]) for m in json.loads((SCHEMAS / "openrpc.json").read_text())["methods"]}
    assert set(matrix_params("t", {k: "x" for k in ("host", "spare_host", "lease", "doomed_lease", "preemptible",
                                                     "doomed_preemptible", "project")}, 1)) == set(roles), \
        "a method of the contract has no row in this matrix (or the matrix names one the contract lacks)"

    outcome = {}
    for step, (caller, (role, ids)) in enumerate(CALLERS.items(), start=1):
        uid, gid = ids(groups)
        f = fixtures(rpc, caller)
        params = matrix_params(caller, f, step)
        names = list(params)
        msgs = [request(m, params[m], i) for i, m in enumerate(names)]
        if uid == 0:
            replies = [rpc.request(m, params[m]) for m in names]
        else:
            replies = calls_as(uid, gid, daemon.socket_path, msgs)[:-1]
        for m, reply in zip(names, replies):
            allowed = role in roles[m]
            if allowed:
                assert "result" in reply, f"{caller} ({role}) may call {m} but got {reply}"
            else:
                assert "error" in reply and reply["error"]["code"] == -32004, f"{caller} ({role}) {m}: {reply}"
                assert reply["error"]["data"]["reason"] == "forbidden", reply
            outcome[(caller, m)] = allowed
        # Refused calls changed nothing; allowed ones did what they said.
        hosts = {h["name"] for h in rpc.call("host.list")["items"]}
        assert (f"new-{caller}" in hosts) == outcome[(caller, "host.create")]
        assert (f["spare_host"] in hosts) != outcome[(caller, "host.delete")]
        props = rpc.call("host.get", {"name": f["host"]})["properties"]
        assert (props.get("touched") == caller) == outcome[(caller, "host.update")]
        assert (rpc.call("lease.get", {"id": f["doomed_lease"]})["status"] == "deleted") == outcome[(caller, "lease.delete")]
        assert (rpc.call("lease.get", {"id": f["lease"]})["end"] == ts(31, minutes=30)) == outcome[(caller, "lease.update")]
        made = [x for x in rpc.call("lease.list", {"project_id": f"proj-{caller}"})["items"] if x["name"] == f"new-{caller}"]
        assert bool(made) == outcome[(caller, "lease.create")]
        assert (rpc.call("preemptible.get", {"id": f["doomed_preemptible"]})["status"] == "ended") == \
            outcome[(caller, "preemptible.delete")]
        assert bool(rpc.call("credits.balance", {"project_id": f"proj-{caller}"}).get("host_hours", {}).get("granted")) \
            == outcome[(caller, "credits.grant")]
    # Every caller hit every method, and the roles the contract names are all exercised.
    assert len(outcome) == len(CALLERS) * len(roles)
    for caller, (role, _) in CALLERS.items():
        for m in roles:
            assert outcome[(caller, m)] == (role in roles[m])


def test_portal_sees_and_changes_only_the_projects_it_names(daemon, groups):
    """The contract gives a portal every project it *names* (there is no per-project portal identity):
    a query naming project A never returns or touches project B, a lease cannot be moved to another
    project, and credit reads are per project."""
    daemon.start(config={"roles": {"portal": {"groups": [groups["portal"][0]]}}, "enforce_credits": True})
    rpc = daemon.client()
    make_hosts(rpc, "h1", "h2", "h3")
    for p in ("proj-a", "proj-b"):
        rpc.call("credits.grant", {"project_id": p, "resource_class": "host_hours", "amount": 10})
    b_lease = rpc.call("lease.create", lease_params(ts(5), ts(7), name="b1", project="proj-b"))
    gid = groups["portal"][1]
    replies = calls_as(NOBODY, gid, daemon.socket_path, [
        request("lease.create", lease_params(ts(1), ts(3), name="a1", project="proj-a"), 1),
        request("lease.list", {"project_id": "proj-a"}, 2),
        request("credits.balance", {"project_id": "proj-a"}, 3),
        request("credits.ledger", {"project_id": "proj-a"}, 4),
        request("lease.update", {"id": b_lease["id"], "project_id": "proj-a"}, 5),
        request("lease.create", lease_params(ts(1), ts(2), name="a-missing", project=""), 6),
        request("lease.list", {"project_id": "proj-b"}, 7),
        request("credits.balance", {"project_id": "proj-b"}, 8),
        request("lease.list", {"project_id": "proj-none"}, 9),
    ])
    a = replies[0]["result"]
    assert a["project_id"] == "proj-a"
    assert [x["id"] for x in replies[1]["result"]["items"]] == [a["id"]]
    assert replies[2]["result"]["host_hours"] == {"granted": 10, "spent": 2, "available": 8, "expired": 0}
    assert {e["project_id"] for e in replies[3]["result"]["items"]} == {"proj-a"}
    assert all(e.get("lease_id") in (None, a["id"]) for e in replies[3]["result"]["items"])
    # A lease is not moved to another project by an update.
    assert replies[4]["error"]["code"] == -32602, replies[4]
    assert rpc.call("lease.get", {"id": b_lease["id"]})["project_id"] == "proj-b"
    # A project must be named: an empty one is refused, not defaulted to some project.
    assert replies[5]["error"]["code"] == -32602, replies[5]
    # Naming B explicitly is what gives B's leases (the portal role may, for any project it names).
    assert [x["id"] for x in replies[6]["result"]["items"]] == [b_lease["id"]]
    assert replies[7]["result"]["host_hours"]["spent"] == 2  # B's own charge only, not A's
    assert replies[8]["result"]["items"] == []
    # Changing one project's lease leaves the other's credits alone.
    calls_as(NOBODY, gid, daemon.socket_path, [request("lease.update", {"id": a["id"], "end": ts(5)}, 1),
                                               request("lease.delete", {"id": a["id"]}, 2)])
    assert rpc.call("credits.balance", {"project_id": "proj-b"})["host_hours"]["spent"] == 2
    assert rpc.call("lease.get", {"id": b_lease["id"]})["status"] == "pending"


def test_socket_mode_and_owner(daemon, groups):
    """Default: mode 0666 (anyone may connect; the role decides), owned by the daemon's uid/gid;
    `socket_mode` narrows it. Under systemd, berthd.socket sets 0666 berth:berth."""
    daemon.start()
    st = os.stat(daemon.socket_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o666, oct(st.st_mode)
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())
    daemon.terminate()
    daemon.restart(config={"socket_mode": "0660"})
    st = os.stat(daemon.socket_path)
    assert stat.S_IMODE(st.st_mode) == 0o660 and (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())
    # 0660 root:root: a mapped portal that is neither owner nor in the group cannot even connect.
    with pytest.raises(AssertionError, match="Permission denied|PermissionError"):
        calls_as(NOBODY, groups["portal"][1], daemon.socket_path, [])
