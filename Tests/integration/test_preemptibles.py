"""Preemptible instances over the socket: backfill with a guaranteed lifetime, preemption when a
reservation needs the capacity (with notice, never before the guarantee), the hook that tells
Slurm, and what survives a SIGKILL between scheduling and executing a preemption."""

from __future__ import annotations

import os
import signal
import stat

from berthtest import DEFAULT_NOW, create_lease, events, hosts_of, lease_params, make_host, make_hosts, ts, wait_until

NOTICE = 600  # the default preemption.notice_s


def pre(rpc, vcpus=4, memory_mb=4096, disk_gb=20, **kw):
    return rpc.call("preemptible.create", {"project_id": kw.pop("project_id", "slurm"), "vcpus": vcpus,
                                           "memory_mb": memory_mb, "disk_gb": disk_gb, **kw})


def types(rpc, *prefixes):
    return [e["type"] for e in events(rpc) if e["type"].startswith(prefixes)]


def event_of(rpc, type_, preemptible_id):
    found = [e for e in events(rpc, types=[type_]) if e.get("preemptible_id") == preemptible_id]
    return found


# --- backfill ---------------------------------------------------------------------------------

def test_backfill_avoids_capacity_a_reservation_needs_within_the_min_lifetime(rpc):
    make_hosts(rpc, "h1", "h2")
    lease = create_lease(rpc, ts(0, minutes=30), ts(2), name="soon")
    busy = hosts_of(lease)[0]
    p = pre(rpc, min_lifetime_s=3600)
    assert p["host"] != busy
    assert p["status"] == "running"
    assert p["guaranteed_until"] == ts(1)
    assert p["preempt_at"] is None
    rpc.call("preemptible.delete", {"id": p["id"]})
    create_lease(rpc, ts(0, minutes=30), ts(2), name="soon-2")  # now both hosts are reserved from 00:30
    e = rpc.error("preemptible.create", {"project_id": "slurm", "vcpus": 4, "memory_mb": 4096, "disk_gb": 20,
                                         "min_lifetime_s": 3600}, -32002)
    assert e.reason == "no_capacity"
    # With a min lifetime that ends before the reservations start, a host is fine.
    short = pre(rpc, min_lifetime_s=1200)
    assert short["guaranteed_until"] == ts(0, minutes=20)


def test_backfill_prefers_the_host_whose_capacity_is_needed_latest(rpc):
    make_hosts(rpc, "h1", "h2", "h3")
    rpc.call("lease.create", lease_params(ts(5), ts(6), name="h1-at-5",
                                          reservations=[{"kind": "host", "count": 1, "properties": ["==", "$name", "h1"]}]))
    rpc.call("lease.create", lease_params(ts(9), ts(10), name="h2-at-9",
                                          reservations=[{"kind": "host", "count": 1, "properties": ["==", "$name", "h2"]}]))
    rpc.call("lease.create", lease_params(ts(7), ts(8), name="h3-at-7",
                                          reservations=[{"kind": "host", "count": 1, "properties": ["==", "$name", "h3"]}]))
    assert pre(rpc)["host"] == "h2"


def test_preemptibles_do_not_share_capacity_beyond_the_host(rpc):
    make_host(rpc, "h1", vcpus=8, memory_mb=16384, disk_gb=100)
    a = pre(rpc, vcpus=6, memory_mb=4096)
    assert a["host"] == "h1"
    e = rpc.error("preemptible.create", {"project_id": "slurm", "vcpus": 4, "memory_mb": 4096, "disk_gb": 20}, -32002)
    assert e.reason == "no_capacity"
    rpc.call("preemptible.delete", {"id": a["id"]})
    assert pre(rpc, vcpus=4)["host"] == "h1"


# --- the guarantee ------------------------------------------------------------------------------

def test_a_reservation_never_takes_capacity_before_the_guarantee(rpc):
    make_host(rpc, "h1")
    p = pre(rpc, min_lifetime_s=7200)
    e = rpc.error("lease.create", lease_params(ts(1), ts(3)), -32002)
    assert e.reason == "no_capacity"
    assert e.data["earliest_start"] == p["guaranteed_until"] == ts(2)
    # availability.find agrees: the first window starts when the guarantee ends.
    found = rpc.call("availability.find", {"reservations": [{"kind": "host", "count": 1}], "duration_s": 3600})
    assert found["items"][0]["start"] == ts(2)
    assert rpc.call("preemptible.get", {"id": p["id"]})["status"] == "running"


def test_a_placement_that_preempts_nobody_is_preferred(rpc):
    make_hosts(rpc, "h1", "h2")
    p = pre(rpc)
    lease = create_lease(rpc, ts(2), ts(3))
    assert hosts_of(lease) != [p["host"]]
    assert "preemption.scheduled" not in types(rpc, "preemption.")
    assert rpc.call("preemptible.get", {"id": p["id"]})["preempt_at"] is None


# --- whole scenario ----------------------------------------------------------------------------

def test_backfill_reservation_notice_preemption_start(rpc):
    make_hosts(rpc, "h1", "h2")
    watcher = rpc  # same connection is fine for events.list
    p = pre(rpc, min_lifetime_s=3600, slurm_node="node-7")
    other = pre(rpc, min_lifetime_s=3600)
    lease = create_lease(rpc, ts(3), ts(5), count=2, name="everything")
    assert sorted(hosts_of(lease)) == ["h1", "h2"]
    for x in (p, other):
        got = rpc.call("preemptible.get", {"id": x["id"]})
        assert got["status"] == "preempting"
        assert got["preempt_at"] == ts(2, minutes=50)  # start minus the notice
        assert got["needed_at"] == ts(3)
        assert got["needed_by_lease_id"] == lease["id"]
        assert rpc.call("preemptible.horizon", {"id": x["id"]}) == {"preempt_at": ts(2, minutes=50)}
    sched = event_of(watcher, "preemption.scheduled", p["id"])
    assert len(sched) == 1
    assert sched[0]["at"] == DEFAULT_NOW  # announced as soon as decided
    assert sched[0]["data"]["preempt_at"] == ts(2, minutes=50)
    assert sched[0]["data"]["slurm_node"] == "node-7"
    assert sched[0]["data"]["lease_id"] == lease["id"]
    assert rpc.call("preemptible.horizon", {"host": p["host"]}) == {"preempt_at": ts(2, minutes=50)}

    rpc.call("clock.set", {"now": ts(2, minutes=49, seconds=59)})
    assert rpc.call("preemptible.get", {"id": p["id"]})["status"] == "preempting"
    assert event_of(rpc, "preemption.executed", p["id"]) == []

    rpc.call("clock.set", {"now": ts(2, minutes=50)})
    got = rpc.call("preemptible.get", {"id": p["id"]})
    assert got["status"] == "preempted"
    assert got["ended_at"] == ts(2, minutes=50)
    done = event_of(rpc, "preemption.executed", p["id"])
    assert len(done) == 1 and done[0]["at"] == ts(2, minutes=50)
    assert done[0]["data"]["action"] == "delete"
    ended = event_of(rpc, "preemptible.ended", p["id"])
    assert ended[0]["data"]["reason"] == "preempted"
    # The adapter is told to preempt (delete, the default).
    actions = wait_until(lambda: [a for a in rpc.call("actions.list", {"status": "done"})["items"]
                                  if a["kind"] == "preemptible.preempt" and a["target"] == f"preemptible/{p['id']}"],
                         "the preempt action delivered")
    assert actions[0]["payload"]["mode"] == "delete"

    rpc.call("clock.set", {"now": ts(3)})
    assert rpc.call("lease.get", {"id": lease["id"]})["status"] == "active"
    order = [e["type"] for e in events(rpc) if e["type"] in ("preemption.executed", "lease.started")]
    assert order == ["preemption.executed", "preemption.executed", "lease.started"]
    # The capacity is back for backfill once the lease ends.
    rpc.call("clock.set", {"now": ts(5)})
    assert pre(rpc)["status"] == "running"


def test_preemption_waits_for_the_guarantee_even_when_notice_would_be_earlier(rpc):
    make_host(rpc, "h1")
    p = pre(rpc, min_lifetime_s=3600)
    # Needed at 01:05: the notice would preempt at 00:55, but the guarantee runs to 01:00.
    create_lease(rpc, ts(1, minutes=5), ts(2))
    assert rpc.call("preemptible.get", {"id": p["id"]})["preempt_at"] == ts(1)
    rpc.call("clock.set", {"now": ts(0, minutes=59, seconds=59)})
    assert rpc.call("preemptible.get", {"id": p["id"]})["status"] == "preempting"
    rpc.call("clock.set", {"now": ts(1)})
    assert rpc.call("preemptible.get", {"id": p["id"]})["status"] == "preempted"


def test_a_lease_moved_earlier_moves_the_preemption_earlier(rpc):
    make_host(rpc, "h1")
    p = pre(rpc, min_lifetime_s=3600)
    lease = create_lease(rpc, ts(5), ts(6))
    assert rpc.call("preemptible.get", {"id": p["id"]})["preempt_at"] == ts(4, minutes=50)
    rpc.call("lease.update", {"id": lease["id"], "start": ts(3)})
    assert rpc.call("preemptible.get", {"id": p["id"]})["preempt_at"] == ts(2, minutes=50)
    scheduled = event_of(rpc, "preemption.scheduled", p["id"])
    assert [e["data"]["preempt_at"] for e in scheduled] == [ts(4, minutes=50), ts(2, minutes=50)]
    # A dry run plans, but schedules nothing.
    rpc.call("lease.update", {"id": lease["id"], "start": ts(2), "dry_run": True})
    assert len(event_of(rpc, "preemption.scheduled", p["id"])) == 2


def test_fewest_victims_then_least_work_lost(rpc):
    make_host(rpc, "h1", vcpus=32, memory_mb=65536, disk_gb=500)
    big = pre(rpc, vcpus=16, memory_mb=8192)
    small_old = pre(rpc, vcpus=8, memory_mb=8192)
    rpc.call("clock.advance", {"seconds": 600})
    small_new = pre(rpc, vcpus=8, memory_mb=8192)
    # 16 vcpus needed: one preemption (big) beats two (both small ones).
    create_lease(rpc, ts(3), ts(4), reservations=[{"kind": "instance", "vcpus": 16, "memory_mb": 8192,
                                                    "disk_gb": 10, "count": 1}])
    status = {x["id"]: rpc.call("preemptible.get", {"id": x["id"]})["status"] for x in (big, small_old, small_new)}
    assert status == {big["id"]: "preempting", small_old["id"]: "running", small_new["id"]: "running"}
    # 8 more vcpus needed: one of the small ones, the one that has run least (the newest).
    create_lease(rpc, ts(3), ts(4), reservations=[{"kind": "instance", "vcpus": 8, "memory_mb": 8192,
                                                    "disk_gb": 10, "count": 1}])
    assert rpc.call("preemptible.get", {"id": small_new["id"]})["status"] == "preempting"
    assert rpc.call("preemptible.get", {"id": small_old["id"]})["status"] == "running"


def test_a_new_preemptible_in_the_way_is_the_one_preempted(rpc):
    make_host(rpc, "h1", vcpus=32, memory_mb=65536, disk_gb=500)
    create_lease(rpc, ts(3), ts(4), reservations=[{"kind": "instance", "vcpus": 16, "memory_mb": 8192,
                                                    "disk_gb": 10, "count": 1}])
    old = pre(rpc, vcpus=8)
    rpc.call("clock.advance", {"seconds": 600})
    # Fits for its hour, but at 03:00 the reservation and both preemptibles exceed the host. By
    # work lost alone the old one (8 vcpus × 170 min < 12 × 160) would go; the newcomer goes instead.
    new = pre(rpc, vcpus=12)
    assert new["status"] == "preempting" and new["preempt_at"] == ts(2, minutes=50)
    assert rpc.call("preemptible.get", {"id": old["id"]})["status"] == "running"


def test_gpu_slice_preemptible(rpc):
    make_host(rpc, "g1", vcpus=64, memory_mb=262144, disk_gb=960, gpus=[{"model": "A100-40GB"}])
    p = pre(rpc, gpu_profile="3g.20gb", min_lifetime_s=1800)
    assert p["host"] == "g1" and p["gpu"] == 0 and p["slot"] in (0, 4)
    cal = rpc.call("calendar.get", {"from": ts(0), "to": ts(1)})["hosts"][0]["allocations"]
    mine = [a for a in cal if a.get("preemptible_id") == p["id"]]
    assert len(mine) == 1 and mine[0]["kind"] == "preemptible" and mine[0]["end"] is None
    assert mine[0]["profile"] == "3g.20gb" and mine[0]["slot"] == p["slot"]
    # A whole-GPU reservation later needs the slice.
    lease = create_lease(rpc, ts(2), ts(3), reservations=[{"kind": "gpu", "profile": "7g.40gb", "count": 1}])
    got = rpc.call("preemptible.get", {"id": p["id"]})
    assert got["status"] == "preempting" and got["needed_by_lease_id"] == lease["id"]
    # A slice that leaves the preemptible's alone preempts nothing.
    p2 = pre(rpc, gpu_profile="1g.5gb", min_lifetime_s=600)
    assert p2["gpu"] == 0


# --- crash between scheduling and execution --------------------------------------------------

def test_sigkill_between_scheduling_and_executing_a_preemption(daemon):
    daemon.start()
    rpc = daemon.client()
    make_hosts(rpc, "h1")
    p = pre(rpc, slurm_node="node-1")
    lease = create_lease(rpc, ts(3), ts(4))
    before = rpc.call("preemptible.get", {"id": p["id"]})
    assert before["status"] == "preempting"
    assert daemon.kill() == -signal.SIGKILL
    daemon.restart(now=None)
    rpc = daemon.client()
    assert rpc.call("preemptible.get", {"id": p["id"]}) == before
    assert rpc.call("preemptible.list", {"status": "preempting"})["items"] == [before]
    # The guarantee survived too: nothing can take the capacity before it ends.
    assert rpc.error("lease.create", lease_params(ts(0, minutes=30), ts(0, minutes=50)), -32002).reason == "no_capacity"
    # Kill again with the preemption already due: the restart catches it up, once, before the start.
    rpc.call("clock.set", {"now": ts(2)})
    assert daemon.kill() == -signal.SIGKILL
    daemon.restart(now=ts(3, minutes=1))
    rpc = daemon.client()
    assert rpc.call("preemptible.get", {"id": p["id"]})["status"] == "preempted"
    assert rpc.call("lease.get", {"id": lease["id"]})["status"] == "active"
    order = [e["type"] for e in events(rpc) if e["type"] in ("preemption.executed", "lease.started")]
    assert order == ["preemption.executed", "lease.started"]
    assert len(event_of(rpc, "preemption.executed", p["id"])) == 1
    wait_until(lambda: any(a["kind"] == "preemptible.preempt" and a["status"] == "done"
                           for a in rpc.call("actions.list")["items"]), "preempt action delivered after restart")


# --- the hook ----------------------------------------------------------------------------------

def write_script(path, body):
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def test_hook_runs_with_the_event_and_is_retried_until_it_succeeds(daemon, tmp_path):
    log = tmp_path / "hook.log"
    gate = tmp_path / "gate"
    hook = write_script(tmp_path / "hook.sh", f"""
echo "$1 $BERTH_EVENT $BERTH_PREEMPTIBLE_ID $BERTH_SLURM_NODE $BERTH_PREEMPT_AT $BERTH_NEEDED_AT $BERTH_LEASE_ID" >> {log}
if [ ! -e {gate} ]; then echo "slurmctld unreachable" >&2; exit 3; fi
""")
    daemon.start(config={"preemption": {"hook": [hook], "notice_s": 900}})
    rpc = daemon.client()
    make_hosts(rpc, "h1")
    p = pre(rpc, slurm_node="node-3")
    lease = create_lease(rpc, ts(3), ts(4))

    def hook_action():
        items = [a for a in rpc.call("actions.list")["items"] if a["kind"] == "hook.preemption"]
        return items[0] if items and items[0]["attempts"] >= 1 and items[0]["status"] == "pending" else None

    failed = wait_until(hook_action, "a failed hook run recorded")
    assert "status 3" in failed["last_error"] and "slurmctld unreachable" in failed["last_error"]
    assert rpc.call("system.health")["status"] == "ok"  # the daemon keeps serving
    first = log.read_text().splitlines()[0].split()
    assert first == ["preemption.scheduled", "preemption.scheduled", p["id"], "node-3", ts(2, minutes=45), ts(3),
                     lease["id"]]
    gate.touch()
    rpc.call("clock.advance", {"seconds": 600})  # past the retry's backoff (manual clock)
    wait_until(lambda: [a for a in rpc.call("actions.list")["items"]
                        if a["kind"] == "hook.preemption" and a["status"] == "done"], "hook run succeeded")
    rpc.call("clock.set", {"now": ts(2, minutes=45)})
    wait_until(lambda: "preemption.executed" in log.read_text(), "hook told of the execution")


def test_missing_hook_fails_visibly_and_the_daemon_keeps_serving(daemon, tmp_path):
    missing = str(tmp_path / "no-such-hook")
    daemon.start(config={"preemption": {"hook": missing}})
    assert "preemption hook is missing" in daemon.log_text()
    rpc = daemon.client()
    make_hosts(rpc, "h1")
    pre(rpc)
    create_lease(rpc, ts(3), ts(4))
    run = wait_until(lambda: [a for a in rpc.call("actions.list")["items"]
                              if a["kind"] == "hook.preemption" and a["attempts"] >= 1 and a["last_error"]],
                     "hook failure recorded")
    assert "missing or not executable" in run[0]["last_error"] and missing in run[0]["last_error"]
    assert rpc.call("system.health")["status"] == "ok"


def test_hook_config_errors_are_reported(daemon, tmp_path):
    daemon.start(config={"preemption": {"hook": "relative/hook", "notice_s": -1, "surprise": 1}}, wait_ready=False)
    assert daemon.wait_exit() != 0
    text = daemon.log_text()
    assert "preemption.hook" in text and "absolute path" in text
    assert "preemption.notice_s" in text and "preemption.surprise" in text


def test_shelve_mode_reaches_the_adapter(daemon):
    daemon.start(config={"preemption": {"action": "shelve", "notice_s": 0}})
    rpc = daemon.client()
    make_hosts(rpc, "h1")
    p = pre(rpc)
    create_lease(rpc, ts(2), ts(3))
    assert rpc.call("preemptible.get", {"id": p["id"]})["preempt_at"] == ts(2)
    rpc.call("clock.set", {"now": ts(2)})
    acts = wait_until(lambda: [a for a in rpc.call("actions.list")["items"] if a["kind"] == "preemptible.preempt"],
                      "preempt action")
    assert acts[0]["payload"]["mode"] == "shelve"


# --- bad input ---------------------------------------------------------------------------------

def test_bad_input(daemon):
    daemon.start(config={"preemption": {"max_min_lifetime_s": 86400, "default_min_lifetime_s": 3600}})
    rpc = daemon.client()
    make_host(rpc, "h1", vcpus=16, memory_mb=32768, disk_gb=100)
    e = rpc.error("preemptible.create", {"project_id": "p", "vcpus": 64, "memory_mb": 1024, "disk_gb": 1}, -32002)
    assert e.reason == "no_capacity" and "16" not in e.data.get("earliest_start", "")
    assert "no schedulable host" in e.message
    e = rpc.error("preemptible.create", {"project_id": "p", "vcpus": 1, "memory_mb": 1024, "disk_gb": 1,
                                         "min_lifetime_s": 86401}, -32008)
    assert e.reason == "policy_violation" and e.data["rule"] == "max_min_lifetime"
    e = rpc.error("preemptible.create", {"project_id": "p", "vcpus": 1, "memory_mb": 1024, "disk_gb": 1,
                                         "gpu_profile": "9g.99gb"}, -32602)
    assert "gpu_profile" in e.error_paths
    e = rpc.error("preemptible.create", {"project_id": "p", "vcpus": 0, "memory_mb": -1, "disk_gb": 1,
                                         "server": "nope", "colour": "red"}, -32602)
    assert {"vcpus", "memory_mb", "server", "colour"} <= set(e.error_paths)
    e = rpc.error("preemptible.create", {"project_id": "p", "vcpus": 1, "memory_mb": 1024, "disk_gb": 1,
                                         "gpu_profile": "1g.5gb"}, -32002)
    assert "GPU" in e.message
    assert rpc.error("preemptible.horizon", {"id": "00000000-0000-0000-0000-000000000000"}, -32001).reason == "not_found"
    assert rpc.error("preemptible.horizon", {"host": "nope"}, -32001).reason == "not_found"
    rpc.error("preemptible.horizon", {}, -32602)
    rpc.error("preemptible.horizon", {"host": "h1", "id": "x"}, -32602)
    assert rpc.error("preemptible.get", {"id": "nope"}, -32001).reason == "not_found"
    p = pre(rpc, vcpus=1, memory_mb=1024, disk_gb=1, slurm_node="n1")
    e = rpc.error("preemptible.create", {"project_id": "p", "vcpus": 1, "memory_mb": 1024, "disk_gb": 1,
                                         "slurm_node": "n1"}, -32005)
    assert e.data["preemptible_id"] == p["id"]
    assert rpc.call("preemptible.delete", {"id": p["id"]})["status"] == "ended"
    assert rpc.error("preemptible.delete", {"id": p["id"]}, -32005).reason == "conflict"
    # The node can be backed again once its preemptible ended.
    assert pre(rpc, vcpus=1, memory_mb=1024, disk_gb=1, slurm_node="n1")["slurm_node"] == "n1"
    e = rpc.error("preemptible.create", {"project_id": "p", "vcpus": 1, "memory_mb": 1024, "disk_gb": 1,
                                         "slurm_node": "n[1-3] x"}, -32602)
    assert e.error_paths == ["slurm_node"]
    rpc.error("preemptible.list", {"status": "sleeping"}, -32602)
    rpc.error("preemptible.list", {"cursor": "garbage"}, -32602)
    # A host holding a running preemptible cannot be deleted.
    e = rpc.error("host.delete", {"name": "h1"}, -32005)
    assert "preemptible" in e.message and e.data["preemptible_ids"]


def test_list_filters_and_pages(rpc):
    make_hosts(rpc, "h1", "h2")
    made = [pre(rpc, vcpus=1, memory_mb=512, disk_gb=1, project_id=f"p{i % 2}") for i in range(7)]
    page = rpc.call("preemptible.list", {"limit": 3})
    seen = list(page["items"])
    while page["next_cursor"]:
        page = rpc.call("preemptible.list", {"limit": 3, "cursor": page["next_cursor"]})
        seen += page["items"]
    assert len(seen) == len(made) and {p["id"] for p in seen} == {p["id"] for p in made}
    assert {p["id"] for p in rpc.call("preemptible.list", {"project_id": "p1"})["items"]} == \
        {p["id"] for p in made if p["project_id"] == "p1"}
    h = made[0]["host"]
    assert all(p["host"] == h for p in rpc.call("preemptible.list", {"host": h})["items"])


def test_idempotent_create_and_delete(rpc):
    make_hosts(rpc, "h1")
    params = {"project_id": "p", "vcpus": 1, "memory_mb": 512, "disk_gb": 1, "idempotency_key": "resume-node-1"}
    a = rpc.call("preemptible.create", params)
    assert rpc.call("preemptible.create", params) == a
    assert len(rpc.call("preemptible.list")["items"]) == 1
    d = {"id": a["id"], "idempotency_key": "suspend-node-1"}
    first = rpc.call("preemptible.delete", d)
    assert rpc.call("preemptible.delete", d) == first


def test_berthctl_preemptible_commands(berthd, rpc):
    import json

    from test_berthctl import ctl as berthctl
    make_hosts(rpc, "h1")

    def ctl(*args):
        return berthctl(berthd.socket_path, "--json", *args)

    out = ctl("preemptible", "create", "--project", "p", "--vcpus", "2", "--memory-mb", "1024", "--disk-gb", "5",
              "--min-lifetime", "30m", "--slurm-node", "n9")
    assert out.returncode == 0, out.stderr
    p = json.loads(out.stdout)
    assert p["guaranteed_until"] == ts(0, minutes=30)
    listed = json.loads(ctl("preemptible", "list", "--status", "running").stdout)
    assert [x["id"] for x in listed["items"]] == [p["id"]]
    assert json.loads(ctl("preemptible", "horizon", "--id", p["id"]).stdout) == {"preempt_at": None}
    bad = ctl("preemptible", "create", "--project", "p", "--vcpus", "999", "--memory-mb", "1", "--disk-gb", "1")
    assert bad.returncode != 0 and "no_capacity" in (bad.stderr + bad.stdout)
    assert json.loads(ctl("preemptible", "delete", p["id"]).stdout)["status"] == "ended"
