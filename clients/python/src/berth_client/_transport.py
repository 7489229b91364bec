"""One Unix-socket connection carrying newline-delimited JSON-RPC 2.0 (internal)."""

from __future__ import annotations

import decimal
import json
import select
import socket
import time
from typing import Any, Optional

from .errors import BerthConnectionError, BerthProtocolError, BerthTimeout

_CHUNK = 1 << 16


def _encode(value: Any) -> Any:
    """JSON for what json.dumps does not know: a Decimal as its decimal string (the daemon takes
    credit amounts as numbers or decimal strings, exactly)."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    raise TypeError(f"cannot send a {type(value).__name__} as JSON")


# `data.rule` of the error line (id null) berthd sends just before it closes a connection for one
# of its connection limits (docs/reliability.md, Resource limits).
_CLOSING_RULES = ("idle_timeout_s", "request_timeout_s", "max_connections", "max_connections_per_uid")


def _is_farewell(data: bytes) -> bool:
    """True when `data` starts with the line berthd sends before closing a connection on its own
    (e.g. the idle timeout): no reply is owed on it, so the next call may reconnect safely."""
    line, newline, _ = data.partition(b"\n")
    if not newline:
        return False
    try:
        msg = json.loads(line)
    except ValueError:
        return False
    if not isinstance(msg, dict) or msg.get("id", 0) is not None or not isinstance(msg.get("error"), dict):
        return False
    data_ = msg["error"].get("data")
    return isinstance(data_, dict) and data_.get("rule") in _CLOSING_RULES


class Connection:
    """A connected stream socket with line framing. Not thread-safe on its own."""

    def __init__(self, path: str, connect_timeout: Optional[float], *, decimals: bool = False):
        self.path = path
        self._parse_float = decimal.Decimal if decimals else None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(connect_timeout)
            sock.connect(path)
        except socket.timeout as e:
            sock.close()
            raise BerthTimeout(f"connecting to berthd at {path}: timed out") from e
        except OSError as e:
            sock.close()
            hint = " (is berthd running? pass its --socket path or set BERTH_SOCKET)" if isinstance(
                e, (FileNotFoundError, ConnectionRefusedError)) else ""
            raise BerthConnectionError(f"cannot connect to berthd at {path}: {e.strerror or e}{hint}") from e
        self.sock: Optional[socket.socket] = sock
        self._buf = bytearray()

    @property
    def closed(self) -> bool:
        return self.sock is None

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def shutdown(self) -> None:
        """Wakes a reader blocked in another thread (it sees end of stream)."""
        sock = self.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def peer_closed(self) -> bool:
        """True when the daemon has already closed this (idle) connection, e.g. it restarted or
        the connection outlived the daemon's `idle_timeout_s`.

        Looks without blocking; data that is waiting (a stray notification) is left in place."""
        if self.sock is None:
            return True
        if self._buf:
            return _is_farewell(bytes(self._buf))
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if not readable:
                return False
            waiting = self.sock.recv(_CHUNK, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            return waiting == b"" or _is_farewell(waiting)
        except BlockingIOError:
            return False
        except OSError:
            return True

    def send(self, message: Any) -> None:
        self.send_line(json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=_encode).encode())

    def send_line(self, data: bytes) -> None:
        if self.sock is None:
            raise BerthConnectionError("connection is closed")
        try:
            self.sock.settimeout(None)
            self.sock.sendall(data + b"\n")
        except OSError as e:
            self.close()
            raise BerthConnectionError(f"lost the connection to berthd at {self.path}: {e}") from e

    def read_message(self, deadline: Optional[float]) -> Any:
        """The next JSON text from the daemon. `deadline` is a time.monotonic() value (None: wait
        for ever). Raises BerthTimeout (connection left open: nothing was half-read), or
        BerthConnectionError at end of stream or on a socket error (connection closed)."""
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                if not line.strip():
                    continue
                try:
                    return json.loads(line, parse_float=self._parse_float)
                except ValueError as e:
                    self.close()
                    raise BerthProtocolError(f"berthd sent a line that is not JSON: {line[:200]!r}") from e
            if self.sock is None:
                raise BerthConnectionError("connection is closed")
            if deadline is None:
                self.sock.settimeout(None)
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BerthTimeout("no reply from berthd in time")
                self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(_CHUNK)
            except socket.timeout as e:
                raise BerthTimeout("no reply from berthd in time") from e
            except OSError as e:
                self.close()
                raise BerthConnectionError(f"lost the connection to berthd at {self.path}: {e}") from e
            if not chunk:
                self.close()
                raise BerthConnectionError(f"berthd at {self.path} closed the connection")
            self._buf += chunk
