#!/usr/bin/env python3
"""HTTP fuzzer for berthd's Blazar-compatible REST API: hostile HTTP/1.1 against the real daemon.

Starts the real `berthd` (`--clock manual`, `--demo` inventory, `--blazar-listen 127.0.0.1:0
--blazar-auth noauth`, in a temporary work directory; or uses `--url` of one already running,
with `--socket` for the checks over JSON-RPC), then sends `--inputs` requests over raw TCP from
`--connections` threads. Each thread draws its inputs from its own seeded RNG (`--seed`): the
choice of generator, route, method, headers and mutations is fixed by the seed; only the lease ids
learnt from berthd's answers differ between runs. Generators: valid requests (creating, updating,
reading and deleting leases, so the state grows), mutated routes (ids that are UUIDs, integers,
huge, percent-encoded, `..`, empty), methods (unknown, lower-case, invalid), headers (missing,
duplicate, huge or odd `X-Auth-Token`, bad `Content-Type`, bad `Content-Length`), chunked bodies
(valid and broken), truncated requests (sent, then half-closed), pipelined requests (2-6 on one
connection), bodies mutated from valid Blazar lease/host bodies (wrong types, deep nesting, huge
numbers, unicode, invalid UTF-8, huge durations and dates, > 1 MiB).

The oracle, per request: a well-formed request gets one complete HTTP/1.1 response (status line,
headers, a body framed by Content-Length or chunks), status < 600, never a 5xx except 500
"Not enough hosts available" (Blazar's NotEnoughHostsAvailable), 501 (floating IPs, private
properties) and 502/503; a JSON body parses; an error on a JSON route is
`{"error_code": status, "error_message": str, "error_name": status}` with Content-Type
application/json. A malformed request (bad framing, invalid request line or header bytes, huge
headers, truncated) may get a 4xx or a close, but no hang and no forbidden 5xx. A dropped
connection on a well-formed request, a 500 Internal Server Error, a timeout: findings. If berthd
dies, that is a finding (with the runtime's failure line from its log); a berthd this run started
is restarted on the same state and the run goes on. Afterwards berthd must be alive, answer
`/healthcheck` and `system.health` over the socket, and `calendar.get` must show no double booking
(socket_fuzzer.invariants); then it is restarted on the fuzzed state and checked again.

    python3 Tests/fuzz/http_fuzzer.py --inputs 200000 --seed 1 --connections 2 --report http-fuzz.json

A finding is printed with the request that caused it (repr, cut at 300 bytes); the exit status is
1 when there were findings.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "integration"))
sys.path.insert(0, str(HERE.parent / "crash"))

from berthtest import Berthd, ProcessExited, RPCClient  # noqa: E402

LISTEN_RE = re.compile(r"url=http://([0-9.]+):(\d+)/v1\b.*blazar api listening")
MAX_BODY = 1 << 20
#: How long one response may take before it is a hang (a debug build on two busy cores is slow).
REPLY_TIMEOUT = 30.0
#: Statuses >= 500 that are answers, not failures (see module doc).
ALLOWED_5XX = {501, 502, 503}
NO_CAPACITY = "Not enough hosts available"
PROJECTS = ["p1", "p2", "p3"]


# ------------------------------------------------------------------------------------------------
# JSON with raw pieces (huge numbers, invalid UTF-8, deep nesting) where Python's encoder cannot go
# ------------------------------------------------------------------------------------------------

class Raw:
    """Bytes put into the JSON text as they are."""

    __slots__ = ("b",)

    def __init__(self, b: bytes):
        self.b = b

    def __repr__(self):
        return f"Raw({self.b[:40]!r})"


def enc(v: Any) -> bytes:
    if isinstance(v, Raw):
        return v.b
    if isinstance(v, dict):
        return b"{" + b",".join(enc(str(k)) + b":" + enc(x) for k, x in v.items()) + b"}"
    if isinstance(v, (list, tuple)):
        return b"[" + b",".join(enc(x) for x in v) + b"]"
    return json.dumps(v, ensure_ascii=False).encode("utf-8", "surrogatepass")


HUGE_NUMBERS = [b"1e400", b"-1e400", b"1e-400", b"-0", b"9223372036854775807", b"9223372036854775808",
                b"-9223372036854775808", b"-9223372036854775809", b"18446744073709551616", str(2**200).encode(),
                b"1" + b"0" * 400, b"0." + b"0" * 400 + b"1", b"1.7976931348623157e308", b"4.9e-324", b"2.5", b"-1",
                b"0", b"2147483648", b"1E+2"]
INVALID_UTF8 = [b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xc3", b"\xe2\x82", b"\x80",
                b"\xf0\x9f\x98"]
BAD_ESCAPES = [b"\\ud800", b"\\udfff", b"\\u0000", b"\\uD83D\\uDE00", b"\\x41", b"\\u00"]
DURATIONS = ["1h", "30m", "2d", "45s", "1w", "0", "", "h", "-1h", "1x", "1.5h", " 2h ", "9223372036854775807",
             "9223372036854775807s", "9223372036854775807w", "9223372036854775807h", "15250284452471w",
             "15250284452472w", "106751991167300d", "106751991167301d", "2562047788015215h", "99999999999999999999h",
             "100000000000s", "3000000000w", "1e3h", "٣h", "1h1m"]
DATES = ["now", "2030-01-01 00:00", "2030-01-01 01:00", "2030-02-30 10:00", "2030-13-01 00:00", "2030-01-01 24:61",
         "9999-12-31 23:59", "0000-01-01 00:00", "0001-01-01 00:00", "2029-12-31 23:59", "2030-01-01T01:00",
         "2030-01-01 01:00:00", "2030-01-01 1:00", "2030-01-01 01:00Z", "+030-01-01 01:00", "-030-01-01 01:00",
         "2030-01-01 ٠١:00", "", "NOW", "2030-1-1 1:00:00"]
RAW_VALUES: list[Any] = [None, True, False, 0, -1, 1, 3, 2.5, -0.0, "", "x", "now", "1", "true", "false", "default",
                         "physical:host", "virtual:instance", "flavor:instance", "berth:gpu", "1g.5gb", "m1.small",
                         [], {}, [1, "a"], {"a": 1}, 1 << 62, -(1 << 62), "x" * 300, "é✓😀\u0000\u202e",
                         '["==", "$rack", "r1"]', '["and"]', '["=", "$ib", "true"]', '[">=", "$vcpus", 64]',
                         '["not", ["==", "$rack", "r2"]]', "[[[[[[", '["in", "$rack", ["r1", "r2"]]]', '"x"']


def uuid_from(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# ------------------------------------------------------------------------------------------------
# One request: its bytes and what the oracle may expect of it
# ------------------------------------------------------------------------------------------------

class Req:
    """`kind`: 'well' (must get a complete, valid response), 'loose' (malformed: a response or a close),
    'truncated' (sent in part, then half-closed: a response or a close, no hang)."""

    __slots__ = ("gen", "method", "path", "data", "kind", "route", "valid", "close")

    def __init__(self, gen: str, method: str, path: str, data: bytes, kind: str = "well", route: str = "",
                 valid: str | None = None, close: bool = False):
        self.gen, self.method, self.path, self.data, self.kind = gen, method, path, data, kind
        self.route, self.valid, self.close = route, valid, close


def build(method: str, target: str, headers: list[tuple[str | bytes, str | bytes]], body: bytes = b"",
          version: str = "HTTP/1.1", content_length: bool = True) -> bytes:
    b = lambda x: x if isinstance(x, bytes) else x.encode("utf-8", "surrogateescape")  # noqa: E731
    out = [b(method) + b" " + b(target) + b" " + b(version) + b"\r\n"]
    names = {b(k).lower() for k, _ in headers}
    if content_length and body and b"content-length" not in names and b"transfer-encoding" not in names:
        headers = headers + [("Content-Length", str(len(body)))]
    for k, v in headers:
        out.append(b(k) + b": " + b(v) + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out) + body


class Generators:
    ROUTES = [
        ("GET", "/"), ("GET", "/versions"), ("GET", "/healthcheck"), ("GET", "/v1/leases"), ("POST", "/v1/leases"),
        ("GET", "/v1/leases/{lease}"), ("PUT", "/v1/leases/{lease}"), ("DELETE", "/v1/leases/{lease}"),
        ("GET", "/v1/os-hosts"), ("POST", "/v1/os-hosts"), ("GET", "/v1/os-hosts/{host}"),
        ("PUT", "/v1/os-hosts/{host}"), ("DELETE", "/v1/os-hosts/{host}"), ("GET", "/v1/os-hosts/allocations"),
        ("GET", "/v1/os-hosts/{host}/allocation"), ("GET", "/v1/os-hosts/properties"),
        ("PATCH", "/v1/os-hosts/properties/{prop}"), ("GET", "/v1/floatingips"), ("POST", "/v1/floatingips"),
        ("GET", "/v1/floatingips/{lease}"), ("PUT", "/v1/floatingips/{lease}"), ("DELETE", "/v1/floatingips/{lease}"),
    ]
    METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "FOO", "get", "PROPFIND",
               "M-SEARCH"]
    BAD_METHODS = ["G ET", "", "GET\x00", "A" * 2000, "GÉT", "GET\t"]
    #: Valid method tokens that NIO's parser (llhttp, a fixed method list) refuses before any route:
    #: 400 with an empty body and a close, which the oracle takes as it takes a malformed request.
    UNKNOWN_TO_PARSER = {"FOO", "get"}

    def __init__(self, rng: random.Random, world: "World"):
        self.rng = rng
        self.world = world
        self.table = [
            (22, "valid", self.valid), (14, "body_mutation", self.body_mutation), (10, "route", self.route),
            (8, "method", self.method), (10, "auth", self.auth), (6, "content_type", self.content_type),
            (6, "content_length", self.content_length), (5, "chunked", self.chunked), (4, "truncated", self.truncated),
            (4, "request_line", self.request_line), (4, "header_junk", self.header_junk),
            (5, "byte_mutation", self.byte_mutation), (3, "deep_nesting", self.deep_nesting),
            (1, "oversize", self.oversize), (3, "durations", self.durations), (3, "query", self.query),
        ]
        self.weights = [w for w, _, _ in self.table]

    # --- helpers ---------------------------------------------------------------------------

    def token(self) -> str:
        r = self.rng.random()
        if r < 0.45:
            return "admin:admin"
        return f"u{self.rng.randrange(3)}:{self.rng.choice(PROJECTS)}"

    def headers(self, token: str | None = "auto", ctype: str | None = "application/json") -> list:
        h: list = [("Host", "127.0.0.1")]
        if token == "auto":
            token = self.token()
        if token is not None:
            h.append(("X-Auth-Token", token))
        if ctype is not None:
            h.append(("Content-Type", ctype))
        if self.rng.random() < 0.1:
            h.append(("Accept", self.rng.choice(["application/json", "*/*", "text/html", ""])))
        if self.rng.random() < 0.05:
            h.append(("OpenStack-API-Version", self.rng.choice(["reservation 1.0", "reservation 9.9", "x"])))
        return h

    def lease_id(self) -> str:
        ids = self.world.lease_ids()
        r = self.rng.random()
        if ids and r < 0.7:
            return self.rng.choice(ids)
        return uuid_from(self.rng)

    def host_id(self) -> str:
        return str(self.rng.randrange(1, 10))

    def odd_id(self) -> str:
        rng = self.rng
        ids = self.world.lease_ids()
        base = rng.choice(ids) if ids else uuid_from(rng)
        return rng.choice([
            uuid_from(rng), base.upper(), base[:-1], base + "0", base.replace("-", ""), "0", "-1", "1", "01", "+1",
            " 1", "1.0", "9" * 30, str(1 << 63), str((1 << 63) - 1), "9" * 5000, "%2e%2e", "..", "../..", "..%2F..",
            "%2F", "%00", "%FF%FE", "%C3%A9", "%", "%zz", "%25", "a%20b", "x" * 36, "g" * 36, "é" * 18,
            "-" * 36, "0" * 36, "properties", "allocations", "allocation", ";", "'", '"', "{id}", "*",
            "%F0%9F%98%80", "1;2", "null", "undefined",
        ])

    def valid_lease_body(self) -> dict:
        rng = self.rng
        start_h = rng.randrange(0, 24 * 60)
        dur = rng.choice([1, 2, 3, 6, 12, 24, 48])
        fmt = lambda h: time.strftime("%Y-%m-%d %H:%M", time.gmtime(1893456000 + h * 3600))  # noqa: E731 (2030-01-01)
        start = "now" if rng.random() < 0.1 else fmt(start_h)
        b: dict[str, Any] = {"name": f"fz-{rng.randrange(1 << 30)}", "start_date": start,
                             "end_date": fmt((0 if start == "now" else start_h) + dur)}
        kinds = rng.random()
        if kinds < 0.6:
            n = rng.choice([1, 1, 1, 2, 3])
            r: dict[str, Any] = {"resource_type": "physical:host", "min": n, "max": n + rng.choice([0, 0, 1])}
            if rng.random() < 0.3:
                r["hypervisor_properties"] = rng.choice(['["==", "$rack", "r1"]', '[">=", "$vcpus", 64]', ""])
            if rng.random() < 0.3:
                r["resource_properties"] = rng.choice(['["=", "$ib", "true"]', '["==", "$rack", "r2"]', ""])
            b["reservations"] = [r]
        elif kinds < 0.8:
            b["reservations"] = [{"resource_type": "virtual:instance", "amount": rng.randrange(1, 4), "vcpus": 4,
                                  "memory_mb": 8192, "disk_gb": 20, "affinity": rng.choice([None, True, False])}]
        elif kinds < 0.9:
            b["reservations"] = [{"resource_type": "berth:gpu", "profile": rng.choice(["1g.5gb", "3g.20gb", "7g.40gb"]),
                                  "amount": rng.randrange(1, 3)}]
        else:
            b["reservations"] = [{"resource_type": "flavor:instance", "amount": 1, "flavor_id": "m1.small"}]
        if rng.random() < 0.1 and start != "now":
            b["before_end_date"] = fmt(start_h + dur - 1) if dur > 1 else fmt(start_h)
        return b

    def valid_update_body(self) -> dict:
        rng = self.rng
        return rng.choice([{"name": f"renamed-{rng.randrange(1000)}"}, {"prolong_for": rng.choice(["1h", "30m", "1d"])},
                           {"reduce_by": "30m"}, {"defer_by": "1h"}, {"advance_by": "1h"},
                           {"end_date": "2030-03-01 00:00"}, {"start_date": "2030-02-01 00:00"}, {}])

    def host_body(self) -> dict:
        rng = self.rng
        return rng.choice([{"rack": "r9"}, {"fz": str(rng.randrange(100))}, {"reservable": rng.choice([True, "false"])},
                           {"values": {"fz": "1"}}, {"fz": None}, {"vcpus": 1}])

    def body_for(self, method: str, tmpl: str) -> dict | None:
        if tmpl == "/v1/leases" and method == "POST":
            return self.valid_lease_body()
        if tmpl == "/v1/leases/{lease}" and method == "PUT":
            return self.valid_update_body()
        if tmpl == "/v1/os-hosts" and method == "POST":
            return {"name": self.rng.choice(["compute-01", "hv-99", "gpu-01", ""]), "rack": "r1"}
        if tmpl == "/v1/os-hosts/{host}" and method == "PUT":
            return self.host_body()
        if tmpl.startswith("/v1/os-hosts/properties/"):
            return {"private": self.rng.choice([False, True, "no", None])}
        return None

    def fill(self, tmpl: str, odd: bool = False) -> str:
        if odd:
            return re.sub(r"\{\w+\}", lambda _: self.odd_id(), tmpl)
        return (tmpl.replace("{lease}", self.lease_id()).replace("{host}", self.host_id())
                .replace("{prop}", self.rng.choice(["rack", "ib", "fz", "nope", "%20"])))

    def request(self, gen: str, method: str, tmpl: str, *, body: Any = None, raw_body: bytes | None = None,
                headers: list | None = None, target: str | None = None, kind: str = "well", **kw) -> Req:
        data = raw_body if raw_body is not None else (enc(body) if body is not None else b"")
        t = target or self.fill(tmpl)
        if kind == "well" and any(c <= " " or c >= "\x7f" for c in t):
            kind = "loose"  # a space, a control or a raw non-ASCII byte in the request-target
        h = headers if headers is not None else self.headers(ctype="application/json" if data else None)
        return Req(gen, method, t, build(method, t, h, data, **kw), kind, tmpl)

    def mutate_value(self, v: Any, depth: int = 0) -> Any:
        """One structural change somewhere in `v`."""
        rng = self.rng
        if isinstance(v, dict) and v and rng.random() < 0.7:
            k = rng.choice(list(v))
            v = dict(v)
            r = rng.random()
            if r < 0.15:
                del v[k]
            elif r < 0.25:
                v[rng.choice(["name", "start_date", "end_date", "reservations", "min", "max", "amount",
                              "resource_type", "before_end_date", "x" * 70, "", "\u0000"])] = self.random_value()
            else:
                v[k] = self.mutate_value(v[k], depth + 1) if rng.random() < 0.5 else self.random_value()
            return v
        if isinstance(v, list) and v and rng.random() < 0.7:
            v = list(v)
            i = rng.randrange(len(v))
            r = rng.random()
            if r < 0.2:
                v.append(v[i])
            elif r < 0.3:
                del v[i]
            else:
                v[i] = self.mutate_value(v[i], depth + 1)
            return v
        return self.random_value()

    def random_value(self) -> Any:
        rng = self.rng
        r = rng.random()
        if r < 0.15:
            return Raw(rng.choice(HUGE_NUMBERS))
        if r < 0.22:
            return Raw(b'"' + rng.choice(INVALID_UTF8) + b'"')
        if r < 0.28:
            return Raw(b'"' + rng.choice(BAD_ESCAPES) + b'"')
        if r < 0.38:
            return rng.choice(DATES)
        if r < 0.45:
            return rng.choice(DURATIONS)
        if r < 0.5:
            n = rng.choice([10, 255, 256, 257, 1000])
            return Raw(b"[" * n + b"]" * n)
        return rng.choice(RAW_VALUES)

    # --- generators ------------------------------------------------------------------------

    def valid(self) -> Req:
        rng = self.rng
        r = rng.random()
        if r < 0.35:
            method, tmpl = "POST", "/v1/leases"
        elif r < 0.5:
            method, tmpl = "DELETE", "/v1/leases/{lease}"
        elif r < 0.6:
            method, tmpl = "PUT", "/v1/leases/{lease}"
        else:
            method, tmpl = rng.choice([x for x in self.ROUTES if not (x[0] == "DELETE" and "os-hosts" in x[1])])
        req = self.request("valid", method, tmpl, body=self.body_for(method, tmpl))
        if method == "POST" and tmpl == "/v1/leases":
            req.valid = "create"
        return req

    def body_mutation(self) -> Req:
        rng = self.rng
        method, tmpl = rng.choice([("POST", "/v1/leases")] * 4 + [("PUT", "/v1/leases/{lease}")] * 3 + [
            ("PUT", "/v1/os-hosts/{host}"), ("POST", "/v1/os-hosts"), ("PATCH", "/v1/os-hosts/properties/{prop}")])
        body = self.body_for(method, tmpl)
        for _ in range(rng.randrange(1, 4)):
            body = self.mutate_value(body)
        if rng.random() < 0.1:
            body = rng.choice([[body], Raw(b"null"), Raw(b"42"), Raw(b'"s"'), Raw(b"[]"), Raw(b"{}")])
        return self.request("body_mutation", method, tmpl, body=body)

    def durations(self) -> Req:
        rng = self.rng
        field = rng.choice(["prolong_for", "reduce_by", "defer_by", "advance_by"])
        body: dict[str, Any] = {field: rng.choice(DURATIONS)}
        if rng.random() < 0.3:
            body[rng.choice(["start_date", "end_date", "before_end_date"])] = rng.choice(DATES)
        return self.request("durations", "PUT", "/v1/leases/{lease}", body=body)

    def route(self) -> Req:
        rng = self.rng
        method, tmpl = rng.choice(self.ROUTES)
        if "{" in tmpl and rng.random() < 0.7:
            target = self.fill(tmpl, odd=True)
        else:
            target = self.fill(tmpl)
            target = rng.choice([
                target + "/", target.upper(), "/v1/" + target, target.replace("/v1/", "/v1//"), "/v2" + target[3:],
                target + "/x", target + "/..", target + "/%2e%2e/leases", "/v1/../v1" + target[3:], "//" + target,
                target + "#frag", target.replace("/", "%2F"), "/v1/leases/" + "a/" * rng.randrange(1, 50),
                "/" + "x" * rng.choice([100, 8000]), target + ";x=1", "/v1/os-hosts/1/allocation/x", "/v1",
                "/v1/", target + "?" + "a=1&" * 200, "*",
            ])
        body = self.body_for(method, tmpl)
        # An origin-form target starts with "/" ("*" and absolute forms aside): others are malformed.
        kind = "well" if target.startswith("/") or target == "*" else "loose"
        return self.request("route", method, tmpl, body=body, target=target, kind=kind)

    def method(self) -> Req:
        rng = self.rng
        _, tmpl = rng.choice(self.ROUTES)
        m = rng.choice(self.METHODS)
        body = self.valid_lease_body() if rng.random() < 0.3 else None
        if m == "HEAD":
            body = None
        return self.request("method", m, tmpl, body=body, kind="loose" if m in self.UNKNOWN_TO_PARSER else "well")

    def auth(self) -> Req:
        rng = self.rng
        method, tmpl = rng.choice(self.ROUTES)
        h: list = [("Host", "127.0.0.1")]
        tokens = [None, "", ":", "::", ":p1", "admin", "admin:", "u1:", "a:b:c", " admin:admin", "admin:admin ",
                  "ADMIN:admin", "admin\t:p1", "u1:" + "p" * 300, "u" * 4000 + ":p1", "é:ü", "admin:admin\x7f",
                  "%61dmin:p1", "u1:p1\x00", "Bearer admin:admin"]
        r = rng.random()
        kind = "well"
        if r < 0.6:
            t = rng.choice(tokens)
            if t is not None:
                if "\x00" in t or "\x7f" in t:
                    kind = "loose"
                h.append(("X-Auth-Token", t))
        elif r < 0.8:  # duplicates
            for _ in range(rng.randrange(2, 5)):
                t = rng.choice(tokens[1:])
                h.append((rng.choice(["X-Auth-Token", "x-auth-token", "X-AUTH-TOKEN"]), t))
                if "\x00" in t or "\x7f" in t:
                    kind = "loose"
        elif r < 0.9:
            h.append(("X-Auth-Token", b"\xff\xfe:" + rng.choice(INVALID_UTF8)))
            kind = "loose"
        else:  # huge: under and over what the HTTP parser takes
            n = rng.choice([8000, 60000, 200000])
            h.append(("X-Auth-Token", "admin:" + "p" * n))
            kind = "well" if n <= 8000 else "loose"
        body = self.body_for(method, tmpl)
        if body is not None:
            h.append(("Content-Type", "application/json"))
        return self.request("auth", method, tmpl, body=body, headers=h, kind=kind)

    def content_type(self) -> Req:
        rng = self.rng
        method, tmpl = rng.choice([("POST", "/v1/leases"), ("PUT", "/v1/leases/{lease}"), ("PUT", "/v1/os-hosts/{host}"),
                                   ("POST", "/v1/os-hosts"), ("PATCH", "/v1/os-hosts/properties/{prop}")])
        ct = rng.choice([None, "", "text/plain", "application/xml", "application/json; charset=utf-8",
                         "APPLICATION/JSON", "application/jsonx", "application/json-patch+json", "multipart/form-data",
                         "application/x-www-form-urlencoded", "json", "application/json; charset=latin-1", "*/*",
                         "application/json" + ";" * 100, "x" * 5000])
        h = self.headers(ctype=ct)
        if rng.random() < 0.2:
            h.append(("Content-Type", rng.choice(["text/plain", "application/json"])))
        body = self.body_for(method, tmpl) or {}
        raw = enc(body) if rng.random() < 0.8 else b"name=x&start_date=now"
        return self.request("content_type", method, tmpl, raw_body=raw, headers=h)

    def content_length(self) -> Req:
        rng = self.rng
        method, tmpl = rng.choice([("POST", "/v1/leases"), ("PUT", "/v1/leases/{lease}"), ("GET", "/v1/leases"),
                                   ("PUT", "/v1/os-hosts/{host}")])
        body = enc(self.body_for(method, tmpl) or {"a": 1})
        n = len(body)
        cl = rng.choice(["abc", "-1", "", " ", "1e3", "0x10", str(1 << 64), "9" * 30, f"{n}, {n}", f"{n},{n + 1}",
                         f"+{n}", f" {n} ", str(n - 1), "0", str(n + 5), "dup", "dup-diff"])
        h = self.headers()
        kind = "loose"
        if cl == "dup":
            h += [("Content-Length", str(n)), ("Content-Length", str(n))]
        elif cl == "dup-diff":
            h += [("Content-Length", str(n)), ("Content-Length", str(n + 1))]
        else:
            h.append(("Content-Length", cl))
        if cl in (str(n - 1), "0"):
            # Well-framed, with bytes left over that start the next request: berthd answers this one,
            # then must cope with the rest (a 400 or a close).
            kind = "loose"
        elif cl == str(n + 5):
            return Req("content_length", method, tmpl, build(method, self.fill(tmpl), h, body), "truncated", tmpl)
        return Req("content_length", method, tmpl, build(method, self.fill(tmpl), h, body), kind, tmpl)

    def chunked(self) -> Req:
        rng = self.rng
        method, tmpl = rng.choice([("POST", "/v1/leases"), ("PUT", "/v1/leases/{lease}"), ("PUT", "/v1/os-hosts/{host}")])
        body = enc(self.body_for(method, tmpl) or {})
        h = self.headers() + [("Transfer-Encoding", rng.choice(["chunked", "chunked", "Chunked", "gzip, chunked"]))]
        pieces, i = [], 0
        while i < len(body):
            k = rng.randrange(1, 64)
            pieces.append(body[i:i + k])
            i += k
        chunks = b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in pieces)
        r = rng.random()
        kind = "well" if h[-1][1] in ("chunked", "Chunked") else "loose"
        if r < 0.5:
            data = chunks + b"0\r\n\r\n"
        elif r < 0.6:
            data = chunks + b"0\r\nX-Trailer: 1\r\n\r\n"
        elif r < 0.7:
            data = chunks.replace(b"\r\n", b"\n", 2) + b"0\r\n\r\n"
            kind = "loose"
        elif r < 0.8:
            data = b"zz\r\n" + body + b"\r\n0\r\n\r\n"
            kind = "loose"
        elif r < 0.85:
            data = b"ffffffffffffffffff\r\n" + body + b"\r\n0\r\n\r\n"
            kind = "loose"
        elif r < 0.9:
            h.append(("Content-Length", str(len(body))))  # both: a smuggling shape, refused or framed by chunks
            data = chunks + b"0\r\n\r\n"
            kind = "loose"
        else:
            return Req("chunked", method, tmpl, build(method, self.fill(tmpl), h, chunks), "truncated", tmpl)
        return Req("chunked", method, tmpl, build(method, self.fill(tmpl), h, data, content_length=False), kind, tmpl)

    def truncated(self) -> Req:
        full = self.valid()
        cut = self.rng.randrange(1, len(full.data))
        return Req("truncated", full.method, full.path, full.data[:cut], "truncated", full.route)

    def request_line(self) -> Req:
        rng = self.rng
        method, tmpl = rng.choice(self.ROUTES)
        target = self.fill(tmpl)
        r = rng.random()
        h = self.headers(ctype=None)
        if r < 0.3:
            version = rng.choice(["HTTP/1.0", "HTTP/1.0"])
            return Req("request_line", method, target, build(method, target, h, version=version), "well", tmpl,
                       close=True)
        if r < 0.5:
            version = rng.choice(["HTTP/2.0", "HTTP/1.2", "HTTP/9.9", "HTTP/1.1x", "HTTP/1", "http/1.1", "HTTPS/1.1", ""])
            return Req("request_line", method, target, build(method, target, h, version=version), "loose", tmpl)
        if r < 0.7:
            m = rng.choice(self.BAD_METHODS)
            return Req("request_line", m, target, build(m, target, h), "loose", tmpl)
        line = rng.choice([b"\r\n\r\n", b"GET\r\n\r\n", b"GET /v1/leases\r\n\r\n", b"GET  /v1/leases  HTTP/1.1\r\n\r\n",
                           b"GET /v1/le ases HTTP/1.1\r\n\r\n", b"GET /v1/\x00 HTTP/1.1\r\n\r\n",
                           b"GET /v1/\xff HTTP/1.1\r\nHost: x\r\n\r\n", b"GET /" + b"a" * 100000 + b" HTTP/1.1\r\n\r\n",
                           bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))) + b"\r\n\r\n",
                           b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"])
        return Req("request_line", "?", "?", line, "loose", "")

    def header_junk(self) -> Req:
        rng = self.rng
        method, tmpl = rng.choice(self.ROUTES)
        h = self.headers(ctype=None)
        j = rng.choice([(b"X-Foo", b"a\x00b"), (b"X Foo", b"1"), (b"", b"v"), (b"X-Foo:", b"1"), (b"\xff", b"1"),
                        (b"X-Foo", b"\r"), (b" X-Folded", b"1"), (b"Host", b"other"), (b"Expect", b"100-continue"),
                        (b"Connection", b"upgrade"), (b"Upgrade", b"h2c"), (b"X-Many", b"x" * 70000)])
        h.append(j)
        kind = "well" if j[0] in (b"Host", b"Expect", b"Connection", b"Upgrade") else "loose"
        if rng.random() < 0.3:
            h = h + [(f"X-H{i}", "v") for i in range(rng.choice([100, 1000, 5000]))]
            kind = "loose"
        return Req("header_junk", method, tmpl, build(method, self.fill(tmpl), h), kind, tmpl)

    def byte_mutation(self) -> Req:
        rng = self.rng
        base = self.valid()
        head, _, body = base.data.partition(b"\r\n\r\n")
        data = bytearray(body)
        for _ in range(rng.randrange(1, 6)):
            if not data:
                break
            op = rng.randrange(5)
            pos = rng.randrange(len(data))
            if op == 0:
                data[pos] ^= 1 << rng.randrange(8)
            elif op == 1:
                data[pos:pos] = rng.choice(INVALID_UTF8 + [b"\x00", b"\\", b'"', b"{", b"]"])
            elif op == 2:
                del data[pos:pos + rng.randrange(1, 9)]
            elif op == 3:
                data[pos:pos] = rng.choice(HUGE_NUMBERS)
            else:
                data[pos:pos] = data[pos:pos + rng.randrange(1, 33)]
        # The headers are rebuilt so Content-Length matches the mutated body.
        lines = [ln for ln in head.split(b"\r\n") if not ln.lower().startswith(b"content-length:")]
        if data:
            lines.append(b"Content-Length: %d" % len(data))
        return Req("byte_mutation", base.method, base.path, b"\r\n".join(lines) + b"\r\n\r\n" + bytes(data), "well",
                   base.route)

    def deep_nesting(self) -> Req:
        rng = self.rng
        n = rng.choice([255, 256, 257, 1000, 10000, 100000])
        o = rng.choice(["[", "{\"a\":"])
        c = "]" if o == "[" else "}"
        inner = (o * n + "1" + c * (n if rng.random() < 0.8 else n // 2)).encode()
        r = rng.random()
        if r < 0.4:
            return self.request("deep_nesting", "POST", "/v1/leases", raw_body=inner)
        body = self.valid_lease_body()
        if r < 0.7:
            body["reservations"][0]["resource_properties"] = (
                "[\"and\", " * n + '["==", "$rack", "r1"]' + "]" * n if rng.random() < 0.5 else inner.decode())
        else:
            body["name"] = Raw(inner)
        return self.request("deep_nesting", "POST", "/v1/leases", body=body)

    def oversize(self) -> Req:
        rng = self.rng
        method, tmpl = rng.choice([("POST", "/v1/leases"), ("PUT", "/v1/leases/{lease}"), ("PUT", "/v1/os-hosts/{host}"),
                                   ("GET", "/v1/leases")])
        n = rng.choice([MAX_BODY - 1, MAX_BODY, MAX_BODY + 1, MAX_BODY + 4096, 3 * MAX_BODY])
        body = self.body_for(method, tmpl) or {}
        raw = enc(body)
        pad = b'{"pad":"' + b"x" * max(0, n - len(raw) - 10) + b'","a":1}'
        raw = (pad + b" " * max(0, n - len(pad)))[:max(n, len(pad))] if rng.random() < 0.5 else b" " * (n - len(raw)) + raw
        # Over the cap the server may answer 413 before it has read everything, then close: a reset
        # while sending is then no finding (the 413 may be lost with it).
        return self.request("oversize", method, tmpl, raw_body=raw, kind="well" if n <= MAX_BODY else "loose")

    def query(self) -> Req:
        rng = self.rng
        method, tmpl = rng.choice([("GET", "/v1/os-hosts/allocations"), ("GET", "/v1/os-hosts/{host}/allocation"),
                                   ("GET", "/v1/os-hosts/properties"), ("GET", "/v1/leases")])
        q = rng.choice(["lease_id=" + self.lease_id(), "reservation_id=" + uuid_from(rng), "detail=1", "detail=",
                        "detail", "lease_id=%FF", "lease_id=%", "a=%00", "&&&", "=", "lease_id=1&lease_id=2",
                        "x=" + "y" * 5000, "detail=%E2%9C%93"])
        return self.request("query", method, tmpl, target=self.fill(tmpl) + "?" + q)

    def pick(self) -> Req:
        _, name, fn = self.rng.choices(self.table, weights=self.weights)[0]
        return fn()


# ------------------------------------------------------------------------------------------------
# HTTP client side: raw bytes out, a strict response parser in
# ------------------------------------------------------------------------------------------------

class Closed(Exception):
    """The server closed (or reset) the connection before a complete response."""


class Response:
    __slots__ = ("version", "status", "reason", "headers", "body", "raw_len")

    def __init__(self, version, status, reason, headers, body, raw_len):
        self.version, self.status, self.reason, self.headers, self.body, self.raw_len = (
            version, status, reason, headers, body, raw_len)

    def header(self, name: str) -> str | None:
        vals = [v for k, v in self.headers if k == name.lower()]
        return vals[0] if vals else None


class Conn:
    def __init__(self, addr: tuple[str, int], timeout: float = REPLY_TIMEOUT):
        self.sock = socket.create_connection(addr, timeout=10)
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def half_close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _more(self) -> None:
        if self.eof:
            raise Closed("eof")
        try:
            d = self.sock.recv(1 << 16)
        except ConnectionResetError:
            self.eof = True
            raise Closed("reset") from None
        if not d:
            self.eof = True
            raise Closed("eof")
        self.buf += d

    def _line(self, limit: int = 1 << 16) -> bytes:
        while b"\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("header line too long")
            self._more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, method: str) -> Response:
        """One response; raises Closed (nothing or a part came), ValueError (not HTTP), socket.timeout."""
        started = bool(self.buf)
        try:
            while True:
                line = self._line()
                started = True
                m = re.fullmatch(rb"(HTTP/1\.[01]) ([0-9]{3}) ?(.*)", line)
                if not m:
                    raise ValueError(f"bad status line {line[:100]!r}")
                version, status, reason = m.group(1).decode(), int(m.group(2)), m.group(3).decode("latin-1")
                headers = []
                while True:
                    h = self._line()
                    if h == b"":
                        break
                    if b":" not in h:
                        raise ValueError(f"bad header line {h[:100]!r}")
                    k, v = h.split(b":", 1)
                    headers.append((k.decode("latin-1").strip().lower(), v.decode("latin-1").strip()))
                if 100 <= status < 200:
                    continue  # an interim response (100 Continue): the real one follows
                break
            hd = dict(headers)
            cls = [v for k, v in headers if k == "content-length"]
            if method == "HEAD" or status in (204, 304):
                body = b""
            elif "chunked" in hd.get("transfer-encoding", "").lower():
                parts = []
                while True:
                    size = int(self._line().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self._line() != b"":
                            pass
                        break
                    parts.append(self._exact(size))
                    if self._exact(2) != b"\r\n":
                        raise ValueError("bad chunk end")
                body = b"".join(parts)
            elif cls:
                if len(set(cls)) != 1 or not cls[0].isdigit():
                    raise ValueError(f"bad Content-Length {cls}")
                body = self._exact(int(cls[0]))
            else:
                body = b""
                try:
                    while True:
                        self._more()
                except Closed:
                    body, self.buf = self.buf, b""
            return Response(version, status, reason, headers, body, 0)
        except Closed as e:
            raise Closed(f"{e} {'mid-response' if started else 'before a response'}") from None

    def at_eof(self, timeout: float) -> bool:
        if self.buf:
            return False
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True
        except (socket.timeout, OSError):
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# ------------------------------------------------------------------------------------------------
# Oracle
# ------------------------------------------------------------------------------------------------

def check_response(req: Req, r: Response) -> str | None:
    """What is wrong with `r` as the answer to `req` (None: nothing)."""
    if not 100 <= r.status < 600:
        return f"status {r.status}"
    ctype = (r.header("content-type") or "").lower()
    is_json = ctype.startswith("application/json")
    doc = None
    if is_json and r.body:
        try:
            doc = json.loads(r.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            return f"Content-Type JSON, but the body is not: {e} {r.body[:200]!r}"
    if r.status >= 500 and r.status not in ALLOWED_5XX:
        msg = doc.get("error_message") if isinstance(doc, dict) else None
        if not (r.status == 500 and msg == NO_CAPACITY):
            return f"{r.status} {r.reason}: {r.body[:300]!r}"
    if r.status == 501 and not ("floatingips" in req.route or "properties/" in req.route):
        return f"501 outside floating IPs and private properties: {r.body[:200]!r}"
    # Malformed requests may be refused by the HTTP layer itself, with an empty body.
    if req.kind != "well" and r.status in (400, 413, 414, 431) and not r.body:
        return None
    if r.status >= 400:
        if req.method == "HEAD":
            return None
        if not is_json:
            return f"{r.status} error without Content-Type application/json ({ctype!r}): {r.body[:200]!r}"
        if not isinstance(doc, dict):
            return f"{r.status} error body is not an object: {r.body[:200]!r}"
        if doc.get("error_code") != r.status or doc.get("error_name") != r.status:
            return f"error_code/error_name {doc.get('error_code')!r}/{doc.get('error_name')!r} != status {r.status}"
        if not isinstance(doc.get("error_message"), str) or not doc["error_message"]:
            return f"error_message is not a non-empty string: {doc.get('error_message')!r}"
    elif r.status == 204:
        if r.body:
            return "204 with a body"
    elif req.method != "HEAD" and req.route != "/healthcheck" and not is_json:
        return f"{r.status} without a JSON body ({ctype!r})"
    return None


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.inputs = 0
        self.responses = 0
        self.closes = 0
        self.pipelined = 0
        self.bytes_sent = 0
        self.statuses: collections.Counter = collections.Counter()
        self.by_generator: collections.Counter = collections.Counter()
        self.seconds_by_generator: collections.Counter = collections.Counter()
        self.findings: list[dict] = []
        self.seen: collections.Counter = collections.Counter()

    def finding(self, what: str, req: Req | None, gen: str | None = None) -> None:
        with self.lock:
            key = (re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}|\d+", "N", what)[:120], gen or (req.gen if req else ""))
            self.seen[key] += 1
            if self.seen[key] > 3:  # the same finding again and again: counted, not repeated
                return
            f = {"generator": gen or (req.gen if req else ""), "problem": what}
            if req is not None:
                f["request"] = repr(req.data[:300]) + (f" (+{len(req.data) - 300} bytes)" if len(req.data) > 300 else "")
            self.findings.append(f)
        print(f"FINDING [{f['generator']}] {what[:500]}\n  {f.get('request', '')}", file=sys.stderr)


class World:
    """The daemon under fuzz (started here or given), and what the fuzz learnt: lease ids."""

    def __init__(self, url: str | None, socket_path: str | None, workdir: Path, stats: Stats, log):
        self.stats = stats
        self.log = log
        self.lock = threading.Lock()
        self.leases: list[str] = []
        self.daemon: Berthd | None = None
        self.socket_path = socket_path
        self.generation = 0
        self.restarts = 0
        #: Per thread, the requests it has sent and not yet seen answered (blamed if berthd dies).
        self.in_flight: dict[str, list[Req]] = {}
        #: Clear while a berthd that died is restarted: the other threads wait instead of failing.
        self.ready = threading.Event()
        self.ready.set()
        self.gone = False  # berthd died and is not coming back: the threads stop
        if url:
            u = urlsplit(url)
            self.addr = (u.hostname or "127.0.0.1", u.port or 80)
        else:
            self.daemon = Berthd(workdir)
            self.daemon.start(["--blazar-listen", "127.0.0.1:0", "--blazar-auth", "noauth", "--demo"])
            self.socket_path = self.daemon.socket_path
            self.addr = self._listening()

    def _listening(self) -> tuple[str, int]:
        assert self.daemon is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            m = LISTEN_RE.search(self.daemon.log_text())
            if m:
                return m.group(1), int(m.group(2))
            if not self.daemon.running:
                break
            time.sleep(0.05)
        raise RuntimeError(f"berthd's REST API did not come up:\n{self.daemon.log_text()[-3000:]}")

    def lease_ids(self) -> list[str]:
        with self.lock:
            return list(self.leases)

    def learn(self, lease_id: str) -> None:
        with self.lock:
            self.leases.append(lease_id)
            if len(self.leases) > 500:
                del self.leases[:100]

    def alive(self) -> bool:
        return self.daemon.running if self.daemon is not None else True

    def died(self, generation: int) -> bool:
        """berthd is gone: a finding, and (if it is ours) a restart on the same state. False: give up."""
        with self.lock:
            if generation != self.generation:
                return True  # another thread has restarted it already
            assert self.daemon is not None
            self.ready.clear()
            text = self.daemon.log_text()
            lines = text.splitlines()
            why = [ln.strip() for ln in lines if "Fatal error" in ln or "runtime failure" in ln][:1]
            # The innermost frame in Berth's own code (file:line), where the runtime stopped it.
            why += [re.sub(r"^\s*\d+\s+(\[\w+\]\s+)*0x[0-9a-f]+\s+", "", ln).strip() for ln in lines
                    if re.search(r" at \S*/Sources/\S+:\d+", ln)][:2]
            suspects = [r for reqs in self.in_flight.values() for r in reqs]
            self.stats.finding(f"berthd exited with {self.daemon.proc.returncode}: {' | '.join(why) or text[-1500:]}; "
                               f"requests in flight: {[repr(r.data[:300]) for r in suspects]}",
                               suspects[-1] if len(suspects) == 1 else None, "daemon")
            self.restarts += 1
            if self.restarts > 5:
                self.gone = True
                self.ready.set()
                return False
            try:
                self.daemon.restart()
                self.addr = self._listening()
            except (ProcessExited, RuntimeError) as e:
                self.stats.finding(f"berthd does not start again on its state: {str(e)[-1500:]}", None, "daemon")
                self.gone = True
                self.ready.set()
                return False
            self.generation += 1
            self.ready.set()
            return True


class Worker(threading.Thread):
    def __init__(self, k: int, n: int, seed: int, world: World, stats: Stats, deadline: float | None):
        super().__init__(daemon=True, name=f"httpfuzz-{k}")
        self.n = n
        self.rng = random.Random(seed * 1_000_003 + k)
        self.world = world
        self.stats = stats
        self.gens = Generators(self.rng, world)
        self.recent: list[Req] = []
        self.deadline = deadline
        self.error: BaseException | None = None

    def run(self):
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001: reported by run()
            self.error = e

    def _run(self):
        done = 0
        while done < self.n:
            if self.deadline and time.monotonic() > self.deadline:
                break
            r = self.rng.random()
            if r < 0.12:
                reqs = [self._pipelinable() for _ in range(self.rng.randrange(2, 7))]
                tail = self.gens.pick()
                if tail.kind != "truncated" and self.rng.random() < 0.5:
                    reqs.append(tail)  # a malformed one may end a pipeline
            else:
                reqs = [self.gens.pick()]
            reqs = reqs[:max(1, self.n - done)]
            done += len(reqs)
            gen = self.world.generation
            self.world.ready.wait()
            if self.world.gone:
                return
            gen = self.world.generation
            self.world.in_flight[self.name] = reqs
            t0 = time.monotonic()
            ok = self.exchange(reqs)
            with self.stats.lock:
                for q in reqs:
                    self.stats.seconds_by_generator[q.gen] += (time.monotonic() - t0) / len(reqs)
            if not ok and not self.world.alive():
                if not self.world.died(gen):
                    return
            self.world.in_flight.pop(self.name, None)

    def _pipelinable(self) -> Req:
        while True:
            q = self.gens.pick()
            if q.kind == "well" and not q.close and "Expect" not in q.data.split(b"\r\n\r\n")[0].decode("latin-1"):
                return q

    def exchange(self, reqs: list[Req]) -> bool:
        """Sends `reqs` on one connection (pipelined), reads and checks the answers. False: berthd may be gone."""
        st = self.stats
        with st.lock:
            st.inputs += len(reqs)
            if len(reqs) > 1:
                st.pipelined += len(reqs)
            for q in reqs:
                st.by_generator[q.gen] += 1
                st.bytes_sent += len(q.data)
        self.recent = (self.recent + reqs)[-10:]
        try:
            c = Conn(self.world.addr)
        except OSError as e:
            if self.world.alive() and self.world.ready.is_set():
                time.sleep(0.5)
                if self.world.alive():
                    st.finding(f"cannot connect: {e}", reqs[0])
            return False
        try:
            sent = c.send(b"".join(q.data for q in reqs))
            if reqs[-1].kind == "truncated":
                c.half_close()
            for i, q in enumerate(reqs):
                try:
                    resp = c.read_response(q.method)
                except Closed as e:
                    if q.kind == "well" and sent:
                        alive = self.world.alive() and self._probe()
                        if not alive:
                            return False
                        st.finding(f"connection closed ({e}) on a well-formed request", q)
                    else:
                        with st.lock:
                            st.closes += 1
                    return True
                except socket.timeout:
                    if not self.world.alive():
                        return False
                    st.finding(f"no response within {REPLY_TIMEOUT:.0f} s"
                               + (" after a half-close" if q.kind == "truncated" else ""), q)
                    return True
                except ValueError as e:
                    st.finding(f"not an HTTP response: {e}", q)
                    return True
                with st.lock:
                    st.responses += 1
                    st.statuses[resp.status] += 1
                problem = check_response(q, resp)
                if problem:
                    st.finding(problem, q)
                if q.valid == "create" and resp.status == 201:
                    try:
                        self.world.learn(json.loads(resp.body)["lease"]["id"])
                    except (ValueError, KeyError, TypeError):
                        st.finding("201 without lease.id", q)
                if q.kind != "well" or q.close or (resp.header("connection") or "").lower() == "close":
                    # The rest of a pipeline after a close or a malformed request is not owed an answer.
                    return True
            if reqs[-1].kind == "truncated" and not c.at_eof(REPLY_TIMEOUT):
                st.finding("connection neither answered nor closed after a truncated request and a half-close",
                           reqs[-1])
            return True
        finally:
            c.close()

    def _probe(self) -> bool:
        """berthd still answers /healthcheck (so a close was not a crash)."""
        try:
            c = Conn(self.world.addr, timeout=REPLY_TIMEOUT)
            c.send(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            ok = c.read_response("GET").status == 200
            c.close()
            return ok
        except (OSError, Closed, ValueError):
            time.sleep(0.2)
            return self.world.alive()


def final_checks(world: World) -> list[str]:
    import socket_fuzzer  # noqa: E402: the double-booking check over JSON-RPC, shared

    bad: list[str] = []
    try:
        c = Conn(world.addr)
        c.send(b"GET /healthcheck HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        r = c.read_response("GET")
        c.close()
        if r.status != 200 or r.body != b"OK":
            bad.append(f"/healthcheck: {r.status} {r.body[:100]!r}")
    except (OSError, Closed, ValueError) as e:
        bad.append(f"/healthcheck: {e}")
    if world.socket_path:
        rpc = RPCClient(world.socket_path, validate=False)
        try:
            bad += socket_fuzzer.invariants(rpc)
        finally:
            rpc.close()
    return bad


def run(inputs: int, seed: int = 1, connections: int = 2, url: str | None = None, socket_path: str | None = None,
        workdir: str | None = None, max_seconds: float | None = None, log=print) -> dict:
    stats = Stats()
    started = time.monotonic()
    tmp = Path(workdir or tempfile.mkdtemp(prefix="berth-httpfuzz-"))
    tmp.mkdir(parents=True, exist_ok=True)
    world = World(url, socket_path, tmp, stats, log)
    report: dict[str, Any] = {"seed": seed, "connections": connections, "inputs_requested": inputs,
                              "target": f"http://{world.addr[0]}:{world.addr[1]}/v1"}
    try:
        share = [inputs // connections + (1 if k < inputs % connections else 0) for k in range(connections)]
        deadline = started + max_seconds if max_seconds else None
        workers = [Worker(k, share[k], seed, world, stats, deadline) for k in range(connections)]
        for w in workers:
            w.start()
        while any(w.is_alive() for w in workers):
            for w in workers:
                w.join(timeout=10)
            with stats.lock:
                el = time.monotonic() - started
                log(f"{stats.inputs} requests, {stats.responses} responses, {stats.inputs / max(el, 1e-9):.0f} req/s, "
                    f"{len(stats.findings)} findings")
        for w in workers:
            if w.error is not None:
                stats.finding(f"fuzzer thread failed: {w.error!r}", w.recent[-1] if w.recent else None, "fuzzer")
        alive = world.alive()
        report["alive"] = alive
        if not alive:
            stats.finding(f"berthd exited with {world.daemon.proc.returncode}:\n{world.daemon.log_text()[-3000:]}",
                          None, "daemon")
        else:
            bad = final_checks(world)
            if world.daemon is not None:
                try:
                    world.daemon.restart()  # the fuzzed state must load again
                    world.addr = world._listening()
                    bad += final_checks(world)
                except (ProcessExited, RuntimeError) as e:
                    bad.append(f"berthd does not start again on the fuzzed state: {str(e)[-1500:]}")
                    report["alive"] = False
            for b in bad:
                stats.finding(f"invariant: {b}", None, "invariants")
            report["invariant_problems"] = len(bad)
    finally:
        if world.daemon is not None:
            world.daemon.cleanup()
    el = time.monotonic() - started
    report.update({
        "inputs": stats.inputs, "responses_checked": stats.responses, "closed_without_response": stats.closes,
        "pipelined_requests": stats.pipelined, "leases_created": len(world.leases), "daemon_restarts": world.restarts,
        "bytes_sent": stats.bytes_sent, "seconds": round(el, 1), "inputs_per_s": round(stats.inputs / max(el, 1e-9)),
        "by_generator": dict(stats.by_generator),
        "seconds_by_generator": {k: round(v, 1) for k, v in stats.seconds_by_generator.most_common()},
        "statuses": {str(k): v for k, v in sorted(stats.statuses.items())},
        "repeated_findings": {f"{k[1]}: {k[0]}": v for k, v in stats.seen.items() if v > 3},
        "findings": stats.findings,
    })
    return report


def main(argv=None) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--connections", type=int, default=2, help="client threads, each with its own RNG")
    ap.add_argument("--url", help="fuzz a berthd already serving the REST API (noauth) at this URL")
    ap.add_argument("--socket", help="with --url: its JSON-RPC socket, for the final checks")
    ap.add_argument("--workdir", help="state and logs of the berthd this run starts")
    ap.add_argument("--max-seconds", type=float, help="stop sending after this long")
    ap.add_argument("--report", help="write the report as JSON here")
    a = ap.parse_args(argv)
    report = run(a.inputs, a.seed, a.connections, a.url, a.socket, a.workdir, a.max_seconds)
    text = json.dumps(report, indent=2)
    if a.report:
        Path(a.report).write_text(text)
    summary = {k: report[k] for k in ("inputs", "responses_checked", "seconds", "inputs_per_s", "statuses")}
    print(json.dumps(summary), f"findings: {len(report['findings'])}")
    return 1 if report["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
