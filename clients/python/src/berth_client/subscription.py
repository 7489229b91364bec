"""`Subscription`: the event stream, resumable by seq across reconnects."""

from __future__ import annotations

import itertools
import time
from collections import deque
from typing import Any, Deque, Dict, List, Optional, Sequence

from ._transport import Connection
from .errors import BerthConnectionError, BerthError, BerthProtocolError, BerthTimeout, Unavailable, error_from_reply

_PAGE = 1000
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 1.0


class Subscription:
    """Iterates over Berth events (plain dicts ``{seq, type, at, ...}``) in seq order.

    Made by ``BerthClient.subscribe(types=None, after_seq=None, reconnect=True,
    reconnect_timeout=None)``. On (re)connecting it sends ``events.subscribe`` first and then
    reads ``events.list`` from the last seq it has, so that every event is either in the list
    or arrives as a notification afterwards; events seen both ways are passed on once (by seq).
    Each event is passed on exactly once, in ascending seq. The ``subscription`` member that
    notifications carry is removed, so live and caught-up events look the same.

    - ``for event in sub:`` blocks until the next event; it ends after ``close()``.
    - ``sub.next(timeout=5)`` returns the next event, or None when none came within `timeout`.
    - ``sub.last_seq``: the seq of the last event handed out (store it to resume later with
      ``subscribe(after_seq=...)``).
    - When the connection drops, the subscription reconnects (backing off up to 1 s between
      tries) and resumes; with ``reconnect=False``, or when ``reconnect_timeout`` seconds pass
      without a connection, ``next()`` raises ``BerthConnectionError``.

    One thread iterates; ``close()`` may be called from another thread to stop it.
    """

    def __init__(self, socket_path: str, *, types: Optional[Sequence[str]] = None, after_seq: Optional[int] = None,
                 timeout: Optional[float] = 60.0, reconnect: bool = True, reconnect_timeout: Optional[float] = None,
                 decimals: bool = False):
        if isinstance(types, str):
            types = [types]
        self.socket_path = socket_path
        self.types: Optional[List[str]] = list(types) if types else None
        self.timeout = timeout
        self.reconnect = reconnect
        self.reconnect_timeout = reconnect_timeout
        self.decimals = decimals
        #: How many times the subscription has connected (1 after the first connection).
        self.connections = 0
        #: The subscription id the daemon gave on the current connection.
        self.subscription_id: Optional[str] = None
        self._filtered = bool(self.types) and "*" not in (self.types or [])
        self._high: Optional[int] = after_seq  # highest seq queued (or known to be before the start)
        self._last: Optional[int] = after_seq
        self._queue: Deque[Dict[str, Any]] = deque()
        self._stash: List[Dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._conn: Optional[Connection] = None
        self._closed = False
        self._reading = False
        self._down_since: Optional[float] = None  # when the connection was lost, while it is
        self._open(deadline=None if timeout is None else time.monotonic() + timeout)

    # --- public --------------------------------------------------------------------------------

    @property
    def last_seq(self) -> Optional[int]:
        """The seq of the last event returned (``after_seq`` before any; None if that was None)."""
        return self._last

    @property
    def closed(self) -> bool:
        return self._closed

    def __iter__(self) -> "Subscription":
        return self

    def __next__(self) -> Dict[str, Any]:
        event = self.next(timeout=None)
        if event is None:
            raise StopIteration
        return event

    def next(self, timeout: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """The next event; None when `timeout` seconds pass first (or the subscription is closed)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._closed:
                return None
            if self._queue:
                event = self._queue.popleft()
                self._last = event["seq"]
                return event
            if self._conn is None or self._conn.closed:
                if not self._reopen(deadline):
                    return None
                continue
            conn = self._conn
            self._reading = True
            try:
                msg = conn.read_message(deadline)
            except BerthTimeout:
                return None
            except BerthConnectionError:
                if self._closed:
                    conn.close()
                    return None
                self._drop()
                continue
            finally:
                self._reading = False
            try:
                self._take(msg)
                self._merge_stash()
            except BerthConnectionError:
                self._drop()

    def close(self) -> None:
        """Stops the subscription and closes its connection (safe from another thread)."""
        self._closed = True
        conn = self._conn
        if conn is not None:
            conn.shutdown()  # wakes a next() blocked in another thread, which then closes it
            if not self._reading:
                conn.close()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Subscription types={self.types} last_seq={self._last} connections={self.connections}>"

    # --- connection ----------------------------------------------------------------------------

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self.subscription_id = None
        if not self.reconnect and not self._closed:
            raise BerthConnectionError(f"the event subscription's connection to {self.socket_path} was lost")

    def _reopen(self, deadline: Optional[float]) -> bool:
        """Reconnects with backoff; False when `deadline` passed first. Raises
        BerthConnectionError once `reconnect_timeout` has passed without success."""
        if not self.reconnect:
            raise BerthConnectionError(f"the event subscription's connection to {self.socket_path} was lost")
        if self._down_since is None:
            self._down_since = time.monotonic()
        give_up = None if self.reconnect_timeout is None else self._down_since + self.reconnect_timeout
        delay = _BACKOFF_FIRST
        while not self._closed:
            try:
                self._open(deadline=None if self.timeout is None else time.monotonic() + self.timeout)
                self._down_since = None
                return True
            except (BerthConnectionError, Unavailable) as e:
                last_error: Exception = e
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
            now = time.monotonic()
            if give_up is not None and now >= give_up:
                raise BerthConnectionError(
                    f"could not resubscribe to {self.socket_path} within {self.reconnect_timeout} s: {last_error}"
                ) from last_error
            wait = delay
            if deadline is not None:
                if now >= deadline:
                    return False
                wait = min(wait, deadline - now)
            if give_up is not None:
                wait = min(wait, max(0.0, give_up - now))
            time.sleep(wait)
            delay = min(delay * 2, _BACKOFF_MAX)
        return False

    def _open(self, deadline: Optional[float]) -> None:
        """Connects, subscribes, then catches up from events.list (see the class docstring)."""
        conn = Connection(self.socket_path, self.timeout, decimals=self.decimals)
        self._conn = conn
        self._stash = []
        try:
            params: Dict[str, Any] = {"types": self.types} if self.types else {}
            result = self._request("events.subscribe", params, deadline)
            self.subscription_id = result.get("subscription") if isinstance(result, dict) else None
            if self._high is None:
                self._high = self._head(deadline)
                if self._last is None:
                    self._last = self._high
            self._catch_up(deadline)
            self._merge_stash()
        except BaseException:
            conn.close()
            self._conn = None
            raise
        self.connections += 1

    def _request(self, method: str, params: Dict[str, Any], deadline: Optional[float]) -> Any:
        """One call on the subscription's connection; notifications that come first are stashed."""
        assert self._conn is not None
        rid = next(self._ids)
        self._conn.send({"jsonrpc": "2.0", "method": method, "params": params, "id": rid})
        while True:
            msg = self._conn.read_message(deadline)
            if isinstance(msg, dict) and "id" not in msg and "method" in msg:
                self._take(msg, stash=True)
                continue
            if not isinstance(msg, dict) or msg.get("id") != rid and "error" not in msg:
                self._conn.close()
                raise BerthProtocolError(f"{method}: unexpected reply {str(msg)[:300]}")
            if "error" in msg:
                raise error_from_reply(msg["error"], method)
            return msg.get("result")

    def _list(self, after_seq: int, limit: int, deadline: Optional[float]) -> Dict[str, Any]:
        params: Dict[str, Any] = {"after_seq": after_seq, "limit": limit}
        if self.types:
            params["types"] = self.types
        return self._request("events.list", params, deadline)

    def _head(self, deadline: Optional[float]) -> int:
        """The seq of the newest matching event (0 if none), in O(log n) events.list calls."""

        def first_after(seq: int) -> Optional[int]:
            items = self._list(seq, 1, deadline)["items"]
            return items[0]["seq"] if items else None

        lo = first_after(0)
        if lo is None:
            return 0
        hi: Optional[int] = None  # no matching event after hi
        while True:
            if hi is None:
                probe = lo * 2
            elif hi <= lo:
                return lo
            else:
                probe = (lo + hi) // 2
            found = first_after(probe)
            if found is None:
                if probe == lo:
                    return lo
                hi = probe
            else:
                lo = found

    def _catch_up(self, deadline: Optional[float], until: Optional[int] = None) -> None:
        """Queues every stored event after the highest queued seq (up to `until`, when given)."""
        assert self._high is not None
        while True:
            page = self._list(self._high, _PAGE, deadline)
            for event in page["items"]:
                if until is not None and event["seq"] >= until:
                    return
                self._enqueue(event)
            if page.get("next_cursor") is None:
                return

    # --- events --------------------------------------------------------------------------------

    def _take(self, msg: Any, stash: bool = False) -> None:
        if not (isinstance(msg, dict) and msg.get("method") == "event" and isinstance(msg.get("params"), dict)):
            return  # a late reply or another notification: not ours
        event = dict(msg["params"])
        event.pop("subscription", None)
        if stash or self._high is None:
            self._stash.append(event)
            return
        seq = event.get("seq")
        if not isinstance(seq, int) or seq <= self._high:
            return
        if not self._filtered and seq > self._high + 1:
            # Seqs are gap-free: something was missed (should not happen); fetch it first.
            self._catch_up(None if self.timeout is None else time.monotonic() + self.timeout, until=seq)
        self._enqueue(event)

    def _merge_stash(self) -> None:
        stash, self._stash = self._stash, []
        for event in sorted(stash, key=lambda e: e.get("seq", 0)):
            seq = event.get("seq")
            if isinstance(seq, int) and self._high is not None and seq > self._high:
                self._enqueue(event)

    def _enqueue(self, event: Dict[str, Any]) -> None:
        seq = event["seq"]
        if self._high is not None and seq <= self._high:
            return
        self._queue.append(event)
        self._high = seq
