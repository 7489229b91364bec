"""berthctl against the real daemon: a few smoke tests of the operator's command line."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from berthtest import BERTHCTL, ts


def ctl(socket_path: str | None, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    if not os.access(BERTHCTL, os.X_OK):
        pytest.fail(f"berthctl binary not found at {BERTHCTL}: run `swift build` or set BERTHCTL")
    cmd = [BERTHCTL] + (["--socket", socket_path] if socket_path else []) + list(args)
    run_env = {k: v for k, v in os.environ.items() if k != "BERTH_SOCKET"}
    run_env.update(env or {})
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=run_env, stdin=subprocess.DEVNULL)


def ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def test_host_create_and_list(berthd):
    s = berthd.socket_path
    out = ok(ctl(s, "host", "create", "node-1", "--vcpus", "8", "--memory-mb", "16384", "--disk-gb", "100",
                 "--property", "rack=r1", "--gpu", "2xA100-40GB")).stdout
    assert "node-1" in out
    ok(ctl(s, "host", "create", "node-2", "--vcpus", "4", "--memory-mb", "8192", "--disk-gb", "50"))
    host = berthd.client().call("host.get", {"name": "node-1"})
    assert (host["vcpus"], host["memory_mb"], host["disk_gb"]) == (8, 16384, 100)
    assert host["properties"] == {"rack": "r1"}
    assert host["gpus"] == [{"model": "A100-40GB"}, {"model": "A100-40GB"}]

    table = ok(ctl(s, "host", "list")).stdout.splitlines()
    header = table[0].split()
    assert header[:2] == ["NAME", "STATE"] and "VCPUS" in header
    rows = {line.split()[0]: line.split() for line in table[1:] if line.strip()}
    assert set(rows) == {"node-1", "node-2"}
    assert rows["node-1"][header.index("STATE")] == "up"
    assert rows["node-2"][header.index("VCPUS")] == "4"

    listed = json.loads(ok(ctl(s, "host", "list", "--json")).stdout)
    assert [h["name"] for h in listed["items"]] == ["node-1", "node-2"]


def test_lease_create_json(berthd):
    s = berthd.socket_path
    rpc = berthd.client()
    rpc.call("host.create", {"name": "h1", "vcpus": 8, "memory_mb": 1024, "disk_gb": 10})
    p = ok(ctl(s, "lease", "create", "--name", "train", "--project", "proj-a", "--start", ts(1), "--end", ts(3),
               "--hosts", "1", "--json"))
    lease = json.loads(p.stdout)
    assert lease["name"] == "train" and lease["status"] == "pending"
    assert (lease["start"], lease["end"]) == (ts(1), ts(3))
    assert lease["reservations"][0]["allocations"] == [{"host": "h1"}]
    assert rpc.call("lease.get", {"id": lease["id"]}) == lease
    # --duration is measured from the daemon's (manual) clock for --start now.
    p = ok(ctl(s, "lease", "create", "--name", "now", "--project", "proj-a", "--start", "now", "--duration", "30m",
               "--hosts", "1", "--json"))
    lease2 = json.loads(p.stdout)
    assert (lease2["start"], lease2["end"]) == (ts(0), ts(0, minutes=30))


def test_error_reply_prints_error_and_exits_1(berthd):
    p = ctl(berthd.socket_path, "host", "get", "no-such-host")
    assert p.returncode == 1, p
    assert p.stderr.startswith("error:"), p.stderr
    assert "no-such-host" in p.stderr
    p = ctl(berthd.socket_path, "lease", "create", "--name", "x", "--project", "p", "--start", ts(2),
            "--end", ts(1), "--hosts", "1")
    assert p.returncode == 1 and p.stderr.startswith("error:")
    assert "end" in p.stderr
    assert berthd.client().call("lease.list")["items"] == []


def test_usage_error_exits_2(berthd):
    p = ctl(berthd.socket_path, "host", "create", "x")  # --vcpus and friends missing
    assert p.returncode == 2, p


def test_daemon_not_running_exits_3(tmp_path):
    p = ctl(str(tmp_path / "nothing-here.sock"), "host", "list")
    assert p.returncode == 3, p
    assert p.stderr.startswith("error:")


def test_daemon_stopped_exits_3(berthd):
    s = berthd.socket_path
    ok(ctl(s, "host", "list"))
    assert berthd.terminate() == 0
    assert ctl(s, "host", "list").returncode == 3


def test_socket_from_environment(berthd):
    p = ok(ctl(None, "clock", "now", "--json", env={"BERTH_SOCKET": berthd.socket_path}))
    assert ts(0) in p.stdout
