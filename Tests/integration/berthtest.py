"""Support code for Berth's integration tests: the real berthd, driven over its socket.

Everything here talks to the daemon the way a portal, an operator or a Slurm hook would: a Unix
stream socket carrying newline-delimited JSON-RPC 2.0. Nothing reaches into the daemon's state
directory except to hand it to the next daemon process.

`conftest.py` wraps these classes in fixtures; test modules import the helpers directly.
"""

from __future__ import annotations

import collections
import datetime as dt
import json
import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable

REPO = Path(__file__).resolve().parents[2]
BERTHD = os.environ.get("BERTHD") or str(REPO / ".build" / "debug" / "berthd")
BERTHCTL = os.environ.get("BERTHCTL") or str(REPO / ".build" / "debug" / "berthctl")
SCHEMAS = REPO / "schemas"

#: The manual clock's starting time unless a test asks for another.
DEFAULT_NOW = "2030-01-01T00:00:00Z"
#: How long to wait for something the daemon does on its own (readiness, outbox delivery, exit).
#: Generous: a debug build on a busy two-core machine can be slow, and waiting longer costs nothing
#: when the condition is met early.
DEADLINE = 60.0
#: How long a single reply may take.
REPLY_TIMEOUT = 60.0


# ------------------------------------------------------------------------------------------------
# Time helpers (the daemon returns RFC 3339 UTC with Z, second precision)
# ------------------------------------------------------------------------------------------------

def parse_ts(s: str) -> dt.datetime:
    return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def fmt_ts(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def ts(hours: float = 0, *, base: str = DEFAULT_NOW, minutes: float = 0, seconds: float = 0, days: float = 0) -> str:
    """`base` plus an offset, as the daemon would print it: ts(2) == "2030-01-01T02:00:00Z"."""
    return fmt_ts(parse_ts(base) + dt.timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds))


def seconds_between(a: str, b: str) -> int:
    return int((parse_ts(b) - parse_ts(a)).total_seconds())


# ------------------------------------------------------------------------------------------------
# Schemas: every live result is checked against schemas/ as it arrives
# ------------------------------------------------------------------------------------------------

class Schemas:
    """The files under schemas/, registered by `$id`, with one validator per file."""

    _instance: "Schemas | None" = None
    _lock = threading.Lock()

    def __init__(self, root: Path = SCHEMAS):
        from jsonschema import Draft202012Validator
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT202012

        self.root = root
        self.by_rel: dict[str, dict] = {}
        resources = []
        for sub in ("components", "methods", "notifications"):
            for f in sorted((root / sub).glob("*.json")):
                doc = json.loads(f.read_text())
                self.by_rel[f"{sub}/{f.name}"] = doc
                resources.append((doc["$id"], Resource.from_contents(doc, default_specification=DRAFT202012)))
        self.registry = Registry().with_resources(resources)
        self._validators: dict[str, Any] = {}
        self._cls = Draft202012Validator

    @classmethod
    def get(cls) -> "Schemas":
        with cls._lock:
            if cls._instance is None:
                cls._instance = Schemas()
            return cls._instance

    def has(self, rel: str) -> bool:
        return rel in self.by_rel

    def validator(self, rel: str):
        v = self._validators.get(rel)
        if v is None:
            schema = self.by_rel[rel]
            self._cls.check_schema(schema)
            v = self._cls(schema, registry=self.registry, format_checker=self._cls.FORMAT_CHECKER)
            self._validators[rel] = v
        return v

    def errors(self, rel: str, instance: Any) -> list[str]:
        """Every violation, each as `path: message`, best match first."""
        from jsonschema.exceptions import best_match

        v = self.validator(rel)
        errs = list(v.iter_errors(instance))
        if not errs:
            return []
        first = best_match(errs)
        ordered = [first] + [e for e in errs if e is not first]
        return [f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message[:400]}" for e in ordered]

    def check(self, rel: str, instance: Any, what: str = "") -> None:
        errs = self.errors(rel, instance)
        if errs:
            raise SchemaViolation(
                f"{what or 'instance'} does not match schemas/{rel}:\n  " + "\n  ".join(errs[:8])
                + f"\ninstance: {json.dumps(instance)[:3000]}")


class SchemaViolation(AssertionError):
    pass


# ------------------------------------------------------------------------------------------------
# JSON-RPC client
# ------------------------------------------------------------------------------------------------

class RPCError(Exception):
    """An error response; `code`, `message`, `data` and the whole `response`."""

    def __init__(self, response: dict):
        err = response.get("error") or {}
        self.response = response
        self.code = err.get("code")
        self.message = err.get("message")
        self.data = err.get("data")
        super().__init__(f"RPC error {self.code}: {self.message} (data={json.dumps(self.data)[:2000]})")

    @property
    def reason(self) -> str | None:
        return (self.data or {}).get("reason") if isinstance(self.data, dict) else None

    @property
    def error_paths(self) -> list[str]:
        return [e.get("path") for e in (self.data or {}).get("errors", [])]


class ConnectionClosed(Exception):
    pass


class RPCClient:
    """One connection to berthd: calls, raw lines, and a queue of server notifications.

    `call` sends one request and returns its result (raising RPCError for an error reply); server
    notifications that arrive in between are queued in `notifications`. Results, errors and
    notifications are checked against schemas/ unless `validate=False`.
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = REPLY_TIMEOUT, validate: bool = True,
                 sock: socket.socket | None = None):
        self.path = str(path)
        self.timeout = timeout
        self.validate = validate
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(self.path)
        self.sock = sock
        self._buf = bytearray()
        self._next_id = 1
        self.notifications: collections.deque[dict] = collections.deque()
        self.closed = False

    # --- raw lines -------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, message: Any) -> None:
        """One JSON text (request, notification or batch) as one line."""
        self.send_raw(json.dumps(message).encode() + b"\n")

    def recv_line(self, timeout: float | None = None) -> bytes | None:
        """The next line without its newline; None at end of stream. Raises TimeoutError."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no complete line from berthd within {timeout or self.timeout} s")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout as e:
                raise TimeoutError(f"no complete line from berthd within {timeout or self.timeout} s") from e
            if not chunk:
                if self._buf:
                    line = bytes(self._buf)
                    self._buf.clear()
                    return line
                return None
            self._buf += chunk

    def recv_message(self, timeout: float | None = None) -> Any:
        """The next JSON text from the server (reply, batch reply or notification)."""
        line = self.recv_line(timeout)
        if line is None:
            raise ConnectionClosed("berthd closed the connection")
        return json.loads(line)

    def recv(self, timeout: float | None = None) -> Any:
        """The next reply (object or batch array), queueing notifications that come first."""
        while True:
            msg = self.recv_message(timeout)
            if isinstance(msg, dict) and "method" in msg and "id" not in msg:
                self._check_notification(msg)
                self.notifications.append(msg)
                continue
            return msg

    def is_at_eof(self, timeout: float = 10.0) -> bool:
        """True when the server has closed the connection (and sent nothing more) within `timeout`."""
        try:
            line = self.recv_line(timeout)
        except TimeoutError:
            return False
        except (ConnectionResetError, BrokenPipeError):
            return True
        return line is None

    # --- calls -----------------------------------------------------------------------------

    def new_id(self) -> int:
        i = self._next_id
        self._next_id += 1
        return i

    def request(self, method: str, params: Any = None, *, id: Any = "auto") -> dict:
        """Sends one request and returns the whole response object."""
        rid = self.new_id() if id == "auto" else id
        msg: dict = {"jsonrpc": "2.0", "method": method, "id": rid}
        if params is not None:
            msg["params"] = params
        self.send(msg)
        resp = self.recv()
        assert isinstance(resp, dict), f"expected one response object, got {resp!r}"
        assert resp.get("id") == rid, f"response id {resp.get('id')!r} does not echo request id {rid!r}"
        self.check_response(method, params, resp)
        return resp

    def call(self, method: str, params: Any = None, **kw) -> Any:
        resp = self.request(method, params, **kw)
        if "error" in resp:
            raise RPCError(resp)
        return resp["result"]

    def notify(self, method: str, params: Any = None) -> None:
        msg: dict = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        self.send(msg)

    def error(self, method: str, params: Any = None, code: int | None = None) -> RPCError:
        """Calls a method that must fail; returns the error (checking its code when given)."""
        try:
            result = self.call(method, params)
        except RPCError as e:
            if code is not None:
                assert e.code == code, f"{method}: expected error {code}, got {e.code}: {e.message} {e.data}"
            return e
        raise AssertionError(f"{method} succeeded but should have failed with {code}: {json.dumps(result)[:2000]}")

    # --- notifications ---------------------------------------------------------------------

    def wait_notification(self, predicate: Callable[[dict], bool] = lambda n: True,
                          timeout: float = DEADLINE) -> dict:
        """The first queued or arriving notification matching `predicate` (removed from the queue)."""
        deadline = time.monotonic() + timeout
        while True:
            for n in list(self.notifications):
                if predicate(n):
                    self.notifications.remove(n)
                    return n
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no matching notification within {timeout} s; queued: {list(self.notifications)}")
            msg = self.recv_message(remaining)
            if isinstance(msg, dict) and "method" in msg and "id" not in msg:
                self._check_notification(msg)
                self.notifications.append(msg)
            else:
                raise AssertionError(f"unexpected reply while waiting for a notification: {msg!r}")

    def events_received(self, n: int, timeout: float = DEADLINE) -> list[dict]:
        """The params of the next `n` `event` notifications."""
        return [self.wait_notification(lambda m: m.get("method") == "event", timeout)["params"] for _ in range(n)]

    # --- schema checks ---------------------------------------------------------------------

    def check_response(self, method: str, params: Any, resp: dict) -> None:
        if not self.validate:
            return
        s = Schemas.get()
        assert resp.get("jsonrpc") == "2.0", f"response without jsonrpc 2.0: {resp}"
        assert ("result" in resp) != ("error" in resp), f"response must have exactly one of result/error: {resp}"
        if "error" in resp:
            s.check("components/Error.json", resp["error"], f"error of {method}")
            return
        rel = f"methods/{method}.result.json"
        if s.has(rel):
            s.check(rel, resp["result"], f"result of {method}")
        prel = f"methods/{method}.params.json"
        if s.has(prel):
            # The daemon accepted these params, so the contract must accept them too.
            s.check(prel, params if params is not None else {}, f"params accepted by {method}")

    def _check_notification(self, msg: dict) -> None:
        if self.validate and msg.get("method") == "event":
            Schemas.get().check("notifications/event.json", msg, "event notification")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.sock.close()
            except OSError:
                pass

    def __enter__(self) -> "RPCClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ------------------------------------------------------------------------------------------------
# Datagram listeners (sd_notify, journald)
# ------------------------------------------------------------------------------------------------

class DatagramListener:
    """A Unix datagram socket that berthd sends to as if to systemd, read on a thread of its own.

    Every datagram is handed to `received(pid, data)` with the sender's pid (SO_PASSCRED), under
    `cond`; subclasses parse and keep it. `wait` polls what was kept with a deadline, woken by each
    new datagram, so no test sleeps for a datagram to arrive.
    """

    def __init__(self, path: str, *, max_size: int = 65536, receive_buffer: int | None = None,
                 name: str = "datagram listener"):
        self.path = path
        self.max_size = max_size
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        os.chmod(path, 0o666)  # an unprivileged berthd must be able to send
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        if receive_buffer is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.cond = threading.Condition()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def received(self, pid: int, data: bytes) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        ucred = struct.calcsize("iII")
        while not self._stop:
            r, _, _ = select.select([self.sock], [], [], 0.2)
            if not r:
                continue
            try:
                data, anc, _, _ = self.sock.recvmsg(self.max_size, socket.CMSG_SPACE(ucred))
            except OSError:
                return
            pid = -1
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_CREDENTIALS and len(cdata) >= ucred:
                    pid = struct.unpack("iII", cdata[:ucred])[0]
            with self.cond:
                self.received(pid, data)
                self.cond.notify_all()

    def wait(self, find: Callable[[], Any], timeout: float, timed_out: Callable[[], Exception],
             alive: Callable[[], bool] = lambda: True, exited: Callable[[], Exception] | None = None) -> Any:
        """The first truthy `find()` (called under `cond`) within `timeout`; raises `timed_out()` after
        it, or `exited()` as soon as `alive()` turns false."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = find()
                if found:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise timed_out()
                if exited is not None and not alive():
                    raise exited()
                self.cond.wait(min(remaining, 0.2))

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self.sock.close()


class NotifyListener(DatagramListener):
    """The test's NOTIFY_SOCKET for berthd; records every datagram with its sender pid."""

    def __init__(self, path: str):
        self.messages: list[tuple[int, float, dict[str, str], str]] = []  # (pid, monotonic time, fields, raw)
        super().__init__(path, name="sd_notify listener")

    def received(self, pid: int, data: bytes) -> None:
        text = data.decode(errors="replace")
        fields: dict[str, str] = {}
        for line in text.split("\n"):
            if "=" in line:
                k, v = line.split("=", 1)
                fields[k] = v
        self.messages.append((pid, time.monotonic(), fields, text))

    def from_pid(self, pid: int) -> list[dict[str, str]]:
        with self.cond:
            return [f for p, _, f, _ in self.messages if p == pid]

    def raw_from_pid(self, pid: int) -> list[str]:
        """The datagrams from `pid` exactly as sent."""
        with self.cond:
            return [raw for p, _, _, raw in self.messages if p == pid]

    def wait_for(self, pid: int, key: str, value: str | None = None, *, nth: int = 1, timeout: float = DEADLINE,
                 alive: Callable[[], bool] = lambda: True) -> dict[str, str]:
        """The `nth` datagram from `pid` that sets `key` (to `value` when given)."""
        def find():
            found = [f for p, _, f, _ in self.messages if p == pid and key in f and (value is None or f[key] == value)]
            return found[nth - 1] if len(found) >= nth else None

        return self.wait(
            find, timeout,
            timed_out=lambda: TimeoutError(f"no {key}{'=' + value if value else ''} from pid {pid} within {timeout} s; "
                                           f"got {[f for p, _, f, _ in self.messages if p == pid]}"),
            alive=alive, exited=lambda: ProcessExited(f"berthd (pid {pid}) exited before sending {key}"))


class ProcessExited(AssertionError):
    pass


# ------------------------------------------------------------------------------------------------
# The daemon
# ------------------------------------------------------------------------------------------------

class Berthd:
    """One berthd under test: its own socket, state directory, config and logs.

    start() launches the real binary with `--clock manual --now DEFAULT_NOW` (no demo inventory)
    and returns once it has sent READY=1 on the test's NOTIFY_SOCKET. restart() stops it (SIGTERM)
    if it still runs and starts it again on the same state with the same options, unless told
    otherwise.
    """

    def __init__(self, tmp_path: Path):
        if not os.access(BERTHD, os.X_OK):
            raise FileNotFoundError(
                f"berthd binary not found at {BERTHD}: run `swift build` in {REPO} or set BERTHD")
        self.tmp_path = tmp_path
        self.state_dir = tmp_path / "state"
        # Unix socket paths are limited to 107 bytes; pytest's tmp_path can be longer, so the
        # socket and the notify socket live in a short private directory of their own.
        self.sock_dir = Path(tempfile.mkdtemp(prefix="berth-", dir="/tmp"))
        os.chmod(self.sock_dir, 0o755)  # non-root clients must reach the socket
        self.socket_path = str(self.sock_dir / "berth.sock")
        self.notify = NotifyListener(str(self.sock_dir / "notify.sock"))
        self.config_path = tmp_path / "berthd.json"
        self.proc: subprocess.Popen | None = None
        self.logs: list[Path] = []
        self.clients: list[RPCClient] = []
        self.exit_codes: list[int] = []
        self._opts: dict = {}

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, args: Iterable[str] = (), config: dict | None = None, *, now: str | None = DEFAULT_NOW,
              clock: str | None = "manual", uid: int | None = None, gid: int | None = None,
              wait_ready: bool = True, socket_path: str | None = None, state_dir: str | os.PathLike | None = None,
              env: dict | None = None, listen_fd: int | None = None, wrap: list[str] | None = None,
              journal_stream: bool = False) -> "Berthd":
        """`listen_fd`: hand berthd this listening socket as fd 3 with LISTEN_FDS=1 (socket activation).
        `wrap`: a command prefix that ends by exec'ing its arguments (so berthd keeps the pid), e.g.
        `systemd-socket-activate -l PATH` or an `unshare -m sh -c '...; exec "$@"' sh`.
        `journal_stream`: set JOURNAL_STREAM to berthd's stderr (its log file), as systemd does for a
        unit whose output goes to the journal."""
        assert self.proc is None or self.proc.poll() is not None, "berthd is already running"
        self._opts = dict(args=list(args), config=config, now=now, clock=clock, uid=uid, gid=gid,
                          socket_path=socket_path, state_dir=state_dir, env=env, listen_fd=listen_fd, wrap=wrap,
                          journal_stream=journal_stream)
        if socket_path:
            self.socket_path = socket_path
        if state_dir:
            self.state_dir = Path(state_dir)
        cmd = [BERTHD, "--socket", self.socket_path, "--state-dir", str(self.state_dir)]
        if clock:
            cmd += ["--clock", clock]
        if now:
            cmd += ["--now", now]
        if config is not None:
            self.config_path.write_text(json.dumps(config, indent=2))
            cmd += ["--config", str(self.config_path)]
        cmd += list(args)
        run_env = {k: v for k, v in os.environ.items()
                   if k not in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID",
                                "JOURNAL_STREAM", "NOTIFY_SOCKET", "BERTH_SOCKET")}
        run_env["NOTIFY_SOCKET"] = self.notify.path
        run_env.update(env or {})
        if uid is not None or gid is not None:
            # An unprivileged daemon must own its state and be able to create its socket. (pytest's
            # tmp_path is private to root, so such a test passes a state_dir it can reach.)
            self.state_dir.mkdir(exist_ok=True)
            for d in (self.state_dir, self.sock_dir):
                os.chown(d, uid if uid is not None else -1, gid if gid is not None else -1)
        pass_fds: tuple = ()
        if listen_fd is not None:
            # As systemd does: the socket as fd 3, LISTEN_FDS=1 and LISTEN_PID=<berthd's pid>. The shell
            # (bash: dash cannot redirect fds above 9) sets LISTEN_PID to its own pid, then execs
            # berthd, which keeps that pid.
            cmd = ["/bin/bash", "-c", f'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@" 3<&{listen_fd}'] + cmd
            pass_fds = (listen_fd,)
        if wrap:
            cmd = list(wrap) + cmd
        log = self.tmp_path / f"berthd-{len(self.logs) + 1}.log"
        self.logs.append(log)
        with open(log, "wb") as err:
            err.write(("$ " + " ".join(cmd) + "\n").encode())
            err.flush()
            if journal_stream:
                st = os.fstat(err.fileno())
                run_env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, env=run_env, pass_fds=pass_fds,
                user=uid, group=gid, extra_groups=[] if (uid is not None or gid is not None) else None)
        self.command = cmd
        if wait_ready:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = DEADLINE) -> dict[str, str]:
        """Waits for READY=1 from this process; fails with its log if it exits first."""
        proc = self.proc
        assert proc is not None
        try:
            return self.notify.wait_for(proc.pid, "READY", "1", timeout=timeout, alive=lambda: proc.poll() is None)
        except ProcessExited:
            proc.wait(timeout=10)
            raise ProcessExited(f"berthd exited with {proc.returncode} before READY=1:\n{self.log_text()}")

    def restart(self, **overrides) -> "Berthd":
        """Stops berthd (SIGTERM) if it runs, then starts it again with the same options plus `overrides`."""
        if self.running:
            self.terminate()
        opts = dict(self._opts)
        opts.update(overrides)
        return self.start(**opts)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> int:
        """SIGKILL: a crash. Returns the (negative) exit status."""
        return self.signal_and_wait(signal.SIGKILL)

    def terminate(self, timeout: float = DEADLINE) -> int:
        """SIGTERM: graceful stop. Returns the exit code."""
        return self.signal_and_wait(signal.SIGTERM, timeout)

    def signal_and_wait(self, sig: int, timeout: float = DEADLINE) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait_exit(timeout)

    def wait_exit(self, timeout: float = DEADLINE) -> int:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"berthd did not exit within {timeout} s:\n{self.log_text()}")
        self.exit_codes.append(code)
        return code

    # --- clients -----------------------------------------------------------------------------

    def client(self, **kw) -> RPCClient:
        c = RPCClient(self.socket_path, **kw)
        self.clients.append(c)
        return c

    # --- diagnostics -------------------------------------------------------------------------

    def log_text(self, index: int = -1) -> str:
        if not self.logs:
            return "(no log)"
        try:
            return self.logs[index].read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"

    def all_logs(self) -> str:
        out = []
        for i, p in enumerate(self.logs):
            try:
                text = p.read_text(errors="replace")
            except FileNotFoundError:
                text = "(missing)"
            if len(text) > 60_000:
                text = text[:20_000] + "\n[... cut ...]\n" + text[-40_000:]
            out.append(f"----- berthd run {i + 1} stderr ({p}) -----\n{text}")
        return "\n".join(out)

    def cleanup(self) -> None:
        for c in self.clients:
            c.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.notify.close()
        shutil.rmtree(self.sock_dir, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# Domain helpers
# ------------------------------------------------------------------------------------------------

def make_host(rpc: RPCClient, name: str, *, vcpus: int = 32, memory_mb: int = 65536, disk_gb: int = 500,
              **extra) -> dict:
    return rpc.call("host.create", {"name": name, "vcpus": vcpus, "memory_mb": memory_mb, "disk_gb": disk_gb,
                                    **extra})


def make_hosts(rpc: RPCClient, *names: str, **fields) -> list[dict]:
    return [make_host(rpc, n, **fields) for n in names]


def lease_params(start: str, end: str, *, name: str = "lease", project: str = "proj-a", count: int | None = 1,
                 reservations: list | None = None, **extra) -> dict:
    if reservations is None:
        reservations = [{"kind": "host", "count": count}]
    return {"name": name, "project_id": project, "start": start, "end": end, "reservations": reservations, **extra}


def create_lease(rpc: RPCClient, start: str, end: str, **kw) -> dict:
    return rpc.call("lease.create", lease_params(start, end, **kw))


def hosts_of(lease: dict) -> list[str]:
    """Allocated host names over all reservations, in order."""
    return [a["host"] for r in lease["reservations"] for a in r["allocations"]]


def events(rpc: RPCClient, **params) -> list[dict]:
    """Every event (following next_cursor)."""
    out: list[dict] = []
    after = params.pop("after_seq", 0)
    while True:
        page = rpc.call("events.list", {"after_seq": after, "limit": 1000, **params})
        out += page["items"]
        if page["next_cursor"] is None:
            return out
        after = page["next_cursor"]


def error_of(reply: dict) -> dict:
    """The error object of a reply that must be an error (checked against components/Error.json)."""
    assert "error" in reply and "result" not in reply, f"expected an error reply, got {reply}"
    Schemas.get().check("components/Error.json", reply["error"], "error object")
    return reply["error"]


def refused(rpc: RPCClient, start: str, end: str, reservations: list, **kw) -> RPCError:
    """A lease.create that must be refused for lack of capacity (-32002, no_capacity)."""
    e = rpc.error("lease.create", lease_params(start, end, reservations=reservations, **kw), -32002)
    assert e.reason == "no_capacity"
    return e


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = DEADLINE, interval: float = 0.05) -> Any:
    """Polls `predicate` until it returns something truthy (used only for asynchronous work such as
    outbox delivery); returns that value or fails after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------------------------------------
# Calls from another uid/gid (roles)
# ------------------------------------------------------------------------------------------------

PROBE_ID = "__probe__"


def run_as(uid: int, gid: int, work: Callable[[], Any]) -> Any:
    """`work()` in a forked child running as uid/gid (no supplementary groups), as a client without
    root's admin role would; returns its JSON-serialisable result. An exception in the child fails
    the test here, with the child's message."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no pytest machinery from here on, and always _exit
        code = 0
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            result = {"ok": work()}
        except BaseException as e:  # report, never raise in the child
            result = {"exception": f"{type(e).__name__}: {e}"}
            code = 1
        try:
            data = json.dumps(result).encode()
            with os.fdopen(w, "wb") as f:
                f.write(data)
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    result = json.loads(data or b'{"exception": "child wrote nothing"}')
    if "exception" in result:
        raise AssertionError(f"client running as uid {uid} gid {gid} failed: {result['exception']}")
    return result["ok"]


def calls_as(uid: int, gid: int, socket_path: str, messages: list, timeout: float = REPLY_TIMEOUT) -> list:
    """Sends `messages` (requests, notifications or batches) on one connection made by a forked child
    running as uid/gid (no supplementary groups), then a probe request; returns one entry per message
    (its reply, or None for what expects no reply) and the probe's reply last. Because replies come
    in order, a reply to something that should get none shows up as a mismatch."""
    def work() -> list:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(socket_path)
        c = RPCClient(socket_path, sock=s, validate=False)
        out: list = []
        for m in messages + [{"jsonrpc": "2.0", "method": "system.health", "id": PROBE_ID}]:
            c.send(m)
            wants_reply = (isinstance(m, dict) and "id" in m) or (
                isinstance(m, list) and any(isinstance(x, dict) and "id" in x for x in m)) or (
                not isinstance(m, (dict, list)))
            out.append(c.recv() if wants_reply else None)
        return out

    return run_as(uid, gid, work)


def request(method: str, params: Any = None, id: Any = 1) -> dict:
    m: dict = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        m["params"] = params
    return m
