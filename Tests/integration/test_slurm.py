"""Berth and a real Slurm: contrib/slurm/ against a real slurmctld (and the real berthd).

One throwaway Slurm cluster per module (Tests/slurm/slurm-env.sh: its own munged and slurmctld,
CLOUD nodes berth-n[1-32] in partition `preempt`, TZ=UTC). Each test takes fresh node names, so
tests do not see each other's reservations or node states.

1. The preemption hook, run as berthd would run it, against slurmctld: the MAINT reservation
   (start, end, node, flags), idempotent re-runs, re-scheduling earlier, the DOWN node, no-ops and
   failures.
2. ResumeProgram/SuspendProgram against a real berthd and slurmctld, run directly and through
   Slurm's own power saving (a job submitted to a powered-down node).
3. End to end: berthd with the hook configured plans a preemption, runs the hook through its outbox,
   and Slurm holds the node from the preemption time; at the preemption the node goes DOWN.

When slurmctld is not installed the module is skipped with a loud warning, unless
BERTH_REQUIRE_SLURM=1 (as in CI), which turns that into a failure.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path

import pytest

from berthtest import BERTHCTL, REPO, events, fmt_ts, make_hosts, parse_ts, wait_until

CONTRIB = REPO / "contrib" / "slurm"
HOOK = CONTRIB / "berth-slurm-hook"
RESUME = CONTRIB / "berth-resume"
SUSPEND = CONTRIB / "berth-suspend"
PROLOG = CONTRIB / "berth-prolog"
SLURM_ENV = REPO / "Tests" / "slurm" / "slurm-env.sh"
NODE_COUNT = 32
NODE_CPUS, NODE_MEMORY_MB, NODE_TMPDISK_MB = 4, 8000, 20000
PROJECT = "slurm-proj"


def _find(tool: str) -> str | None:
    return shutil.which(tool) or next((p for p in (f"/usr/sbin/{tool}", f"/usr/bin/{tool}") if os.access(p, os.X_OK)),
                                      None)


def _missing() -> str | None:
    missing = [t for t in ("slurmctld", "scontrol", "sbatch", "munged", "munge") if _find(t) is None]
    if missing:
        return (f"Slurm is not installed ({', '.join(missing)} not found): the real-Slurm tests did NOT run. "
                "Install with `apt-get install -y slurm-wlm munge` (CI does, and sets BERTH_REQUIRE_SLURM=1).")
    if os.geteuid() != 0:
        return "the real-Slurm tests need root (they start munged and slurmctld): they did NOT run."
    return None


def _skip_or_fail(reason: str) -> None:
    if os.environ.get("BERTH_REQUIRE_SLURM") == "1":
        pytest.fail(f"BERTH_REQUIRE_SLURM=1 but {reason}", pytrace=False)
    banner = "!" * 78
    print(f"\n{banner}\nWARNING: {reason}\n{banner}", file=sys.__stderr__, flush=True)
    warnings.warn(reason)
    pytest.skip(reason)


# ------------------------------------------------------------------------------------------------
# The cluster
# ------------------------------------------------------------------------------------------------

class SlurmCluster:
    def __init__(self, root: Path, env: dict[str, str]):
        self.root = root
        self.env = env
        self.conf = Path(env["SLURM_CONF"])
        self._nodes = itertools.count(1)

    def take_node(self) -> str:
        n = next(self._nodes)
        assert n <= NODE_COUNT, f"more than {NODE_COUNT} nodes taken: raise SLURM_ENV_NODES in this module"
        return f"berth-n{n}"

    def run(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        p = subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {p.returncode}: {p.stderr.strip()} {p.stdout.strip()}")
        return p

    def scontrol(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(_find("scontrol"), *args, check=check)

    def reservation(self, name: str) -> dict[str, str] | None:
        p = self.scontrol("show", "-o", "reservation", name, check=False)
        if p.returncode != 0:
            assert "not found" in (p.stdout + p.stderr).lower(), p.stderr
            return None
        return kv(p.stdout.splitlines()[0])

    def node(self, node: str) -> dict[str, str]:
        return kv(self.scontrol("show", "-o", "node", node).stdout.splitlines()[0])

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join((self.root / "log" / "slurmctld.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no slurmctld log)"


def kv(line: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for m in re.finditer(r"(\w+)=(\S*)", line):
        out.setdefault(m.group(1), m.group(2))
    reason = re.search(r"\bReason=(.*?)(?=\s+\w+=|$)", line)
    if reason:
        out["Reason"] = reason.group(1)
    return out


@pytest.fixture(scope="module")
def slurm():
    reason = _missing()
    if reason:
        _skip_or_fail(reason)
    # Short path: munged's socket lives in it.
    root = Path(tempfile.mkdtemp(prefix="berth-slurm-", dir="/tmp"))
    env_vars = dict(os.environ, SLURM_ENV_NODES=str(NODE_COUNT), SLURM_ENV_CPUS=str(NODE_CPUS),
                    SLURM_ENV_MEMORY_MB=str(NODE_MEMORY_MB), SLURM_ENV_TMPDISK_MB=str(NODE_TMPDISK_MB))
    started = time.monotonic()
    p = subprocess.run(["bash", str(SLURM_ENV), "start", str(root)], env=env_vars, capture_output=True, text=True,
                       timeout=120)
    if p.returncode != 0:
        subprocess.run(["bash", str(SLURM_ENV), "stop", str(root)], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"slurm-env.sh start failed ({p.returncode}):\n{p.stderr}\n{p.stdout}", pytrace=False)
    env = dict(os.environ)
    env.pop("BERTH_SOCKET", None)
    for line in p.stdout.splitlines():
        m = re.fullmatch(r"export (\w+)=(.*)", line.strip())
        if m:
            env[m.group(1)] = m.group(2)
    env["PATH"] = env.get("PATH", "") + ":/usr/sbin:/sbin"
    cluster = SlurmCluster(root, env)
    print(f"slurmctld up in {time.monotonic() - started:.1f} s ({cluster.conf})")
    try:
        yield cluster
    finally:
        subprocess.run(["bash", str(SLURM_ENV), "stop", str(root)], capture_output=True, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


def script_env(slurm: SlurmCluster, **extra: str) -> dict[str, str]:
    """The environment of a hook/resume/suspend run: the cluster's, no config file unless given,
    no syslog."""
    env = dict(slurm.env)
    env.update(BERTH_SLURM_CONFIG=os.devnull, BERTH_SLURM_SYSLOG="0", BERTHCTL=BERTHCTL)
    env.update({k: v for k, v in extra.items() if v is not None})
    return env


def run_script(script: Path, args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=timeout)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def slurm_ts(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def rfc(t: dt.datetime) -> str:
    return fmt_ts(t)


def resv_name(preemptible_id: str) -> str:
    return "berth-" + preemptible_id[:8]


def hook_env(slurm: SlurmCluster, node: str, pid: str, preempt_at: dt.datetime | None,
             needed_until: dt.datetime | None, event: str = "preemption.scheduled", **extra: str) -> dict[str, str]:
    lease_id = str(uuid.uuid4())
    e = {
        "BERTH_EVENT": event, "BERTH_PREEMPTIBLE_ID": pid, "BERTH_HOST": "compute-01", "BERTH_SLURM_NODE": node,
        "BERTH_PROJECT_ID": PROJECT, "BERTH_PREEMPT_AT": rfc(preempt_at) if preempt_at else "",
        "BERTH_NEEDED_AT": rfc(preempt_at + dt.timedelta(minutes=10)) if preempt_at else "",
        "BERTH_NEEDED_UNTIL": rfc(needed_until) if needed_until else "", "BERTH_LEASE_ID": lease_id,
    }
    e["BERTH_EVENT_JSON"] = json.dumps({"type": event, "preemptible_id": pid, "data": {}})
    e.update(extra)
    return script_env(slurm, **e)


def run_hook(slurm: SlurmCluster, event: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run_script(HOOK, [event], env)


def assert_ok(p: subprocess.CompletedProcess, what: str) -> None:
    assert p.returncode == 0, f"{what} exited {p.returncode}:\nstderr: {p.stderr}\nstdout: {p.stdout}"


# ------------------------------------------------------------------------------------------------
# 1. The preemption hook against slurmctld
# ------------------------------------------------------------------------------------------------

def test_scheduled_creates_maint_reservation_from_preempt_at(slurm):
    node = slurm.take_node()
    pid = str(uuid.uuid4())
    preempt_at = utcnow() + dt.timedelta(hours=1, minutes=50)
    needed_until = preempt_at + dt.timedelta(hours=2, minutes=10)
    # Whatever berthd's time zone, the hook gives scontrol UTC times with TZ=UTC.
    env = hook_env(slurm, node, pid, preempt_at, needed_until, TZ="Asia/Tokyo")
    p = run_hook(slurm, "preemption.scheduled", env)
    assert_ok(p, "hook")
    r = slurm.reservation(resv_name(pid))
    assert r is not None, f"no reservation {resv_name(pid)}; hook said: {p.stderr}"
    assert r["StartTime"] == slurm_ts(preempt_at)
    assert r["EndTime"] == slurm_ts(needed_until)
    assert r["Nodes"] == node
    flags = set(r["Flags"].split(","))
    assert {"MAINT", "IGNORE_JOBS"} <= flags, r["Flags"]
    assert r["Users"] == "root"
    assert r["State"] == "INACTIVE"
    assert resv_name(pid) in p.stderr  # the log line says what it did


def test_scheduled_is_idempotent(slurm):
    node = slurm.take_node()
    pid = str(uuid.uuid4())
    preempt_at = utcnow() + dt.timedelta(hours=3)
    env = hook_env(slurm, node, pid, preempt_at, preempt_at + dt.timedelta(hours=1))
    assert_ok(run_hook(slurm, "preemption.scheduled", env), "first run")
    first = slurm.reservation(resv_name(pid))
    for _ in range(2):
        p = run_hook(slurm, "preemption.scheduled", env)
        assert_ok(p, "re-run")
        assert "nothing to change" in p.stderr
    again = slurm.reservation(resv_name(pid))
    assert {k: again[k] for k in ("StartTime", "EndTime", "Nodes", "Flags")} == \
        {k: first[k] for k in ("StartTime", "EndTime", "Nodes", "Flags")}
    names = [kv(line)["ReservationName"] for line in slurm.scontrol("show", "-o", "reservation").stdout.splitlines()
             if f"Nodes={node} " in line]
    assert names == [resv_name(pid)], names


def test_rescheduled_earlier_moves_the_reservation_and_a_stale_retry_does_not_undo_it(slurm):
    node = slurm.take_node()
    pid = str(uuid.uuid4())
    first = utcnow() + dt.timedelta(hours=3)
    until = first + dt.timedelta(hours=2)
    assert_ok(run_hook(slurm, "preemption.scheduled", hook_env(slurm, node, pid, first, until)), "first")
    earlier = first - dt.timedelta(hours=1, minutes=15)
    later_end = until + dt.timedelta(hours=1)
    p = run_hook(slurm, "preemption.scheduled", hook_env(slurm, node, pid, earlier, later_end))
    assert_ok(p, "re-scheduled")
    r = slurm.reservation(resv_name(pid))
    assert (r["StartTime"], r["EndTime"]) == (slurm_ts(earlier), slurm_ts(later_end))
    # A late retry of the first event (outbox retries are independent) must not shorten the block.
    assert_ok(run_hook(slurm, "preemption.scheduled", hook_env(slurm, node, pid, first, until)), "stale retry")
    r = slurm.reservation(resv_name(pid))
    assert (r["StartTime"], r["EndTime"]) == (slurm_ts(earlier), slurm_ts(later_end))


def test_preempt_at_already_past_reserves_from_now(slurm):
    # A hook run that comes late (berthd was down, retries) still blocks the node at once: Slurm
    # refuses a StartTime more than a few minutes in the past.
    node = slurm.take_node()
    pid = str(uuid.uuid4())
    before = utcnow()
    preempt_at = before - dt.timedelta(minutes=30)
    until = before + dt.timedelta(hours=1)
    p = run_hook(slurm, "preemption.scheduled", hook_env(slurm, node, pid, preempt_at, until))
    assert_ok(p, "hook")
    r = slurm.reservation(resv_name(pid))
    start = parse_ts(r["StartTime"] + "Z")
    assert before - dt.timedelta(seconds=5) <= start <= utcnow() + dt.timedelta(seconds=5), r
    assert r["EndTime"] == slurm_ts(until)
    assert r["State"] == "ACTIVE"
    # An earlier re-schedule of an active reservation changes nothing and succeeds.
    assert_ok(run_hook(slurm, "preemption.scheduled",
                       hook_env(slurm, node, pid, preempt_at - dt.timedelta(minutes=5), until)), "re-run")


def test_scheduled_without_needed_until_uses_default_length(slurm):
    node = slurm.take_node()
    pid = str(uuid.uuid4())
    preempt_at = utcnow() + dt.timedelta(hours=2)
    # SCONTROL may carry leading words (e.g. "sudo -n /usr/bin/scontrol").
    env = hook_env(slurm, node, pid, preempt_at, None, BERTH_SLURM_RESV_DEFAULT_S="7200",
                   BERTH_SLURM_RESV_USERS="root,daemon", SCONTROL=f"/usr/bin/env {_find('scontrol')}")
    env["BERTH_EVENT_JSON"] = "{}"
    assert_ok(run_hook(slurm, "preemption.scheduled", env), "hook")
    r = slurm.reservation(resv_name(pid))
    assert r["EndTime"] == slurm_ts(preempt_at + dt.timedelta(hours=2))
    assert r["Users"] == "root,daemon"


def test_executed_sets_node_down_with_reason(slurm):
    node = slurm.take_node()
    pid = str(uuid.uuid4())
    env = hook_env(slurm, node, pid, utcnow(), utcnow() + dt.timedelta(hours=1), event="preemption.executed")
    for _ in range(2):  # idempotent
        p = run_hook(slurm, "preemption.executed", env)
        assert_ok(p, "hook")
    n = slurm.node(node)
    assert "DOWN" in n["State"].split("+"), n["State"]
    assert n["Reason"].startswith(f"berth: preempted (preemptible {pid[:8]}, lease {env['BERTH_LEASE_ID'][:8]})"), n
    assert "DOWN" not in slurm.node(slurm.take_node())["State"].split("+")  # other nodes untouched


def test_empty_slurm_node_is_a_noop(slurm):
    pid = str(uuid.uuid4())
    preempt_at = utcnow() + dt.timedelta(hours=1)
    for event in ("preemption.scheduled", "preemption.executed"):
        env = hook_env(slurm, "", pid, preempt_at, preempt_at + dt.timedelta(hours=1), event=event)
        # Even with no scontrol at all: nothing to tell Slurm.
        env["SCONTROL"] = "/nonexistent/scontrol"
        p = run_hook(slurm, event, env)
        assert_ok(p, f"hook {event}")
        assert "no slurm_node" in p.stderr
    assert slurm.reservation(resv_name(pid)) is None


def test_other_events_are_ignored(slurm):
    env = script_env(slurm, SCONTROL="/nonexistent/scontrol")
    p = run_script(HOOK, ["preemptible.created"], env)
    assert_ok(p, "hook")


def test_scontrol_failures_exit_nonzero_with_a_message(slurm):
    pid = str(uuid.uuid4())
    preempt_at = utcnow() + dt.timedelta(hours=1)
    until = preempt_at + dt.timedelta(hours=1)
    # A node Slurm does not know.
    p = run_hook(slurm, "preemption.scheduled", hook_env(slurm, "no-such-node", pid, preempt_at, until))
    assert p.returncode != 0
    assert "scontrol create reservation" in p.stderr and "no-such-node" in p.stderr, p.stderr
    p = run_hook(slurm, "preemption.executed",
                 hook_env(slurm, "no-such-node", pid, preempt_at, until, event="preemption.executed"))
    assert p.returncode != 0
    assert "State=DOWN failed" in p.stderr and "Invalid node name" in p.stderr, p.stderr
    # No scontrol.
    env = hook_env(slurm, slurm.take_node(), pid, preempt_at, until, SCONTROL="/nonexistent/scontrol")
    p = run_hook(slurm, "preemption.scheduled", env)
    assert p.returncode != 0
    assert "/nonexistent/scontrol" in p.stderr and "not found" in p.stderr, p.stderr
    # Slurm down (a config pointing at a port nothing listens on).
    bad = slurm.root / "unreachable.conf"
    text = slurm.conf.read_text()
    bad.write_text(re.sub(r"SlurmctldPort=\d+", "SlurmctldPort=1", text))
    env = hook_env(slurm, slurm.take_node(), pid, preempt_at, until, SLURM_CONF=str(bad),
                   BERTH_SLURM_COMMAND_TIMEOUT_S="2")
    p = run_hook(slurm, "preemption.scheduled", env)
    assert p.returncode != 0
    assert "scontrol" in p.stderr, p.stderr


def test_hook_without_slurm_admin_rights_fails_clearly(slurm):
    """berthd runs the hook as its own user (systemd: User=berth). Slurm lets only root, SlurmUser
    or AdminLevel=Admin users create reservations and set nodes DOWN (docs/slurm.md, privileges):
    without that, the hook fails with Slurm's reason, and berthd retries."""
    node = slurm.take_node()
    pid = str(uuid.uuid4())
    preempt_at = utcnow() + dt.timedelta(hours=1)
    env = hook_env(slurm, node, pid, preempt_at, preempt_at + dt.timedelta(hours=1))
    for event in ("preemption.scheduled", "preemption.executed"):
        p = subprocess.run([str(HOOK), event], env=dict(env, BERTH_EVENT=event), capture_output=True, text=True,
                           timeout=60, user=65534, group=65534, extra_groups=[])
        assert p.returncode == 1, (event, p.stderr)
        assert "AdminLevel=Admin" in p.stderr and "uid 65534" in p.stderr, p.stderr
    assert slurm.reservation(resv_name(pid)) is None
    assert "DOWN" not in slurm.node(node)["State"].split("+")


def test_bad_event_data_is_refused_clearly(slurm):
    node = slurm.take_node()
    pid = str(uuid.uuid4())
    env = hook_env(slurm, node, pid, None, None)
    p = run_hook(slurm, "preemption.scheduled", env)
    assert p.returncode == 2 and "BERTH_PREEMPT_AT is missing" in p.stderr, p.stderr
    env["BERTH_PREEMPT_AT"] = "tomorrow"
    p = run_hook(slurm, "preemption.scheduled", env)
    assert p.returncode == 2 and "not an RFC 3339 time" in p.stderr, p.stderr
    p = run_script(HOOK, [], script_env(slurm))
    assert p.returncode == 2 and "no event type" in p.stderr, p.stderr
    assert slurm.reservation(resv_name(pid)) is None


# ------------------------------------------------------------------------------------------------
# 2. ResumeProgram / SuspendProgram with a real berthd
# ------------------------------------------------------------------------------------------------

def start_berthd(daemon, hosts: int = 2, vcpus: int = 16, now: str | None = None, config: dict | None = None,
                 env: dict | None = None):
    kw = {} if now is None else {"now": now}
    daemon.start(config=config, env=env, **kw)
    rpc = daemon.client()
    make_hosts(rpc, *[f"h{i}" for i in range(1, hosts + 1)], vcpus=vcpus, memory_mb=65536, disk_gb=500)
    return rpc


def preemptibles(rpc, node: str | None = None) -> list[dict]:
    items = rpc.call("preemptible.list", {"limit": 1000})["items"]
    return [p for p in items if node is None or p.get("slurm_node") == node]


def live(rpc, node: str) -> list[dict]:
    return [p for p in preemptibles(rpc, node) if p["status"] in ("pending", "running", "preempting")]


def test_resume_and_suspend_through_berthctl(slurm, daemon):
    rpc = start_berthd(daemon)
    a, b = slurm.take_node(), slurm.take_node()
    na, nb = int(a.rsplit("n", 1)[1]), int(b.rsplit("n", 1)[1])
    env = script_env(slurm, BERTH_SOCKET=daemon.socket_path, BERTH_PROJECT_ID=PROJECT, BERTH_MIN_LIFETIME="1h")
    expr = f"berth-n[{na}-{nb}]"
    p = run_script(RESUME, [expr], env)
    assert_ok(p, "resume")
    made = {n: live(rpc, n) for n in (a, b)}
    for n, ps in made.items():
        assert len(ps) == 1, (n, ps, p.stderr)
        q = ps[0]
        assert (q["vcpus"], q["memory_mb"], q["disk_gb"]) == (NODE_CPUS, NODE_MEMORY_MB, -(-NODE_TMPDISK_MB // 1024))
        assert q["project_id"] == PROJECT and q["min_lifetime_s"] == 3600
    # Slurm may run ResumeProgram again for the same nodes (slurmctld restart): no second instance.
    assert_ok(run_script(RESUME, [expr], env), "resume again")
    # Two at once: whichever loses the race finds the other's instance (berthd refuses a second
    # live instance for one slurm_node).
    c = slurm.take_node()
    runs = [subprocess.Popen([str(RESUME), c], env=env, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [(r.wait(timeout=60), r.stderr.read()) for r in runs]
    assert all(code == 0 for code, _ in outs), outs
    assert len(live(rpc, c)) == 1, outs
    assert "DOWN" not in slurm.node(c)["State"].split("+")
    assert_ok(run_script(SUSPEND, [c], env), "suspend c")
    assert {n: [q["id"] for q in live(rpc, n)] for n in (a, b)} == {n: [ps[0]["id"]] for n, ps in made.items()}

    # A preemption was scheduled for a's instance: the hook made a MAINT reservation.
    pa = made[a][0]["id"]
    soon = utcnow() + dt.timedelta(hours=1)
    assert_ok(run_hook(slurm, "preemption.scheduled", hook_env(slurm, a, pa, soon, soon + dt.timedelta(hours=1))),
              "hook")
    assert slurm.reservation(resv_name(pa)) is not None
    p = run_script(SUSPEND, [a], env)
    assert_ok(p, "suspend")
    assert live(rpc, a) == []
    # The instance is gone, so its reservation would only keep the node from being resumed.
    assert slurm.reservation(resv_name(pa)) is None, p.stderr
    assert [q["status"] for q in preemptibles(rpc, a)] == ["ended"], preemptibles(rpc, a)
    assert [q["id"] for q in live(rpc, b)] == [made[b][0]["id"]]
    p = run_script(SUSPEND, [a], env)
    assert_ok(p, "suspend again")
    assert "no live preemptible" in p.stderr

    # Resumed again later: a new instance (not the ended one returned by an idempotency key).
    assert_ok(run_script(RESUME, [a], env), "resume after suspend")
    again = live(rpc, a)
    assert len(again) == 1 and again[0]["id"] != made[a][0]["id"], again
    assert_ok(run_script(SUSPEND, [expr], env), "suspend both")
    assert live(rpc, a) == [] and live(rpc, b) == []


def test_resume_size_overrides_and_server_template(slurm, daemon, tmp_path):
    rpc = start_berthd(daemon)
    node = slurm.take_node()
    template = tmp_path / "server.json"
    template.write_text('{"name": "@SLURM_NODE@", "flavor": "p.small", "metadata": {"slurm_node": "@SLURM_NODE@"}}')
    conf = tmp_path / "berth-slurm.conf"
    conf.write_text(f"# berth-slurm.conf\nBERTH_SOCKET={daemon.socket_path}\nBERTH_PROJECT_ID='{PROJECT}'\n"
                    f"BERTH_VCPUS=2\nexport BERTH_MEMORY_MB=4096\nBERTH_DISK_GB=10\n"
                    f"BERTH_SERVER_TEMPLATE={template}\n")
    env = script_env(slurm, BERTH_SLURM_CONFIG=str(conf))
    assert_ok(run_script(RESUME, [node], env), "resume")
    [q] = live(rpc, node)
    assert (q["vcpus"], q["memory_mb"], q["disk_gb"]) == (2, 4096, 10)
    actions = rpc.call("actions.list", {})["items"]
    start = [x for x in actions if x["kind"] == "preemptible.start" and x["payload"].get("preemptible_id") == q["id"]]
    assert start and start[0]["payload"]["server"] == {"name": node, "flavor": "p.small",
                                                       "metadata": {"slurm_node": node}}, start


def test_resume_without_capacity_sets_the_node_down(slurm, daemon):
    rpc = start_berthd(daemon, hosts=1, vcpus=2)  # smaller than a node (4 CPUs)
    node = slurm.take_node()
    env = script_env(slurm, BERTH_SOCKET=daemon.socket_path, BERTH_PROJECT_ID=PROJECT)
    p = run_script(RESUME, [node], env)
    assert p.returncode != 0
    assert "no_capacity" in p.stderr or "-32002" in p.stderr, p.stderr
    n = slurm.node(node)
    assert "DOWN" in n["State"].split("+"), n
    assert n["Reason"].startswith("berth: no capacity for a preemptible"), n
    assert preemptibles(rpc, node) == []


def test_resume_with_berthd_unreachable_sets_the_node_down(slurm, tmp_path):
    node = slurm.take_node()
    env = script_env(slurm, BERTH_SOCKET=str(tmp_path / "nothing.sock"), BERTH_PROJECT_ID=PROJECT)
    p = run_script(RESUME, [node], env)
    assert p.returncode != 0
    assert "berthd unreachable" in p.stderr, p.stderr
    n = slurm.node(node)
    assert "DOWN" in n["State"].split("+") and n["Reason"].startswith("berth:"), n


def test_resume_needs_a_project(slurm, daemon):
    daemon.start()
    node = slurm.take_node()
    p = run_script(RESUME, [node], script_env(slurm, BERTH_SOCKET=daemon.socket_path))
    assert p.returncode == 2 and "BERTH_PROJECT_ID is not set" in p.stderr, p.stderr
    p = run_script(SUSPEND, [], script_env(slurm, BERTH_SOCKET=daemon.socket_path))
    assert p.returncode == 2 and "usage" in p.stderr, p.stderr


def test_slurm_power_saving_drives_resume_and_suspend(slurm, daemon):
    """slurmctld itself runs contrib/slurm/berth-resume for a job on a powered-down node, and
    berth-suspend when the node is powered down; the scripts find socket and project in
    berth-slurm.conf next to slurm.conf (Slurm gives them almost no environment)."""
    rpc = start_berthd(daemon)
    node = slurm.take_node()
    conf = slurm.conf.parent / "berth-slurm.conf"
    conf.write_text(f"BERTH_SOCKET={daemon.socket_path}\nBERTH_PROJECT_ID={PROJECT}\nBERTHCTL={BERTHCTL}\n"
                    "BERTH_MIN_LIFETIME=3600\n")
    job = None
    try:
        p = slurm.run(_find("sbatch"), "--parsable", "-p", "preempt", "-w", node, "-t", "10", "-J", "berth-test",
                      "--wrap", "sleep 60")
        job = p.stdout.strip().split(";")[0]
        made = wait_until(lambda: live(rpc, node), f"slurmctld to run berth-resume for {node}", timeout=60,
                          interval=0.5)
        assert len(made) == 1 and made[0]["min_lifetime_s"] == 3600, made
        assert "POWERING_UP" in slurm.node(node)["State"], slurm.node(node)
        slurm.run(_find("scancel"), job)
        job = None
        slurm.scontrol("update", f"NodeName={node}", "State=POWER_DOWN_FORCE")
        wait_until(lambda: not live(rpc, node), f"slurmctld to run berth-suspend for {node}", timeout=60,
                   interval=0.5)
        assert [q["status"] for q in preemptibles(rpc, node)] == ["ended"]
    except AssertionError:
        print(slurm.log_tail())
        raise
    finally:
        if job:
            slurm.run(_find("scancel"), job, check=False)
        conf.unlink(missing_ok=True)


def test_prolog_refuses_a_job_that_would_run_into_the_preemption(slurm, daemon):
    """contrib/slurm/berth-prolog (PrologSlurmctld) asks preemptible.horizon: a job whose time
    limit reaches past the node's preemption must not start there."""
    node, other = slurm.take_node(), slurm.take_node()
    now = utcnow().replace(second=0)
    rpc = start_berthd(daemon, hosts=1, vcpus=16, now=rfc(now))
    pid = rpc.call("preemptible.create", {"project_id": PROJECT, "vcpus": 4, "memory_mb": 8000, "disk_gb": 20,
                                          "min_lifetime_s": 3600, "slurm_node": node})["id"]
    start = now + dt.timedelta(hours=2)
    rpc.call("lease.create", {"name": "r", "project_id": "proj-r", "start": rfc(start),
                              "end": rfc(start + dt.timedelta(hours=1)), "reservations": [{"kind": "host", "count": 1}]})
    preempt_at = parse_ts(rpc.call("preemptible.horizon", {"id": pid})["preempt_at"])
    assert preempt_at == start - dt.timedelta(seconds=600)
    env = script_env(slurm, BERTH_SOCKET=daemon.socket_path, BERTH_PROJECT_ID=PROJECT)
    jobs = []
    try:
        def job(minutes: int) -> str:
            p = slurm.run(_find("sbatch"), "--parsable", "--hold", "-p", "preempt", "-t", str(minutes), "--wrap", "true")
            jobs.append(p.stdout.strip().split(";")[0])
            return jobs[-1]

        fits = int((preempt_at - utcnow()).total_seconds() // 60) - 5
        p = run_script(PROLOG, [], dict(env, SLURM_JOB_ID=job(fits), SLURM_JOB_NODELIST=node))
        assert_ok(p, "prolog for a job that ends before the preemption")
        long_job = job(fits + 30)
        p = run_script(PROLOG, [], dict(env, SLURM_JOB_ID=long_job, SLURM_JOB_NODELIST=f"{node},{other}"))
        assert p.returncode == 1, p.stderr
        assert f"node {node} is preempted at {slurm_ts(preempt_at)}Z" in p.stderr and pid in p.stderr, p.stderr
        # Another node with no preemptible: no objection.
        p = run_script(PROLOG, [], dict(env, SLURM_JOB_ID=long_job, SLURM_JOB_NODELIST=other))
        assert_ok(p, "prolog on a node without a preemptible")
        # berthd unreachable: the MAINT reservation is the main guard; the job may start.
        p = run_script(PROLOG, [], dict(env, SLURM_JOB_ID=long_job, SLURM_JOB_NODELIST=node,
                                        BERTH_SOCKET="/nonexistent/berth.sock"))
        assert_ok(p, "prolog with berthd unreachable")
        assert "letting the job start" in p.stderr
    finally:
        for j in jobs:
            slurm.run(_find("scancel"), j, check=False)


# ------------------------------------------------------------------------------------------------
# 3. End to end: berthd plans a preemption, the hook tells Slurm in time
# ------------------------------------------------------------------------------------------------

def e2e_config(notice_s: int = 600) -> dict:
    return {"preemption": {"default_min_lifetime_s": 3600, "max_min_lifetime_s": 604800, "notice_s": notice_s,
                           "action": "delete", "hook": [str(HOOK)], "hook_timeout_s": 30}}


def hook_actions(rpc, pid: str, event: str) -> list[dict]:
    items = rpc.call("actions.list", {})["items"]
    return [a for a in items if a["kind"] == "hook.preemption" and a["payload"].get("preemptible_id") == pid
            and a["payload"].get("event") == event]


def wait_hook_done(rpc, pid: str, event: str, n: int = 1) -> list[dict]:
    def done():
        acts = hook_actions(rpc, pid, event)
        failed = [a for a in acts if a["status"] == "failed" or (a["attempts"] > 1 and a["last_error"])]
        assert not failed, f"hook run failed: {failed}"
        ok = [a for a in acts if a["status"] == "done"]
        return ok if len(ok) >= n else None
    return wait_until(done, f"{n} hook.preemption {event} action(s) for {pid} to be done", interval=0.2)


def berthd_env(slurm: SlurmCluster) -> dict[str, str]:
    return {"SLURM_CONF": slurm.env["SLURM_CONF"], "TZ": "UTC", "BERTH_SLURM_CONFIG": os.devnull,
            "BERTH_SLURM_SYSLOG": "0"}


def test_end_to_end_preemption_tells_slurm_in_time(slurm, daemon):
    node = slurm.take_node()
    # Manual clock at the real time (Slurm refuses reservations that start in the past).
    now = utcnow().replace(second=0)
    rpc = start_berthd(daemon, hosts=2, vcpus=16, now=rfc(now), config=e2e_config(), env=berthd_env(slurm))
    p = rpc.call("preemptible.create", {"project_id": PROJECT, "vcpus": 4, "memory_mb": 8000, "disk_gb": 20,
                                        "min_lifetime_s": 3600, "slurm_node": node})
    pid = p["id"]
    assert parse_ts(p["guaranteed_until"]) == now + dt.timedelta(hours=1)

    # A reservation for every host from now+2h: it needs the preemptible's host.
    start, end = now + dt.timedelta(hours=2), now + dt.timedelta(hours=4)
    lease = rpc.call("lease.create", {"name": "big", "project_id": "proj-r", "start": rfc(start), "end": rfc(end),
                                      "reservations": [{"kind": "host", "count": 2}]})
    sched = [e for e in events(rpc, types=["preemption.scheduled"]) if e.get("preemptible_id") == pid]
    assert len(sched) == 1, events(rpc)
    q = rpc.call("preemptible.get", {"id": pid})
    preempt_at = parse_ts(q["preempt_at"])
    assert preempt_at == start - dt.timedelta(seconds=600), q
    assert q["status"] == "preempting" and q["needed_by_lease_id"] == lease["id"], q

    # The hook ran through the outbox and Slurm holds the node from the preemption time.
    [action] = wait_hook_done(rpc, pid, "preemption.scheduled")
    assert action["payload"]["slurm_node"] == node
    r = slurm.reservation(resv_name(pid))
    assert r is not None, f"no Slurm reservation for {pid}"
    assert r["StartTime"] == slurm_ts(preempt_at), r
    assert r["EndTime"] == slurm_ts(end), r
    assert r["Nodes"] == node and {"MAINT", "IGNORE_JOBS"} <= set(r["Flags"].split(",")), r
    told_at = utcnow()
    assert told_at < preempt_at, "Slurm must be told before the preemption"

    # Slurm now starts no job on the node that would run into the preemption, and still starts one
    # that ends before it.
    left = int((preempt_at - utcnow()).total_seconds() // 60)
    short = slurm.run(_find("sbatch"), "--test-only", "-p", "preempt", "-w", node, "-t", str(left - 5),
                      "--wrap", "true", check=False)
    assert short.returncode == 0 and "to start at" in short.stderr, short.stderr
    long = slurm.run(_find("sbatch"), "--test-only", "-p", "preempt", "-w", node, "-t", str(left + 30),
                     "--wrap", "true", check=False)
    m = re.search(r"to start at (\S+)", long.stderr)
    if m:  # only after the reservation
        assert parse_ts(m.group(1) + "Z") >= end, long.stderr
    else:
        assert long.returncode != 0 and "not available" in long.stderr, long.stderr

    # The reservation moves earlier: the preemption is re-scheduled, the hook updates Slurm.
    earlier = start - dt.timedelta(minutes=20)
    rpc.call("lease.update", {"id": lease["id"], "start": rfc(earlier)})
    q2 = rpc.call("preemptible.get", {"id": pid})
    preempt_at2 = parse_ts(q2["preempt_at"])
    assert preempt_at2 == earlier - dt.timedelta(seconds=600), q2
    wait_hook_done(rpc, pid, "preemption.scheduled", n=2)
    r = slurm.reservation(resv_name(pid))
    assert r["StartTime"] == slurm_ts(preempt_at2), r

    # At the preemption: preemption.executed, and the node is DOWN with the reason.
    rpc.call("clock.set", {"now": rfc(preempt_at2)})
    ex = [e for e in events(rpc, types=["preemption.executed"]) if e.get("preemptible_id") == pid]
    assert len(ex) == 1, events(rpc)
    assert rpc.call("preemptible.get", {"id": pid})["status"] == "preempted"
    wait_hook_done(rpc, pid, "preemption.executed")
    n = slurm.node(node)
    assert "DOWN" in n["State"].split("+"), n
    assert n["Reason"].startswith(f"berth: preempted (preemptible {pid[:8]}, lease {lease['id'][:8]})"), n

    # And the reservation gets its hosts.
    rpc.call("clock.set", {"now": rfc(earlier)})
    assert rpc.call("lease.get", {"id": lease["id"]})["status"] == "active"


def test_end_to_end_hook_survives_sigkill_between_scheduling_and_execution(slurm, daemon):
    node = slurm.take_node()
    now = utcnow().replace(second=0)
    rpc = start_berthd(daemon, hosts=1, vcpus=16, now=rfc(now), config=e2e_config(), env=berthd_env(slurm))
    pid = rpc.call("preemptible.create", {"project_id": PROJECT, "vcpus": 4, "memory_mb": 8000, "disk_gb": 20,
                                          "min_lifetime_s": 3600, "slurm_node": node})["id"]
    start = now + dt.timedelta(hours=2)
    rpc.call("lease.create", {"name": "r", "project_id": "proj-r", "start": rfc(start),
                              "end": rfc(start + dt.timedelta(hours=1)), "reservations": [{"kind": "host", "count": 1}]})
    daemon.kill()  # perhaps before the hook ran: the action is durable and runs after the restart
    daemon.restart(now=None)
    rpc = daemon.client()
    wait_hook_done(rpc, pid, "preemption.scheduled")
    preempt_at = parse_ts(rpc.call("preemptible.get", {"id": pid})["preempt_at"])
    assert slurm.reservation(resv_name(pid))["StartTime"] == slurm_ts(preempt_at)
    daemon.kill()
    # Killed between scheduling and execution: the preemption still happens after the restart.
    daemon.restart(now=None)
    rpc = daemon.client()
    rpc.call("clock.set", {"now": rfc(preempt_at + dt.timedelta(seconds=1))})
    wait_hook_done(rpc, pid, "preemption.executed")
    assert "DOWN" in slurm.node(node)["State"].split("+")


def test_failing_hook_is_retried_and_never_blocks_the_daemon(slurm, daemon):
    now = utcnow().replace(second=0)
    rpc = start_berthd(daemon, hosts=1, vcpus=16, now=rfc(now), config=e2e_config(), env=berthd_env(slurm))
    pid = rpc.call("preemptible.create", {"project_id": PROJECT, "vcpus": 4, "memory_mb": 8000, "disk_gb": 20,
                                          "min_lifetime_s": 3600, "slurm_node": "not-a-slurm-node"})["id"]
    start = now + dt.timedelta(hours=2)
    rpc.call("lease.create", {"name": "r", "project_id": "proj-r", "start": rfc(start),
                              "end": rfc(start + dt.timedelta(hours=1)), "reservations": [{"kind": "host", "count": 1}]})

    def failed_once():
        acts = hook_actions(rpc, pid, "preemption.scheduled")
        return acts if acts and acts[0]["last_error"] else None

    [a] = wait_until(failed_once, "the hook's first failure", interval=0.2)
    assert "not-a-slurm-node" in a["last_error"] and "scontrol create reservation" in a["last_error"], a
    assert rpc.call("system.health")["status"] in ("ok", "degraded")
    # Retries follow the daemon's clock (backoff from 2 s): move it on and the hook runs again.
    rpc.call("clock.advance", {"seconds": 10})
    wait_until(lambda: hook_actions(rpc, pid, "preemption.scheduled")[0]["attempts"] >= 2, "a retry", interval=0.2)
    assert rpc.call("preemptible.get", {"id": pid})["status"] == "preempting"
