"""Resource limits: connection caps, idle / request / write timeouts, and bounded memory
under a flood of pipelined requests. Each limit, when reached, gives a clean error (or, for a client
that does not read, a logged close), never a crash: other connections keep working and the daemon
answers `system.health` afterwards.

Timeouts are set to 1 s through the config file so the tests are fast. Nothing here sleeps to wait
for something: closures are waited for on the socket with a deadline, and their timing is checked
with the monotonic clock (never earlier than the configured timeout). The only paced loops are the
clients that *must* keep trickling (a byte every 0.3 s, a request every 0.3 s), and those are paced by
socket reads with a timeout.
"""

from __future__ import annotations

import json
import os
import select
import socket
import threading
import time

import pytest

from berthtest import ConnectionClosed, RPCClient, error_of, wait_until

NOBODY = 65534
EOF_DEADLINE = 15.0


def connect(path: str, timeout: float = 30.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(path)
    return s


def final_error_then_eof(c: RPCClient, timeout: float = EOF_DEADLINE) -> dict:
    """The one error line a closing connection gets (id null), then end of stream."""
    reply = c.recv(timeout)
    assert reply["id"] is None, reply
    err = error_of(reply)
    assert c.is_at_eof(timeout), "the connection must be closed after the error line"
    return err


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def peer_closed(s: socket.socket, timeout: float) -> bool:
    """True once the server has closed its end (POLLHUP/POLLRDHUP), without reading anything."""
    p = select.poll()
    p.register(s, select.POLLRDHUP | select.POLLHUP)
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        for _, ev in p.poll(left * 1000):
            if ev & (select.POLLRDHUP | select.POLLHUP | select.POLLERR):
                return True
    return False


def wait_accepted(daemon) -> tuple[RPCClient, int]:
    """A new connection that is served, once the server has noticed a close that freed a slot (it
    notices asynchronously); returns it and how many attempts were refused meanwhile."""
    refused = 0

    def attempt():
        nonlocal refused
        c = RPCClient(daemon.socket_path)
        try:
            c.send({"jsonrpc": "2.0", "method": "system.health", "id": 1})
            reply = c.recv()
        except (BrokenPipeError, ConnectionResetError, ConnectionClosed):
            reply = None  # refused and closed before the request went out
        if reply is not None and "result" in reply:
            return c
        assert reply is None or error_of(reply)["code"] == -32007
        refused += 1
        c.close()
        return None

    c = wait_until(attempt, "a connection to be accepted below the cap")
    return c, refused


# --- connection caps ---------------------------------------------------------------------------


def test_connection_cap_refuses_one_more_cleanly_and_recovers(daemon):
    daemon.start(config={"max_connections": 5})
    held = [daemon.client() for _ in range(5)]
    for c in held:
        assert c.call("clock.now")  # served, so counted
    over = RPCClient(daemon.socket_path)
    err = final_error_then_eof(over)
    assert err["code"] == -32007 and err["data"]["reason"] == "unavailable"
    assert err["data"]["rule"] == "max_connections"
    assert "max_connections" in err["message"] and "5" in err["message"]
    # Existing connections are unaffected.
    for c in held:
        assert c.call("system.health")["status"] == "ok"
    # Once one goes, a new connection is accepted again (the server notices the close asynchronously).
    held.pop().close()

    newcomer, _ = wait_accepted(daemon)
    assert newcomer.call("system.health")["status"] == "ok"
    # Refused connections were never counted: still exactly at the cap now.
    err = final_error_then_eof(RPCClient(daemon.socket_path))
    assert err["data"]["rule"] == "max_connections"
    assert daemon.running


def test_connection_cap_stays_below_the_descriptor_limit(daemon, nofile_limit):
    """With only 320 descriptors, the default cap (4096) is lowered to 320 - 256 = 64 at start, so a
    crowd of clients meets a clean -32007 instead of exhausting the daemon's descriptors, and the
    daemon keeps the descriptors its own work needs (the store, hooks, the metrics listener)."""
    daemon.start(wrap=["prlimit", "--nofile=320:320"])
    assert "max_connections lowered to fit the descriptor limit" in daemon.log_text()
    held = [daemon.client() for _ in range(64)]
    for c in held:
        assert c.call("clock.now")
    for _ in range(20):
        err = final_error_then_eof(RPCClient(daemon.socket_path))
        assert err["code"] == -32007 and err["data"]["rule"] == "max_connections" and "64" in err["message"]
    # A storm of refusals is one warning, not one log line each (the rest are at debug, and counted).
    assert daemon.log_text().count("connection refused: too many connections") == 1
    # At the cap, the daemon still writes to its store and answers on every held connection.
    held[0].call("host.create", {"name": "at-the-cap", "vcpus": 1, "memory_mb": 1, "disk_gb": 1})
    for c in held:
        assert c.call("system.health")["status"] == "ok"


def test_graceful_shutdown_at_the_cap(daemon):
    """Refused connections do not count as open ones: a daemon at its cap drains and exits 0."""
    daemon.start(config={"max_connections": 3})
    held = [daemon.client() for _ in range(3)]
    for c in held:
        c.call("clock.now")
    for _ in range(5):
        assert final_error_then_eof(RPCClient(daemon.socket_path))["code"] == -32007
    assert daemon.terminate() == 0


def _as_nobody(socket_path: str, n: int, go_r: int, out_w: int) -> None:
    """Child: as uid `nobody`, opens `n` connections and one more, reports what each got, waits for
    the parent's go, then frees one slot and reports whether a new connection is served."""
    code = 0
    try:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)
        conns = [RPCClient(socket_path, sock=connect(socket_path), validate=False) for _ in range(n)]
        first = [c.request("system.health") for c in conns]
        extra = RPCClient(socket_path, sock=connect(socket_path), validate=False)
        refused = extra.recv_message()
        refused_eof = extra.is_at_eof()
        with os.fdopen(out_w, "w") as out:
            out.write(json.dumps({"first": first, "refused": refused, "refused_eof": refused_eof}) + "\n")
            out.flush()
            os.read(go_r, 1)
            conns.pop().close()
            deadline = time.monotonic() + 15
            again = None
            while time.monotonic() < deadline:
                c = RPCClient(socket_path, sock=connect(socket_path), validate=False)
                try:
                    c.send({"jsonrpc": "2.0", "method": "system.health", "id": 1})
                    again = c.recv_message()
                except (BrokenPipeError, ConnectionResetError, ConnectionClosed):
                    again = None  # refused and closed before the request went out
                if again is not None and again.get("error", {}).get("code") != -32007:
                    break
                c.close()
            out.write(json.dumps({"again": again}) + "\n")
    except BaseException as e:  # never raise in the child
        try:
            os.write(out_w, (json.dumps({"exception": f"{type(e).__name__}: {e}"}) + "\n").encode())
        except OSError:
            pass
        code = 1
    os._exit(code)


def test_per_uid_cap_leaves_room_for_others_and_root(daemon):
    daemon.start(config={"max_connections": 50, "max_connections_per_uid": 3})
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(go_w)
        os.close(out_r)
        _as_nobody(daemon.socket_path, 3, go_r, out_w)
    os.close(go_r)
    os.close(out_w)
    out = os.fdopen(out_r)
    try:
        first = json.loads(out.readline() or '{"exception": "child wrote nothing"}')
        assert "exception" not in first, first
        # nobody has no role: each of its connections is served (and refused the method, -32004)...
        assert [r["error"]["code"] for r in first["first"]] == [-32004] * 3
        # ... and one more from the same uid is refused by the per-uid cap, then closed.
        assert first["refused"]["id"] is None
        err = first["refused"]["error"]
        error_of(first["refused"])
        assert err["code"] == -32007 and err["data"]["rule"] == "max_connections_per_uid"
        assert first["refused_eof"]
        # Root is exempt from the per-uid cap, even with many connections of its own.
        mine = [daemon.client() for _ in range(5)]
        for c in mine:
            assert c.call("system.health")["status"] == "ok"
        os.write(go_w, b"g")
        second = json.loads(out.readline() or '{"exception": "child wrote nothing"}')
        assert "exception" not in second, second
        # After one of its connections closed, nobody gets a slot again.
        assert second["again"]["error"]["code"] == -32004, second
    finally:
        out.close()
        os.close(go_w)
        os.waitpid(pid, 0)
    assert daemon.client().call("system.health")["status"] == "ok"


# --- timeouts ----------------------------------------------------------------------------------


def test_idle_timeout_closes_idle_connections_but_not_busy_or_subscribed_ones(daemon):
    daemon.start(config={"idle_timeout_s": 1})
    subscriber = daemon.client()
    subscriber.call("events.subscribe", {"types": ["host.*"]})
    busy = daemon.client()

    def witness_closed(c: RPCClient, since: float) -> float:
        """Waits for `c`'s idle-timeout error while `busy` makes a call every 0.3 s; returns when."""
        while True:
            try:
                line = c.recv_line(0.3)
            except TimeoutError:
                assert busy.call("clock.now")
                assert time.monotonic() - since < EOF_DEADLINE, "idle connection was not closed"
                continue
            closed_at = time.monotonic()
            assert line is not None, "closed without the error line"
            reply = json.loads(line)
            assert reply["id"] is None
            err = error_of(reply)
            assert err["code"] == -32007 and err["data"]["rule"] == "idle_timeout_s", err
            assert "idle" in err["message"]
            assert c.is_at_eof()
            return closed_at

    # The clock starts when the server has answered the last request: sending it is earlier.
    idle = daemon.client()
    sent = time.monotonic()
    idle.call("clock.now")
    closed = witness_closed(idle, sent)
    assert closed - sent >= 1.0, f"closed after {closed - sent:.3f} s, before idle_timeout_s"
    # A second idle witness, opened now: when it is closed the subscriber has been idle > 2 s.
    opened = time.monotonic()
    closed2 = witness_closed(daemon.client(), opened)
    assert closed2 - opened >= 1.0
    assert closed2 - sent >= 2.0
    print(f"idle: closed {closed - sent:.3f} s after the last request (idle_timeout_s 1)")
    # The busy connection and the subscriber are still open and working.
    assert busy.call("system.health")["status"] == "ok"
    admin = daemon.client()
    admin.call("host.create", {"name": "idle-test", "vcpus": 1, "memory_mb": 1, "disk_gb": 1})
    n = subscriber.wait_notification(lambda m: m["params"].get("type") == "host.created")
    assert n["params"]["host"] == "idle-test"
    assert subscriber.call("clock.now")


def test_the_python_client_reconnects_after_an_idle_timeout(daemon):
    """A pooled client connection closed for idleness is not an error for the next call."""
    from berth_client import BerthClient

    daemon.start(config={"idle_timeout_s": 1})
    c = BerthClient(daemon.socket_path)
    assert c.system_health()["status"] == "ok"
    sock = c._conn.sock
    # The farewell line arriving is the event; the call after it must reconnect, not fail.
    readable, _, _ = select.select([sock], [], [], EOF_DEADLINE)
    assert readable, "the idle connection got no farewell line"
    assert c.system_health()["status"] == "ok"
    assert c._conn.sock is not sock
    c.close()


def test_idle_timeout_zero_means_never(daemon):
    daemon.start(config={"idle_timeout_s": 0, "request_timeout_s": 1})
    idle = daemon.client()
    idle.call("clock.now")
    # A 1 s request timeout on another connection is the witness that time has passed.
    slow = daemon.client()
    slow.send_raw(b'{"jsonrpc":"2.0",')
    assert final_error_then_eof(slow)["data"]["rule"] == "request_timeout_s"
    assert not idle.is_at_eof(0.1)
    assert idle.call("clock.now")


def test_request_timeout_closes_a_slowloris_client(daemon):
    daemon.start(config={"request_timeout_s": 1})
    bystander = daemon.client()
    slow = daemon.client()
    started = time.monotonic()
    slow.send_raw(b'{"jsonrpc":"2.0","method":"system.health",')
    # Keep trickling a byte every 0.3 s: progress on an unfinished line does not reset the clock.
    reply = None
    while reply is None:
        try:
            line = slow.recv_line(0.3)
        except TimeoutError:
            assert time.monotonic() - started < EOF_DEADLINE, "slow request was never timed out"
            try:
                slow.send_raw(b" ")
            except (BrokenPipeError, ConnectionResetError):
                pass
            continue
        assert line is not None, "closed without the error line"
        reply = json.loads(line)
    elapsed = time.monotonic() - started
    assert reply["id"] is None
    err = error_of(reply)
    assert err["code"] == -32600 and err["data"]["reason"] == "invalid_request"
    assert err["data"]["rule"] == "request_timeout_s" and "request timeout" in err["message"]
    assert slow.is_at_eof()
    assert elapsed >= 1.0, f"timed out after {elapsed:.3f} s, before request_timeout_s"
    print(f"request timeout: closed {elapsed:.3f} s after the first byte (request_timeout_s 1)")
    assert bystander.call("system.health")["status"] == "ok"
    assert daemon.client().call("clock.now")


def test_write_timeout_closes_a_client_that_does_not_read(daemon):
    daemon.start(config={"write_timeout_s": 1})
    bystander = daemon.client()
    hog = RPCClient(daemon.socket_path)
    # rpc.discover replies are large: a hundred of them fill the socket buffers and the reply window.
    n = 100
    hog.send_raw(b"".join(
        json.dumps({"jsonrpc": "2.0", "method": "rpc.discover", "id": i}).encode() + b"\n" for i in range(n)))
    sent = time.monotonic()
    # The server closes its end (nothing can be written to a client that does not read); detected
    # without reading, since reading would let the server make progress.
    assert peer_closed(hog.sock, EOF_DEADLINE), "the connection was not closed"
    elapsed = time.monotonic() - sent
    assert elapsed >= 1.0, f"closed after {elapsed:.3f} s, before write_timeout_s"
    print(f"write timeout: closed {elapsed:.3f} s after the requests were sent (write_timeout_s 1)")
    # What was written before the close are replies in order (the last may be cut off by the close);
    # then the stream ends.
    lines = []
    try:
        while (line := hog.recv_line(EOF_DEADLINE)) is not None:
            lines.append(line)
    except ConnectionResetError:
        pass
    got = [json.loads(line)["id"] for line in lines[:-1]]
    assert got == list(range(len(got))) and len(got) < n
    assert bystander.call("system.health")["status"] == "ok"
    assert "not reading its replies" in daemon.log_text()


def test_limits_are_validated(daemon, tmp_path):
    for bad, key in [({"max_connections": 0}, "max_connections"),
                     ({"max_connections_per_uid": -1}, "max_connections_per_uid"),
                     ({"idle_timeout_s": -5}, "idle_timeout_s"),
                     ({"request_timeout_s": "soon"}, "request_timeout_s"),
                     ({"write_timeout_s": 100000}, "write_timeout_s")]:
        daemon.start(config=bad, wait_ready=False)
        code = daemon.wait_exit()
        assert code != 0
        assert key in daemon.log_text(), daemon.log_text()


def test_limits_are_counted_in_metrics(daemon, tmp_path):
    from test_metrics import scrape, start_with_metrics

    d = start_with_metrics(daemon, tmp_path, max_connections=2, request_timeout_s=1)
    a = d.client()
    a.call("clock.now")
    slow = d.client()
    slow.send_raw(b'{"jsonrpc":')
    assert final_error_then_eof(slow)["data"]["rule"] == "request_timeout_s"
    b, refused = wait_accepted(d)
    for _ in range(3):
        assert final_error_then_eof(RPCClient(d.socket_path))["data"]["rule"] == "max_connections"
    m = scrape(d)
    assert m.get("berth_rpc_connections") == 2
    assert m.get("berth_rpc_connections_limited_total", limit="request_timeout_s") == 1
    assert m.get("berth_rpc_connections_limited_total", limit="max_connections") == 3 + refused
    for key in ("max_connections_per_uid", "idle_timeout_s", "write_timeout_s"):
        assert m.get("berth_rpc_connections_limited_total", limit=key) == 0
    assert a.call("system.health")["status"] == "ok" and b.call("clock.now")


# --- bounded memory under a flood ----------------------------------------------------------------


class FloodConnection:
    """One connection that pipelines `count` requests as fast as the server takes them, and (once
    `start_reading` is called) reads and checks every reply in order."""

    def __init__(self, path: str, tag: int, count: int, pad: int):
        self.sock = connect(path, timeout=None)
        self.tag = tag
        self.count = count
        self.pad = "p" * pad
        self.blocked = threading.Event()  # the server stopped taking requests (backpressure)
        self.errors: list[str] = []
        self.replies = 0
        self.bytes_sent = 0
        self.writer = threading.Thread(target=self._write, daemon=True)
        self.reader = threading.Thread(target=self._read, daemon=True)

    def rid(self, i: int) -> str:
        return f"{self.tag}-{i}-{self.pad}"

    def _write(self) -> None:
        try:
            batch = []
            for i in range(self.count):
                batch.append(b'{"jsonrpc":"2.0","method":"clock.now","id":"%s"}\n' % self.rid(i).encode())
                if len(batch) == 256 or i == self.count - 1:
                    data = memoryview(b"".join(batch))
                    batch = []
                    while data:
                        try:
                            sent = self.sock.send(data, socket.MSG_DONTWAIT)
                        except BlockingIOError:
                            self.blocked.set()
                            select.select([], [self.sock], [], 60)
                            continue
                        data = data[sent:]
                        self.bytes_sent += sent
        except Exception as e:  # reported by the test
            self.errors.append(f"writer: {type(e).__name__}: {e}")
            self.blocked.set()

    def _read(self) -> None:
        buf = b""
        i = 0
        try:
            while i < self.count:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    self.errors.append(f"reader: end of stream after {i} replies")
                    return
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    reply = json.loads(line)
                    if reply.get("id") != self.rid(i) or "result" not in reply:
                        self.errors.append(f"reply {i} out of order or failed: {line[:200]!r}")
                        return
                    i += 1
                self.replies = i
        except Exception as e:
            self.errors.append(f"reader: {type(e).__name__}: {e}")

    def start_reading(self) -> None:
        self.reader.start()

    def finish(self, timeout: float) -> None:
        self.writer.join(timeout)
        self.reader.join(timeout)
        assert not self.writer.is_alive() and not self.reader.is_alive(), \
            f"connection {self.tag}: {self.replies}/{self.count} replies after {timeout} s"
        assert not self.errors, self.errors
        assert self.replies == self.count
        self.sock.close()


def flood(daemon, connections: int, per_connection: int, pad: int, bound_mib: int) -> dict:
    rpc = daemon.client()
    for _ in range(50):
        rpc.call("system.health")
    pid = daemon.pid
    before = rss_kib(pid)
    conns = [FloodConnection(daemon.socket_path, t, per_connection, pad) for t in range(connections)]
    started = time.monotonic()
    for c in conns:
        c.writer.start()
    # Nobody reads yet: every connection ends up blocked by the server's read backpressure.
    for c in conns:
        assert c.blocked.wait(60), f"connection {c.tag} never blocked: the server kept reading"
    stalled = rss_kib(pid)
    # Other clients are still served while the flood is stuck.
    assert rpc.call("system.health")["status"] == "ok"
    for c in conns:
        c.start_reading()
    for c in conns:
        c.finish(timeout=120)
    elapsed = time.monotonic() - started
    peak = rss_kib(pid, "VmHWM")
    after = rss_kib(pid)
    sent = sum(c.bytes_sent for c in conns)
    numbers = dict(connections=connections, requests=connections * per_connection, mib_sent=sent / 2**20,
                   rss_before_mib=before / 1024, rss_stalled_mib=stalled / 1024, rss_peak_mib=peak / 1024,
                   rss_after_mib=after / 1024, seconds=elapsed)
    print("flood:", json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in numbers.items()}))
    assert (peak - before) / 1024 < bound_mib, numbers
    assert rpc.call("system.health")["status"] == "ok"
    return numbers


def test_flood_of_pipelined_requests_keeps_memory_bounded(daemon):
    """200,000 pipelined requests (~60 MiB of requests, as much again of replies) over 4 connections
    that do not read their replies until the server has stopped reading from every one of them."""
    daemon.start()
    flood(daemon, connections=4, per_connection=50_000, pad=250, bound_mib=30)


def test_many_connections_flooding_keep_memory_bounded(daemon, nofile_limit):
    """100 connections, each pipelining 1,000 requests of 1 KiB without reading until all are blocked."""
    daemon.start()
    flood(daemon, connections=100, per_connection=1_000, pad=1000, bound_mib=40)
