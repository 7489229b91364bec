"""Turning Python arguments into contract params (internal)."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Dict, Union


class _Unset:
    """Marks a keyword argument that was not given: it is left out of the params (unlike None,
    which is sent as JSON null where the contract allows it)."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self):
        return (_Unset, ())


UNSET: Any = _Unset()

TimeLike = Union[str, _dt.datetime]
SecondsLike = Union[int, _dt.timedelta]


def format_time(value: _dt.datetime) -> str:
    """An aware datetime as the daemon prints times: UTC, second precision, `Z`
    (`2030-01-01T10:00:00Z`). A naive datetime is refused: its zone would be a guess."""
    if not isinstance(value, _dt.datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(f"naive datetime {value.isoformat()}: give it a timezone (e.g. datetime.timezone.utc)")
    return value.astimezone(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> _dt.datetime:
    """An RFC 3339 string from the daemon (`2030-01-01T10:00:00Z`, or with an offset) as an
    aware datetime."""
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    text = text.replace("t", "T", 1) if "T" not in text else text
    if "." in text:  # Python 3.9's fromisoformat wants 3 or 6 fraction digits
        head, _, rest = text.partition(".")
        digits = ""
        while rest and rest[0].isdigit():
            digits, rest = digits + rest[0], rest[1:]
        text = f"{head}.{(digits + '000000')[:6]}{rest}"
    parsed = _dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a zone: {value!r}")
    return parsed


def time_param(value: Any) -> Any:
    """A time param: a datetime is formatted, a string (RFC 3339, or `now` where the contract
    allows it) passes as is; so do UNSET and None."""
    if isinstance(value, _dt.datetime):
        return format_time(value)
    if isinstance(value, _dt.date):
        raise TypeError("a date is not a time: pass an aware datetime or an RFC 3339 string")
    return value


def seconds_param(value: Any) -> Any:
    """A duration param in integer seconds; a timedelta is converted (whole seconds only)."""
    if isinstance(value, _dt.timedelta):
        seconds = value.total_seconds()
        if seconds != int(seconds):
            raise ValueError(f"durations are whole seconds, got {value!r}")
        return int(seconds)
    return value


def build(**kwargs: Any) -> Dict[str, Any]:
    """The params object: every argument that was given, under its contract name (a trailing
    underscore, as in `from_`, is dropped)."""
    return {k.rstrip("_") if k.endswith("_") else k: v for k, v in kwargs.items() if v is not UNSET}
