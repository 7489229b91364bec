"""Python client for Berth, the reservation scheduler daemon (JSON-RPC 2.0 on a Unix socket).

    from berth_client import BerthClient, InsufficientCredits

    with BerthClient("/run/berth/berth.sock") as berth:
        lease = berth.lease_create(name="run-1", project_id="proj-a", start="now",
                                   end="2030-01-01T12:00:00Z",
                                   reservations=[{"kind": "gpu", "profile": "1g.5gb", "count": 2}])

Standard library only. Results are plain dicts (decoded JSON); errors are `BerthError`
subclasses chosen by code. See clients/python/README.md and docs/python-client.md.
"""

from ._params import UNSET, format_time, parse_time
from .client import DEFAULT_SOCKET, DEFAULT_TIMEOUT, RPC_METHODS, BerthClient
from .errors import (ERROR_CLASSES, BerthConnectionError, BerthError, BerthProtocolError, BerthTimeout, Conflict,
                     Forbidden, InsufficientCredits, InternalError, InvalidParams, InvalidRequest, MethodNotFound,
                     NoCapacity, NotFound, ParseError, PolicyViolation, RequestTooLarge, Unavailable, UpstreamError,
                     error_from_reply)
from .subscription import Subscription

__version__ = "1.0.0"

__all__ = [
    "BerthClient", "Subscription", "RPC_METHODS", "DEFAULT_SOCKET", "DEFAULT_TIMEOUT", "UNSET",
    "format_time", "parse_time",
    "BerthError", "ParseError", "InvalidRequest", "RequestTooLarge", "MethodNotFound", "InvalidParams",
    "InternalError", "NotFound", "NoCapacity", "InsufficientCredits", "Forbidden", "Conflict", "UpstreamError",
    "Unavailable", "PolicyViolation", "ERROR_CLASSES", "error_from_reply",
    "BerthConnectionError", "BerthTimeout", "BerthProtocolError",
]
