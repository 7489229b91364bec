"""Exceptions raised by the Berth client.

An error reply from berthd is raised as a `BerthError` subclass chosen by its JSON-RPC `code`
(the contract's table, plus the standard JSON-RPC codes). Problems on the connection itself are
`BerthConnectionError` (and `BerthTimeout`), which are not `BerthError`s: no reply was received,
so whether a mutating call took effect is unknown (repeat it with the same `idempotency_key`).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Type

from ._contract import ERRORS

__all__ = [
    "BerthError",
    "ParseError",
    "InvalidRequest",
    "RequestTooLarge",
    "MethodNotFound",
    "InvalidParams",
    "InternalError",
    "NotFound",
    "NoCapacity",
    "InsufficientCredits",
    "Forbidden",
    "Conflict",
    "UpstreamError",
    "Unavailable",
    "PolicyViolation",
    "BerthConnectionError",
    "BerthTimeout",
    "BerthProtocolError",
    "ERROR_CLASSES",
    "error_from_reply",
]


class BerthError(Exception):
    """An error reply from berthd: `code`, `message` and `data` exactly as sent.

    `reason` is `data["reason"]` (every Berth error has one); `method` is the RPC method that
    was called, when known.
    """

    #: The JSON-RPC error code this class stands for (None on the base class).
    CODE: Optional[int] = None
    #: The `data.reason` this class stands for (None on the base class).
    REASON: Optional[str] = None

    def __init__(self, code: int, message: str, data: Any = None, *, method: Optional[str] = None):
        super().__init__(code, message, data)
        self.code = code
        self.message = message
        self.data = data
        self.method = method

    @property
    def reason(self) -> Optional[str]:
        return self.data.get("reason") if isinstance(self.data, dict) else None

    def __str__(self) -> str:
        where = f"{self.method}: " if self.method else ""
        text = f"{where}{self.message} (code {self.code}"
        if self.reason:
            text += f", reason {self.reason}"
        return text + ")"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r}, data={self.data!r})"

    def __reduce__(self):
        return (_rebuild, (type(self), self.code, self.message, self.data, self.method))


def _rebuild(cls, code, message, data, method):
    return cls(code, message, data, method=method)


# --- JSON-RPC 2.0 protocol errors ---------------------------------------------------------------

class ParseError(BerthError):
    """-32700: the request line was not valid JSON (the connection stays usable)."""
    CODE, REASON = ERRORS["ParseError"]


class InvalidRequest(BerthError):
    """-32600: not a valid JSON-RPC 2.0 request (or an empty batch)."""
    CODE, REASON = ERRORS["InvalidRequest"]


class RequestTooLarge(InvalidRequest):
    """-32600 with reason `request_too_large`: the request line was longer than the daemon's
    limit (`data["limit"]` bytes); the daemon closed the connection after this reply (the client
    reconnects on its next call)."""
    CODE, REASON = ERRORS["InvalidRequest"][0], "request_too_large"

    @property
    def limit(self) -> Optional[int]:
        return self.data.get("limit") if isinstance(self.data, dict) else None


class MethodNotFound(BerthError):
    """-32601: unknown method (also `clock.*` when the daemon does not run a manual clock)."""
    CODE, REASON = ERRORS["MethodNotFound"]


class InvalidParams(BerthError):
    """-32602: params do not match the method's schema; `errors` lists `{path, message}`."""
    CODE, REASON = ERRORS["InvalidParams"]

    @property
    def errors(self) -> List[Dict[str, str]]:
        return list(self.data.get("errors") or []) if isinstance(self.data, dict) else []

    @property
    def paths(self) -> List[str]:
        return [e.get("path", "") for e in self.errors]


class InternalError(BerthError):
    """-32603: unexpected server failure."""
    CODE, REASON = ERRORS["InternalError"]


# --- Berth application errors (schemas/openrpc.json, components.errors) -----------------------

class NotFound(BerthError):
    """-32001: unknown lease, host, preemptible or account."""
    CODE, REASON = ERRORS["NotFound"]


class NoCapacity(BerthError):
    """-32002: the request cannot be placed; `earliest_start` when a later start would fit."""
    CODE, REASON = ERRORS["NoCapacity"]

    @property
    def earliest_start(self) -> Optional[str]:
        return self.data.get("earliest_start") if isinstance(self.data, dict) else None


class InsufficientCredits(BerthError):
    """-32003: credit enforcement is on and the project's balance is short."""
    CODE, REASON = ERRORS["InsufficientCredits"]

    def _get(self, key: str) -> Any:
        return self.data.get(key) if isinstance(self.data, dict) else None

    @property
    def resource_class(self) -> Optional[str]:
        return self._get("resource_class")

    @property
    def required(self) -> Optional[float]:
        return self._get("required")

    @property
    def available(self) -> Optional[float]:
        return self._get("available")


class Forbidden(BerthError):
    """-32004: the caller's role (from its uid/gid) may not do this."""
    CODE, REASON = ERRORS["Forbidden"]


class Conflict(BerthError):
    """-32005: invalid state for the operation, duplicate host name, idempotency key reused with
    different params, lost race."""
    CODE, REASON = ERRORS["Conflict"]


class UpstreamError(BerthError):
    """-32006: OpenStack refused or failed, after retries."""
    CODE, REASON = ERRORS["UpstreamError"]


class Unavailable(BerthError):
    """-32007: the daemon is shutting down or its storage is read-only; retry later."""
    CODE, REASON = ERRORS["Unavailable"]


class PolicyViolation(BerthError):
    """-32008: a configured policy forbids the request; `rule` names it."""
    CODE, REASON = ERRORS["PolicyViolation"]

    @property
    def rule(self) -> Optional[str]:
        return self.data.get("rule") if isinstance(self.data, dict) else None


#: code -> exception class, for every code the contract names (a class per error, named as the
#: contract names it).
ERROR_CLASSES: Dict[int, Type[BerthError]] = {code: globals()[name] for name, (code, _) in ERRORS.items()}


def error_from_reply(error: Any, method: Optional[str] = None) -> BerthError:
    """The exception for a JSON-RPC `error` object: the class for its code (a more specific one
    for `request_too_large`), `BerthError` itself for a code the contract does not name."""
    if not isinstance(error, dict):
        return BerthError(-32603, f"malformed error object: {error!r}", None, method=method)
    code = error.get("code")
    message = error.get("message")
    data = error.get("data")
    cls: Type[BerthError] = ERROR_CLASSES.get(code, BerthError) if isinstance(code, int) else BerthError
    if cls is InvalidRequest and isinstance(data, dict) and data.get("reason") == RequestTooLarge.REASON:
        cls = RequestTooLarge
    return cls(code, message if isinstance(message, str) else str(message), data, method=method)


# --- the connection ---------------------------------------------------------------------------

class BerthConnectionError(ConnectionError):
    """The daemon could not be reached, or the connection broke before the reply arrived (a
    mutating call may or may not have taken effect: repeat it with the same idempotency_key)."""


class BerthTimeout(BerthConnectionError, TimeoutError):
    """No reply within the client's timeout. The connection is closed (a late reply would be
    out of step); the next call opens a new one."""


class BerthProtocolError(BerthConnectionError):
    """The daemon sent something that is not a JSON-RPC 2.0 reply to what was asked (the
    connection is closed)."""
