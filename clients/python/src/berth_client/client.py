"""`BerthClient`: one connection to berthd, one Python method per RPC method."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from typing import Any, Deque, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from . import _params as P
from ._params import UNSET, SecondsLike, TimeLike
from ._contract import METHODS
from ._transport import Connection
from .errors import (BerthConnectionError, BerthError, BerthProtocolError, BerthTimeout, RequestTooLarge,
                     error_from_reply)

#: Where berthd listens unless told otherwise.
DEFAULT_SOCKET = "/run/berth/berth.sock"
#: Seconds to wait for one reply unless the client is given another timeout.
DEFAULT_TIMEOUT = 60.0

#: Python method name -> RPC method name, for every method of the contract (schemas/openrpc.json).
RPC_METHODS: Dict[str, str] = {name.replace(".", "_"): name for name in METHODS}

JSON = Any
Call = Tuple[str, Optional[Dict[str, Any]]]


def _socket_path(path: Union[str, "os.PathLike[str]", None]) -> str:
    if path is None:
        return os.environ.get("BERTH_SOCKET") or DEFAULT_SOCKET
    return os.fspath(path)


class BerthClient:
    """A blocking JSON-RPC client for berthd's Unix socket.

    ``BerthClient(socket_path=None, timeout=60.0)``: `socket_path` defaults to ``$BERTH_SOCKET``,
    else ``/run/berth/berth.sock``; `timeout` is how long one call may wait for its reply (None:
    for ever). The connection is opened on the first call (or by ``connect()``), and opened again
    on the next call after the daemon closed it (a restart, an over-long request line).

    Every RPC method has a Python method of the same name in snake_case (``lease.create`` ->
    ``lease_create``) taking the contract's params as keyword arguments (``from`` is spelled
    ``from_``). Arguments left out are not sent; ``None`` is sent as JSON null. Time params take
    an aware ``datetime`` or an RFC 3339 string; duration params (``*_s``, ``seconds``) take int
    seconds or a ``timedelta``. Results are the decoded JSON: plain dicts, lists, strings and
    numbers (times stay RFC 3339 strings; ``parse_time`` converts one). With ``decimals=True``
    non-integer numbers (credit amounts) are ``decimal.Decimal`` instead of float; a Decimal in
    params is always sent as its exact decimal string.

    Error replies raise the ``BerthError`` subclass for their code (``NotFound``,
    ``InsufficientCredits``, ...); a broken connection raises ``BerthConnectionError``.

    Threads: calls on one client are serialized by a lock (one connection, one request at a
    time), so a client may be shared, but threads that call concurrently should each have their
    own client. A ``Subscription`` has its own connection.
    """

    def __init__(self, socket_path: Union[str, "os.PathLike[str]", None] = None, *,
                 timeout: Optional[float] = DEFAULT_TIMEOUT, decimals: bool = False):
        self.socket_path = _socket_path(socket_path)
        self.timeout = timeout
        self.decimals = decimals
        self._conn: Optional[Connection] = None
        self._ids = itertools.count(1)
        self._lock = threading.RLock()
        self._closed = False
        #: Server notifications that arrived on this connection (only after a raw
        #: ``events_subscribe()``; ``subscribe()`` is the iterator that handles them properly).
        self.notifications: Deque[Dict[str, Any]] = deque(maxlen=10_000)

    # --- connection ----------------------------------------------------------------------------

    def connect(self) -> "BerthClient":
        """Opens the connection now (calls do it on demand). Raises BerthConnectionError."""
        with self._lock:
            self._connection()
        return self

    def close(self) -> None:
        """Closes the connection. A later call opens a new one."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed

    def __enter__(self) -> "BerthClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BerthClient({self.socket_path!r}, timeout={self.timeout!r})"

    def _connection(self) -> Connection:
        conn = self._conn
        if conn is not None and (conn.closed or conn.peer_closed()):
            # Closed while idle (e.g. berthd restarted): nothing was in flight, so reconnecting
            # cannot repeat anything.
            conn.close()
            conn = None
        if conn is None:
            conn = self._conn = Connection(self.socket_path, self.timeout, decimals=self.decimals)
        return conn

    def _deadline(self) -> Optional[float]:
        return None if self.timeout is None else time.monotonic() + self.timeout

    def _fail(self, conn: Connection) -> None:
        conn.close()
        if self._conn is conn:
            self._conn = None

    def _read_reply(self, conn: Connection, deadline: Optional[float]) -> Any:
        """The next message that is not a server notification."""
        while True:
            msg = conn.read_message(deadline)
            if isinstance(msg, dict) and "method" in msg and "id" not in msg:
                self.notifications.append(msg)
                continue
            return msg

    def _exchange(self, send: Any, raw: bool = False) -> Any:
        """Sends one JSON text (or, with raw, one line of bytes) and returns the next reply."""
        conn = self._connection()
        try:
            if raw:
                conn.send_line(send)
            else:
                conn.send(send)
            return self._read_reply(conn, self._deadline())
        except BerthTimeout:
            self._fail(conn)  # a late reply would be taken for the next call's
            raise
        except BerthConnectionError:
            self._fail(conn)
            raise

    # --- generic calls -------------------------------------------------------------------------

    def call(self, method: str, params: Optional[Dict[str, Any]] = None) -> JSON:
        """Calls any RPC method with a params object; returns its result or raises."""
        with self._lock:
            rid = next(self._ids)
            msg: Dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid}
            if params is not None:
                msg["params"] = params
            reply = self._exchange(msg)
            return self._unwrap(reply, rid, method)

    def _unwrap(self, reply: Any, rid: Any, method: Optional[str]) -> JSON:
        if not isinstance(reply, dict) or reply.get("jsonrpc") != "2.0" or ("result" in reply) == ("error" in reply):
            if self._conn is not None:
                self._fail(self._conn)
            raise BerthProtocolError(f"{method}: not a JSON-RPC 2.0 response: {str(reply)[:300]}")
        if "error" in reply:
            err = error_from_reply(reply["error"], method)
            if isinstance(err, RequestTooLarge) and self._conn is not None:
                self._fail(self._conn)  # the daemon closes the connection after this reply
            if reply.get("id") not in (rid, None):
                raise BerthProtocolError(f"{method}: reply for id {reply.get('id')!r}, expected {rid!r}")
            raise err
        if reply.get("id") != rid:
            if self._conn is not None:
                self._fail(self._conn)
            raise BerthProtocolError(f"{method}: reply for id {reply.get('id')!r}, expected {rid!r}")
        return reply["result"]

    def _call_line(self, line: bytes) -> JSON:
        """Sends one raw request line (tests: malformed input); returns the result or raises."""
        with self._lock:
            reply = self._exchange(line, raw=True)
            rid = reply.get("id") if isinstance(reply, dict) else None
            return self._unwrap(reply, rid, None)

    def notify(self, method: str, params: Optional[Dict[str, Any]] = None) -> None:
        """Sends a JSON-RPC notification: no id, no reply, errors are not reported."""
        with self._lock:
            msg: Dict[str, Any] = {"jsonrpc": "2.0", "method": method}
            if params is not None:
                msg["params"] = params
            conn = self._connection()
            try:
                conn.send(msg)
            except BerthConnectionError:
                self._fail(conn)
                raise

    def batch(self, calls: Iterable[Call]) -> List[Union[JSON, BerthError]]:
        """Sends `calls` (``(method, params)`` pairs) as one JSON-RPC batch. Returns one entry per
        call, in order: its result, or the ``BerthError`` it failed with (returned, not raised,
        so one failure does not hide the other results). An empty list sends nothing."""
        calls = list(calls)
        if not calls:
            return []
        with self._lock:
            ids = [next(self._ids) for _ in calls]
            msgs = []
            for rid, (method, params) in zip(ids, calls):
                m: Dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid}
                if params is not None:
                    m["params"] = params
                msgs.append(m)
            reply = self._exchange(msgs)
            if isinstance(reply, dict) and "error" in reply:  # the batch as a whole was refused
                raise error_from_reply(reply["error"], "batch")
            if not isinstance(reply, list):
                if self._conn is not None:
                    self._fail(self._conn)
                raise BerthProtocolError(f"batch: expected an array of responses, got {str(reply)[:300]}")
            by_id = {r.get("id"): r for r in reply if isinstance(r, dict)}
            out: List[Union[JSON, BerthError]] = []
            for rid, (method, _) in zip(ids, calls):
                r = by_id.get(rid)
                if r is None:
                    raise BerthProtocolError(f"batch: no response for {method} (id {rid})")
                try:
                    out.append(self._unwrap(r, rid, method))
                except BerthError as e:
                    out.append(e)
            return out

    def iter_items(self, method: str, params: Optional[Dict[str, Any]] = None) -> Iterator[JSON]:
        """Every item of a paged list method (``lease.list``, ``preemptible.list``,
        ``credits.ledger``, ``actions.list``, ``events.list``), following ``next_cursor``."""
        params = dict(params or {})
        cursor_param = "after_seq" if method == "events.list" else "cursor"
        while True:
            page = self.call(method, params)
            yield from page.get("items", [])
            cursor = page.get("next_cursor")
            if cursor is None:
                return
            params[cursor_param] = cursor

    def subscribe(self, types: Optional[Sequence[str]] = None, after_seq: Optional[int] = None, *,
                  reconnect: bool = True, reconnect_timeout: Optional[float] = None) -> "Subscription":
        """An iterator of events matching `types` (patterns such as ``"lease.*"``; default all) on
        a connection of its own: every event with ``seq > after_seq`` in seq order (catching up
        from ``events.list`` first), then new ones as the daemon publishes them. With
        ``after_seq=None`` only events from now on. When the connection drops (berthd restarts)
        it reconnects and resumes after the last event it delivered: none is lost or repeated.
        See ``Subscription``."""
        from .subscription import Subscription
        return Subscription(self.socket_path, types=types, after_seq=after_seq, timeout=self.timeout,
                            reconnect=reconnect, reconnect_timeout=reconnect_timeout, decimals=self.decimals)

    # --- discovery and health ------------------------------------------------------------------

    def rpc_discover(self) -> Dict[str, Any]:
        """The OpenRPC document describing the daemon's API."""
        return self.call("rpc.discover")

    def system_health(self) -> Dict[str, Any]:
        """``{status, version, uptime_s, storage, adapter, ...}``."""
        return self.call("system.health")

    # --- clock (only with berthd --clock manual) ----------------------------------------------

    def clock_now(self) -> Dict[str, Any]:
        """``{now}`` of the manual clock."""
        return self.call("clock.now")

    def clock_set(self, *, now: TimeLike) -> Dict[str, Any]:
        """Moves the manual clock to `now`, processing every event due up to it first."""
        return self.call("clock.set", P.build(now=P.time_param(now)))

    def clock_advance(self, *, seconds: SecondsLike) -> Dict[str, Any]:
        """Moves the manual clock forward, processing every event due up to the new time."""
        return self.call("clock.advance", P.build(seconds=P.seconds_param(seconds)))

    # --- hosts (admin) -------------------------------------------------------------------------

    def host_create(self, *, name: str, vcpus: int, memory_mb: int, disk_gb: int, gpus: Any = UNSET,
                    properties: Any = UNSET, reservable: Any = UNSET, idempotency_key: Any = UNSET) -> Dict[str, Any]:
        """Registers a host; returns it."""
        return self.call("host.create", P.build(name=name, vcpus=vcpus, memory_mb=memory_mb, disk_gb=disk_gb,
                                                gpus=gpus, properties=properties, reservable=reservable,
                                                idempotency_key=idempotency_key))

    def host_get(self, *, name: str) -> Dict[str, Any]:
        return self.call("host.get", P.build(name=name))

    def host_list(self, *, properties: Any = UNSET) -> Dict[str, Any]:
        """``{items, next_cursor: None}``, optionally filtered by a property filter."""
        return self.call("host.list", P.build(properties=properties))

    def host_update(self, *, name: str, vcpus: Any = UNSET, memory_mb: Any = UNSET, disk_gb: Any = UNSET,
                    gpus: Any = UNSET, properties: Any = UNSET, state: Any = UNSET, reservable: Any = UNSET,
                    idempotency_key: Any = UNSET) -> Dict[str, Any]:
        return self.call("host.update", P.build(name=name, vcpus=vcpus, memory_mb=memory_mb, disk_gb=disk_gb,
                                                gpus=gpus, properties=properties, state=state,
                                                reservable=reservable, idempotency_key=idempotency_key))

    def host_delete(self, *, name: str, idempotency_key: Any = UNSET) -> Dict[str, Any]:
        return self.call("host.delete", P.build(name=name, idempotency_key=idempotency_key))

    # --- leases --------------------------------------------------------------------------------

    def lease_create(self, *, name: str, project_id: str, start: TimeLike, end: TimeLike,
                     reservations: List[Dict[str, Any]], user_id: Any = UNSET, before_end_s: Any = UNSET,
                     dry_run: Any = UNSET, idempotency_key: Any = UNSET) -> Dict[str, Any]:
        """Reserves capacity from `start` (a time or ``"now"``) to `end`; returns the lease.
        Raises NoCapacity, InsufficientCredits, PolicyViolation, ..."""
        return self.call("lease.create", P.build(
            name=name, project_id=project_id, user_id=user_id, start=P.time_param(start), end=P.time_param(end),
            before_end_s=P.seconds_param(before_end_s), reservations=reservations, dry_run=dry_run,
            idempotency_key=idempotency_key))

    def lease_get(self, *, id: str) -> Dict[str, Any]:
        return self.call("lease.get", P.build(id=id))

    def lease_list(self, *, project_id: Any = UNSET, status: Any = UNSET, from_: Any = UNSET, to: Any = UNSET,
                   cursor: Any = UNSET, limit: Any = UNSET) -> Dict[str, Any]:
        """One page ``{items, next_cursor}``; ``from_``/``to`` select leases overlapping that
        window. ``iter_items("lease.list", {...})`` follows the cursor."""
        return self.call("lease.list", P.build(project_id=project_id, status=status, from_=P.time_param(from_),
                                               to=P.time_param(to), cursor=cursor, limit=limit))

    def lease_update(self, *, id: str, name: Any = UNSET, start: Any = UNSET, end: Any = UNSET,
                     before_end_s: Any = UNSET, reservations: Any = UNSET, dry_run: Any = UNSET,
                     idempotency_key: Any = UNSET) -> Dict[str, Any]:
        return self.call("lease.update", P.build(
            id=id, name=name, start=P.time_param(start), end=P.time_param(end),
            before_end_s=P.seconds_param(before_end_s), reservations=reservations, dry_run=dry_run,
            idempotency_key=idempotency_key))

    def lease_delete(self, *, id: str, idempotency_key: Any = UNSET) -> Dict[str, Any]:
        """``{refund: {resource_class: amount}}``; an active lease ends now."""
        return self.call("lease.delete", P.build(id=id, idempotency_key=idempotency_key))

    # --- availability --------------------------------------------------------------------------

    def availability_find(self, *, reservations: List[Dict[str, Any]], duration_s: SecondsLike,
                          earliest: Any = UNSET, latest: Any = UNSET, limit: Any = UNSET) -> Dict[str, Any]:
        """``{items: [{start, end}]}``: the earliest windows where the whole request fits."""
        return self.call("availability.find", P.build(
            reservations=reservations, duration_s=P.seconds_param(duration_s), earliest=P.time_param(earliest),
            latest=P.time_param(latest), limit=limit))

    def calendar_get(self, *, from_: TimeLike, to: TimeLike, hosts: Any = UNSET) -> Dict[str, Any]:
        """Per host, the allocations overlapping ``[from_, to)``."""
        return self.call("calendar.get", P.build(from_=P.time_param(from_), to=P.time_param(to), hosts=hosts))

    # --- preemptibles --------------------------------------------------------------------------

    def preemptible_create(self, *, project_id: str, vcpus: int, memory_mb: int, disk_gb: int,
                           gpu_profile: Any = UNSET, min_lifetime_s: Any = UNSET, server: Any = UNSET,
                           slurm_node: Any = UNSET, idempotency_key: Any = UNSET) -> Dict[str, Any]:
        return self.call("preemptible.create", P.build(
            project_id=project_id, vcpus=vcpus, memory_mb=memory_mb, disk_gb=disk_gb, gpu_profile=gpu_profile,
            min_lifetime_s=P.seconds_param(min_lifetime_s), server=server, slurm_node=slurm_node,
            idempotency_key=idempotency_key))

    def preemptible_get(self, *, id: str) -> Dict[str, Any]:
        return self.call("preemptible.get", P.build(id=id))

    def preemptible_list(self, *, project_id: Any = UNSET, host: Any = UNSET, status: Any = UNSET,
                         slurm_node: Any = UNSET, cursor: Any = UNSET, limit: Any = UNSET) -> Dict[str, Any]:
        return self.call("preemptible.list", P.build(project_id=project_id, host=host, status=status,
                                                     slurm_node=slurm_node, cursor=cursor, limit=limit))

    def preemptible_delete(self, *, id: str, idempotency_key: Any = UNSET) -> Dict[str, Any]:
        return self.call("preemptible.delete", P.build(id=id, idempotency_key=idempotency_key))

    def preemptible_horizon(self, *, host: Any = UNSET, id: Any = UNSET) -> Dict[str, Any]:
        """``{preempt_at}`` for a host or a preemptible (give exactly one of them)."""
        return self.call("preemptible.horizon", P.build(host=host, id=id))

    # --- credits -------------------------------------------------------------------------------

    def credits_grant(self, *, project_id: str, resource_class: str, amount: float, valid_from: Any = UNSET,
                      valid_to: Any = UNSET, note: Any = UNSET, idempotency_key: Any = UNSET) -> Dict[str, Any]:
        return self.call("credits.grant", P.build(
            project_id=project_id, resource_class=resource_class, amount=amount,
            valid_from=P.time_param(valid_from), valid_to=P.time_param(valid_to), note=note,
            idempotency_key=idempotency_key))

    def credits_balance(self, *, project_id: str) -> Dict[str, Any]:
        """``{resource_class: {granted, spent, available, expired}}``."""
        return self.call("credits.balance", P.build(project_id=project_id))

    def credits_ledger(self, *, project_id: str, cursor: Any = UNSET, limit: Any = UNSET) -> Dict[str, Any]:
        return self.call("credits.ledger", P.build(project_id=project_id, cursor=cursor, limit=limit))

    # --- events and actions --------------------------------------------------------------------

    def events_subscribe(self, *, types: Any = UNSET) -> Dict[str, Any]:
        """The raw RPC: event notifications then arrive on this client's connection and are
        queued in ``notifications``. Prefer ``subscribe()``, which catches up, reconnects and
        never repeats an event."""
        return self.call("events.subscribe", P.build(types=types))

    def events_list(self, *, after_seq: Any = UNSET, limit: Any = UNSET, types: Any = UNSET) -> Dict[str, Any]:
        """Durable events with ``seq > after_seq``, in order: ``{items, next_cursor}``."""
        return self.call("events.list", P.build(after_seq=after_seq, limit=limit, types=types))

    def actions_list(self, *, status: Any = UNSET, lease_id: Any = UNSET, cursor: Any = UNSET,
                     limit: Any = UNSET) -> Dict[str, Any]:
        return self.call("actions.list", P.build(status=status, lease_id=lease_id, cursor=cursor, limit=limit))
