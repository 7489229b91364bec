"""systemd integration seen from outside: sd_notify READY/STATUS/STOPPING/WATCHDOG/RELOADING on the
test's own NOTIFY_SOCKET (exact datagrams), SIGHUP reload, graceful stop on SIGTERM with in-flight
requests answered, socket activation (by hand and with systemd-socket-activate)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import time

import pytest

from berthtest import (Berthd, ConnectionClosed, ProcessExited, RPCClient, lease_params, make_hosts, ts,
                       wait_until)


def test_ready_only_once_the_socket_accepts_connections(daemon):
    daemon.start(wait_ready=False)
    ready = daemon.wait_ready()
    # Connect the instant READY=1 has arrived: this must not be refused.
    c = RPCClient(daemon.socket_path)
    assert c.call("system.health")["status"] == "ok"
    c.close()
    assert "serving" in ready.get("STATUS", ""), ready
    msgs = daemon.notify.from_pid(daemon.pid)
    first_ready = next(i for i, f in enumerate(msgs) if f.get("READY") == "1")
    assert any("STATUS" in f for f in msgs[:first_ready]), f"no STATUS before READY: {msgs}"
    assert sum(1 for f in msgs if f.get("READY") == "1") == 1


def test_ready_status_reports_the_inventory(daemon):
    daemon.start()
    rpc = daemon.client()
    make_hosts(rpc, "h1", "h2")
    rpc.call("lease.create", lease_params(ts(1), ts(2)))
    daemon.restart(now=None)
    ready = daemon.notify.wait_for(daemon.pid, "READY", "1")
    assert "2 hosts" in ready["STATUS"] and "1 leases" in ready["STATUS"], ready


def test_no_ready_when_start_up_fails(daemon, tmp_path):
    with pytest.raises(ProcessExited):
        daemon.start(socket_path=str(tmp_path / "no-such-dir" / "berth.sock"))
    assert daemon.proc.returncode == 1
    assert not any(f.get("READY") == "1" for f in daemon.notify.from_pid(daemon.pid))
    assert "cannot listen" in daemon.log_text() or "cannot bind" in daemon.log_text()


def test_a_second_daemon_cannot_take_a_live_socket(berthd, tmp_path):
    other = Berthd(tmp_path / "second")
    try:
        (tmp_path / "second").mkdir()
        with pytest.raises(ProcessExited):
            other.start(socket_path=berthd.socket_path)
        assert other.proc.returncode != 0
        assert "already listening" in other.log_text()
    finally:
        other.cleanup()
    assert berthd.client().call("system.health")["status"] == "ok"


def test_sigterm_sends_stopping_and_exits_zero(berthd):
    c = berthd.client()
    assert c.call("clock.now")
    pid = berthd.pid
    assert berthd.terminate() == 0
    stopping = berthd.notify.wait_for(pid, "STOPPING", "1", timeout=5)
    assert "STATUS" in stopping
    assert not os.path.exists(berthd.socket_path), "the socket file must be removed on a clean stop"
    assert c.is_at_eof()
    assert "berthd stopped" in berthd.log_text()


@pytest.mark.parametrize("attempt", range(5))
def test_sigterm_right_after_ready_is_graceful(daemon, attempt):
    """systemd may stop the unit the moment it is started: SIGTERM must already be trapped at READY=1."""
    daemon.start()
    pid = daemon.pid
    os.kill(pid, signal.SIGTERM)
    assert daemon.wait_exit() == 0
    daemon.notify.wait_for(pid, "STOPPING", "1", timeout=5)


def test_sigint_stops_gracefully_too(berthd):
    pid = berthd.pid
    os.kill(pid, signal.SIGINT)
    assert berthd.wait_exit() == 0
    berthd.notify.wait_for(pid, "STOPPING", "1", timeout=5)


def test_watchdog_pings_when_enabled(daemon):
    daemon.start(env={"WATCHDOG_USEC": "400000"})
    # Pings every WATCHDOG_USEC/2; two of them prove it is a loop, not a one-off.
    daemon.notify.wait_for(daemon.pid, "WATCHDOG", "1", nth=2, timeout=30)
    assert daemon.client().call("system.health")["status"] == "ok"


def test_no_watchdog_pings_for_another_pid(daemon):
    daemon.start(env={"WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"})
    # Give the daemon a request round trip to have started everything, then check.
    rpc = daemon.client()
    make_hosts(rpc, "h1")
    assert not any("WATCHDOG" in f for f in daemon.notify.from_pid(daemon.pid))


def test_in_flight_request_is_answered_during_graceful_stop(daemon):
    daemon.start()
    rpc = daemon.client()
    make_hosts(rpc, *[f"h{i}" for i in range(4)])
    # Enough leases that moving the clock over all of them takes a while (one transaction per
    # transition, 2n of them): far longer than it takes this process to react to the first one.
    n = 1000
    batch = [{"jsonrpc": "2.0", "method": "lease.create", "id": i,
              "params": lease_params(ts(1, minutes=i), ts(1, minutes=i + 1), name=f"l{i}")} for i in range(n)]
    replies = []
    for k in range(0, n, 100):
        rpc.send(batch[k:k + 100])
        replies += rpc.recv()
    assert all("result" in r for r in replies), [r for r in replies if "error" in r][:3]

    watcher = daemon.client()
    watcher.call("events.subscribe", {"types": ["lease.started"]})
    # The slow request, and one pipelined behind it on the same connection.
    slow = daemon.client()
    slow.send([{"jsonrpc": "2.0", "method": "clock.set", "params": {"now": ts(20)}, "id": "advance"}])
    slow.send({"jsonrpc": "2.0", "method": "clock.now", "id": "behind"})
    # Once the first transition is published the request is certainly being handled: stop now.
    watcher.wait_notification(lambda m: m.get("method") == "event")
    pid = daemon.pid
    os.kill(pid, signal.SIGTERM)
    first = slow.recv()
    assert isinstance(first, list) and first[0]["id"] == "advance"
    assert first[0].get("result") == {"now": ts(20)}, f"in-flight request not completed: {first}"
    # The request queued behind it was received but not started: it is told the server is going away.
    # (This also proves the stop began while the first was still running: had it come later, the
    # quick clock.now would have been answered normally.)
    second = slow.recv()
    assert second["id"] == "behind"
    assert "error" in second and second["error"]["code"] == -32007, second
    assert second["error"]["data"]["reason"] == "unavailable"
    assert slow.is_at_eof()
    assert daemon.wait_exit() == 0
    daemon.notify.wait_for(pid, "STOPPING", "1", timeout=5)
    # The clock move was completed and made durable before the reply.
    daemon.restart(now=None)
    rpc = daemon.client()
    assert rpc.call("clock.now") == {"now": ts(20)}
    statuses = {x["status"] for x in rpc.call("lease.list", {"limit": 1000})["items"]}
    assert statuses == {"ended"}


def test_new_mutations_are_refused_while_draining(daemon):
    """Requests that were received when the stop began but had not started get -32007."""
    daemon.start()
    rpc = daemon.client()
    make_hosts(rpc, "h1")
    lines = b"".join(json.dumps({"jsonrpc": "2.0", "method": "host.create", "id": i,
                                 "params": {"name": f"x{i}", "vcpus": 1, "memory_mb": 1, "disk_gb": 1}}
                                ).encode() + b"\n" for i in range(1000))
    rpc.send_raw(lines)
    first = rpc.recv()
    assert first["id"] == 0
    os.kill(daemon.pid, signal.SIGTERM)
    replies = [first]
    while True:
        try:
            replies.append(rpc.recv())
        except (ConnectionClosed, ConnectionResetError):
            break
    assert daemon.wait_exit() == 0
    ids = [r["id"] for r in replies]
    assert ids == list(range(len(replies))), "replies must stay in order"
    done = [r for r in replies if "result" in r]
    refused = [r for r in replies if "error" in r]
    assert all(r["error"]["code"] == -32007 and r["error"]["data"]["reason"] == "unavailable" for r in refused), \
        refused[:3]
    assert refused, f"the stop came after all {len(done)} requests were handled: nothing was in flight"
    # Everything that was acknowledged is there after a restart, nothing that was refused is.
    daemon.restart(now=None)
    names = {h["name"] for h in daemon.client().call("host.list")["items"]}
    assert names == {"h1"} | {r["result"]["name"] for r in done}


def test_socket_activation(daemon):
    """With LISTEN_FDS berthd serves the socket it is handed: a client that connected before berthd
    even started is queued by the kernel and answered once it runs."""
    path = str(daemon.sock_dir / "activated.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    early = RPCClient(path)
    early.send({"jsonrpc": "2.0", "method": "clock.now", "id": "early"})
    try:
        daemon.start(listen_fd=listener.fileno())
    finally:
        listener.close()  # berthd has its own copy
    assert early.recv() == {"jsonrpc": "2.0", "id": "early", "result": {"now": ts(0)}}
    assert not os.path.exists(daemon.socket_path), "berthd must not bind its own socket when activated"
    assert "socket-activated" in daemon.notify.wait_for(daemon.pid, "READY", "1").get("STATUS", "")
    assert daemon.terminate() == 0
    # The activated socket belongs to the service manager: berthd leaves its file in place.
    assert os.path.exists(path)


# ------------------------------------------------------------------------------------------------
# Exact datagrams, reload (SIGHUP), and socket activation by systemd's own tool
# ------------------------------------------------------------------------------------------------

def test_exact_notify_datagrams_over_a_life(daemon):
    """What systemd receives, datagram for datagram: STATUS while starting, READY=1 with the serving
    STATUS in the same datagram, WATCHDOG=1 alone, STOPPING=1 with a STATUS on SIGTERM."""
    daemon.start(env={"WATCHDOG_USEC": "400000"})
    pid = daemon.pid
    daemon.notify.wait_for(pid, "WATCHDOG", "1")
    assert daemon.terminate() == 0
    daemon.notify.wait_for(pid, "STATUS", "stopped")
    raw = daemon.notify.raw_from_pid(pid)
    ready = f"READY=1\nSTATUS=serving 0 hosts, 0 leases on {daemon.socket_path}"
    assert raw.count(ready) == 1, raw
    before = raw[:raw.index(ready)]
    # The watchdog service may start pinging just before the RPC service sends READY=1.
    assert before and all((m.startswith("STATUS=") and "\n" not in m) or m == "WATCHDOG=1" for m in before), before
    assert "STATUS=opening state in " + str(daemon.state_dir) in before
    after = raw[raw.index(ready) + 1:]
    assert "WATCHDOG=1" in before + after
    assert after[-2:] == ["STOPPING=1\nSTATUS=draining connections", "STOPPING=1\nSTATUS=stopped"], after
    assert set(after[:-2]) == {"WATCHDOG=1"}, after


def write_config(daemon, config: dict) -> None:
    daemon.config_path.write_text(json.dumps(config, indent=2))


def test_sighup_sends_reloading_with_monotonic_usec_then_ready(daemon):
    daemon.start(config={"log_level": "info"})
    pid = daemon.pid
    before = time.monotonic_ns() // 1000
    os.kill(pid, signal.SIGHUP)
    reloading = daemon.notify.wait_for(pid, "RELOADING", "1")
    ready = daemon.notify.wait_for(pid, "READY", "1", nth=2)
    after = time.monotonic_ns() // 1000
    assert set(reloading) == {"RELOADING", "MONOTONIC_USEC"}, reloading
    # systemd >= 253 matches the reload by CLOCK_MONOTONIC (the same clock as time.monotonic on Linux).
    assert before <= int(reloading["MONOTONIC_USEC"]) <= after
    assert ready == {"READY": "1", "STATUS": "serving (config reloaded)"}
    raw = daemon.notify.raw_from_pid(pid)
    i = next(i for i, m in enumerate(raw) if m.startswith("RELOADING=1\n"))
    assert raw[i] == f"RELOADING=1\nMONOTONIC_USEC={reloading['MONOTONIC_USEC']}"
    assert raw[i + 1:] == ["READY=1\nSTATUS=serving (config reloaded)"], raw[i:]
    assert daemon.client().call("system.health")["status"] == "ok"


def test_sighup_rereads_the_log_level(daemon):
    daemon.start(config={"log_level": "notice"})
    pid = daemon.pid
    rpc = daemon.client()
    make_hosts(rpc, "quiet-host")
    rpc.call("host.list")
    # The call log is written before the reply: nothing at info or debug yet.
    assert "rpc host.create" not in daemon.log_text()
    write_config(daemon, {"log_level": "debug"})
    os.kill(pid, signal.SIGHUP)
    daemon.notify.wait_for(pid, "READY", "1", nth=2)
    make_hosts(rpc, "loud-host")
    rpc.call("host.list")
    log = daemon.log_text()
    assert "configuration reloaded" in log
    assert "rpc host.create" in log and "host.name=loud-host" in log and "quiet-host" not in log
    assert "rpc host.list" in log  # a read: debug
    # And back: a broken config keeps the previous level (and says so).
    write_config(daemon, {"log_level": "loud"})
    os.kill(pid, signal.SIGHUP)
    daemon.notify.wait_for(pid, "READY", "1", nth=3)
    assert "reload failed; keeping the previous configuration" in daemon.log_text()
    rpc.call("host.list")
    assert daemon.log_text().count("rpc host.list") == 2


@pytest.mark.skipif(shutil.which("systemd-socket-activate") is None,
                    reason="systemd-socket-activate (Debian package systemd) is not installed")
def test_socket_activation_by_systemd_socket_activate(daemon):
    """systemd's own tool holds the listening socket and execs berthd (same pid) on the first
    connection, with LISTEN_FDS=1 and LISTEN_PID set as systemd does for berthd.socket."""
    path = str(daemon.sock_dir / "activated.sock")
    tool = shutil.which("systemd-socket-activate")
    # The tool passes on only the variables named with -E (and PATH, TERM, USER, HOME).
    daemon.start(wrap=[tool, "--listen", path, "-E", "NOTIFY_SOCKET"], wait_ready=False)
    wait_until(lambda: os.path.exists(path), "systemd-socket-activate to listen")
    # This client's connection is what starts berthd; its request waits in the socket meanwhile.
    first = RPCClient(path)
    first.send({"jsonrpc": "2.0", "method": "clock.now", "id": "first"})
    ready = daemon.wait_ready()
    assert "socket-activated fd 3" in ready["STATUS"], ready
    assert first.recv() == {"jsonrpc": "2.0", "id": "first", "result": {"now": ts(0)}}
    with RPCClient(path) as second:
        assert second.call("system.health")["status"] == "ok"
    assert not os.path.exists(daemon.socket_path), "berthd must not bind its own socket when activated"
    log = daemon.log_text()
    assert f"Listening on {path} as 3." in log and "Execing " in log
    pid = daemon.pid
    assert daemon.terminate() == 0
    daemon.notify.wait_for(pid, "STOPPING", "1", timeout=5)
    assert os.path.exists(path), "the socket belongs to the service manager"
