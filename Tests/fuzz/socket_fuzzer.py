#!/usr/bin/env python3
"""Socket-level fuzzer for berthd: hostile lines against the real daemon.

Starts the real `berthd` (`--clock manual`, a temporary socket and state directory; or uses
`--socket` of one already running), creates a small inventory, a lease and a preemptible, then sends
`--inputs` lines over `--connections` connections, in pipelined bursts, drawn from generators:
random bytes, invalid UTF-8, deep nesting, huge numbers, giant batches (under, at and over the
batch limit), giant strings near the 1 MiB line cap, wrong types for every parameter of every method
(from schemas/openrpc.json), mutations of the corpus seeds (Tests/fuzz/seeds.py), hostile envelopes,
and valid calls (so state changes under the fuzz).

Every reply is checked by an oracle that works out from the line alone what must come back (nothing
for a notification, one response object, or an array in request order; -32700/-32600 with a null id
for what is not JSON / not a request; -32602 naming the parameter for a wrongly typed one), and checks
the envelope, the echoed id, the error code against the contract with its `data.reason`. A -32603
internal error is a finding. Each burst ends with a probe call, so a reply to a notification cannot
go unnoticed. Over-long lines go on a connection of their own and must get -32600
`request_too_large` and a close. Afterwards berthd must be alive, answer `system.health`, and
`calendar.get` must show no double booking (whole hosts, GPU slots) from `now` on.

    python3 Tests/fuzz/socket_fuzzer.py --inputs 1000000 --seed 1 --connections 4 --report fuzz.json

A finding is printed with the line that caused it (repr, cut at 300 bytes); the exit status is 1 when
there were findings.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import math
import os
import random
import signal
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "integration"))
sys.path.insert(0, str(HERE.parent / "crash"))

import seeds  # noqa: E402
from berthtest import DEFAULT_NOW, Berthd, RPCClient, Schemas, parse_ts  # noqa: E402

MAX_LINE = 1 << 20
MAX_BATCH = 1000
MAX_DEPTH = 256
REASONS = {
    -32700: {"parse_error"}, -32600: {"invalid_request", "request_too_large"}, -32601: {"method_not_found"},
    -32602: {"invalid_params"}, -32603: {"internal_error"}, -32001: {"not_found"}, -32002: {"no_capacity"},
    -32003: {"insufficient_credits"}, -32004: {"forbidden"}, -32005: {"conflict"}, -32006: {"upstream_error"},
    -32007: {"unavailable"}, -32008: {"policy_violation"},
}
INT64 = (-(1 << 63), (1 << 63) - 1)


# ------------------------------------------------------------------------------------------------
# Oracle: what berthd must answer to one line
# ------------------------------------------------------------------------------------------------

#: Subscriptions one fuzzing connection may gather before it starts afresh (see Worker._run).
MAX_SUBSCRIPTIONS = 4


def without_nulls(value):
    """`value` with every object member whose value is null left out, at any depth."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


class NotJSON(Exception):
    pass


def _reject_constant(name: str):
    raise NotJSON(f"{name} is not JSON")


def _float(text: str) -> float:
    v = float(text)
    if math.isinf(v):
        raise NotJSON("number out of range")
    return v


def _int(text: str):
    v = int(text)
    return v if INT64[0] <= v <= INT64[1] else _float(text)


_decoder = json.JSONDecoder(parse_float=_float, parse_int=_int, parse_constant=_reject_constant)


def _depth_and_strings_ok(v: Any, depth: int = 0) -> bool:
    """Berth's nesting limit (256 containers) and strict UTF-8 (no lone surrogates from escapes)."""
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(v, list):
        if depth + 1 > MAX_DEPTH:
            return False
        return all(_depth_and_strings_ok(x, depth + 1) for x in v)
    if isinstance(v, dict):
        if depth + 1 > MAX_DEPTH:
            return False
        return all(_depth_and_strings_ok(k, depth + 1) and _depth_and_strings_ok(x, depth + 1) for k, x in v.items())
    return True


def parse_strict(line: bytes) -> Any:
    """The line as Berth's parser reads it (RFC 8259, UTF-8, depth 256, numbers as Int64 or finite
    doubles); raises NotJSON where Berth answers -32700."""
    try:
        text = line.decode("utf-8")
        v = _decoder.decode(text)
    except (UnicodeDecodeError, ValueError, RecursionError, NotJSON) as e:
        raise NotJSON(str(e)) from None
    if not _depth_and_strings_ok(v):
        raise NotJSON("too deep or lone surrogate")
    return v


class Want:
    """One response owed: its id, and the error code it must carry (None: any)."""

    __slots__ = ("id", "code", "method", "params", "param")

    def __init__(self, id: Any, code: int | None = None, method: str | None = None, params: Any = None,
                 param: str | None = None):
        self.id, self.code, self.method, self.params, self.param = id, code, method, params, param


def expectation(v: Any) -> Want | None:
    """What one parsed request (or batch element) is owed; None for a notification."""
    if not isinstance(v, dict):
        return Want(None, -32600)
    has_id = "id" in v
    rid = v.get("id")
    if has_id and (isinstance(rid, (bool, list, dict))):
        return Want(None, -32600)
    params = v.get("params", None)
    valid = v.get("jsonrpc") == "2.0" and isinstance(v.get("method"), str) and (
        "params" not in v or isinstance(params, (list, dict)))
    if not valid:
        return Want(rid if has_id else None, -32600)
    if not has_id:
        return None
    return Want(rid, None, v["method"], params)


def expected_replies(line: bytes) -> tuple[str, Any]:
    """('none', None) | ('one', Want) | ('batch', [Want, ...])."""
    try:
        v = parse_strict(line)
    except NotJSON:
        return "one", Want(None, -32700)
    if isinstance(v, list):
        if not v or len(v) > MAX_BATCH:
            return "one", Want(None, -32600)
        wants = [w for w in map(expectation, v) if w is not None]
        return ("batch", wants) if wants else ("none", None)
    w = expectation(v)
    return ("one", w) if w is not None else ("none", None)


def same_id(a: Any, b: Any) -> bool:
    if type(a) is bool or type(b) is bool:
        return a is b
    if isinstance(b, float) or isinstance(a, float):
        # Non-Int64 numbers come back as the double they parsed to.
        return isinstance(a, float) and isinstance(b, float) and a == b
    return type(a) is type(b) and a == b


def check_response(r: Any, want: Want) -> str | None:
    if not isinstance(r, dict):
        return f"a response must be an object, got {type(r).__name__}"
    if r.get("jsonrpc") != "2.0":
        return "jsonrpc is not \"2.0\""
    extra = set(r) - {"jsonrpc", "result", "error", "id"}
    if extra:
        return f"unexpected members {sorted(extra)}"
    if "id" not in r:
        return "id is missing"
    if not same_id(r["id"], want.id):
        return f"id {r['id']!r} does not echo {want.id!r}"
    if ("result" in r) == ("error" in r):
        return "exactly one of result/error required"
    if "result" in r:
        if want.code is not None:
            return f"a result where error {want.code} was due"
        return None
    e = r["error"]
    if not isinstance(e, dict):
        return "error is not an object"
    code = e.get("code")
    if type(code) is not int or code not in REASONS:
        return f"error.code {code!r} is not a contract code"
    if want.code is not None and code != want.code:
        return f"error.code {code}, expected {want.code} ({e.get('message')!r})"
    if code == -32603:
        return f"internal error: {e.get('message')!r}"
    if not isinstance(e.get("message"), str) or not e["message"]:
        return "error.message is not a non-empty string"
    data = e.get("data")
    if not isinstance(data, dict) or data.get("reason") not in REASONS[code]:
        return f"error.data.reason {data!r:.200} does not match code {code}"
    if code == -32602:
        errs = data.get("errors")
        if not isinstance(errs, list) or not errs or not all(
                isinstance(x, dict) and isinstance(x.get("path"), str) and isinstance(x.get("message"), str)
                for x in errs):
            return "-32602 without a proper data.errors list"
        if want.param is not None and not any(
                x["path"] == want.param or x["path"].startswith(want.param + ".") or x["path"].startswith(want.param + "[")
                for x in errs):
            return f"-32602 does not name parameter {want.param!r}: {[x['path'] for x in errs]}"
    return None


# ------------------------------------------------------------------------------------------------
# Generators: each returns (line bytes, optional Want override for a strictly expected error)
# ------------------------------------------------------------------------------------------------

def dumps(v: Any) -> bytes:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")


HUGE_NUMBERS = [b"1e400", b"-1e400", b"1e-400", b"-0", b"-0.0", b"0e0", b"-0e-0", str(2**200).encode(),
                str(-(2**200)).encode(), b"9223372036854775807", b"9223372036854775808", b"-9223372036854775808",
                b"-9223372036854775809", b"18446744073709551616", b"1.7976931348623157e308", b"1.8e308",
                b"4.9e-324", b"2.5e-324", b"1e308", b"123.456e-5", b"3.0", b"0.1", b"1E+2", b"-1", b"2147483648",
                b"100000000000000000000000000000000000000000000000000000000000000000000.5",
                b"0." + b"0" * 400 + b"1", b"1" + b"0" * 400]
INVALID_UTF8 = [b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xf4\x90\x80\x80",
                b"\xf8\x88\x80\x80\x80", b"\xc3", b"\xe2\x82", b"\x80", b"\xbf\xbf", b"\xf0\x9f\x98"]
BAD_ESCAPES = [b"\\ud800", b"\\udfff", b"\\ud800\\u0041", b"\\u00", b"\\x41", b"\\uD83D\\uDE00", b"\\u0000", b"\\"]
RAW_VALUES: list[Any] = [None, True, False, 0, -1, 1, 7, 2.5, -0.0, "", "x", "now", "@lease", "@preemptible", [], {},
                         [1, "a"], {"a": 1}, "2030-01-01T00:00:00Z", "2030-13-45T99:99:99Z", "9999-12-31T23:59:59Z",
                         "0000-01-01T00:00:00Z", "compute-1", "p1", 1 << 62, -(1 << 62), "x" * 300, "é✓😀",
                         ["and"], ["==", "$rack", "r1"], {"kind": "host", "count": 1}]


class Generators:
    def __init__(self, rng: random.Random, openrpc: dict, corpus: list[bytes]):
        self.rng = rng
        self.corpus = corpus
        self.valid = seeds.valid_requests()
        # Never move the clock by generated valid calls more than the seeds do.
        self.wrong = self._wrong_type_cases(openrpc)
        self.dict_tokens = [b'"jsonrpc"', b'"2.0"', b'"method"', b'"params"', b'"id"', b"null", b"true", b"[", b"]",
                            b"{", b"}", b",", b":", b'"', b"\\", b"1e400", b"-0"] + [
            f'"{m}"'.encode() for m in seeds.VALID_PARAMS]
        self.table = [
            (14, "valid", self.valid_call), (18, "mutation", self.mutation), (12, "json_mutation", self.json_mutation),
            (12, "wrong_type", self.wrong_type), (8, "envelope", self.envelope), (8, "random_bytes", self.random_bytes),
            (6, "invalid_utf8", self.invalid_utf8), (6, "huge_numbers", self.huge_number), (5, "deep_nesting", self.deep),
            (6, "batch", self.batch), (0.15, "giant_batch", self.giant_batch),
            (0.05, "giant_string", self.giant_string), (5, "notification", self.notification),
        ]
        self.weights = [w for w, _, _ in self.table]

    def pick(self) -> tuple[str, bytes, Want | None]:
        _, name, fn = self.rng.choices(self.table, weights=self.weights)[0]
        line, want = fn()
        return name, line, want

    # --- helpers ---------------------------------------------------------------------------

    def rid(self) -> Any:
        r = self.rng.random()
        if r < 0.5:
            return self.rng.randrange(1 << 20)
        if r < 0.8:
            return f"r{self.rng.randrange(1 << 20)}"
        return self.rng.choice([0, -1, "", None, 1.5, -0.0, (1 << 63) - 1, -(1 << 63), 1 << 70, 1e300, "ü✓",
                                "\u0000\n\"\\"])

    def some_valid(self) -> dict:
        # A deep copy: mutations must never reach the seeds (shared by all connections' threads).
        r = copy.deepcopy(self.rng.choice(self.valid))
        r["id"] = self.rid()
        return r

    def random_value(self, depth: int = 0) -> Any:
        r = self.rng.random()
        if depth < 3 and r < 0.15:
            return [self.random_value(depth + 1) for _ in range(self.rng.randrange(4))]
        if depth < 3 and r < 0.3:
            return {self.rng.choice(["a", "name", "id", "count", "kind", ""]): self.random_value(depth + 1)
                    for _ in range(self.rng.randrange(4))}
        return copy.deepcopy(self.rng.choice(RAW_VALUES))

    # --- generators ------------------------------------------------------------------------

    def valid_call(self):
        return dumps(self.some_valid()), None

    def notification(self):
        r = self.some_valid()
        del r["id"]
        if self.rng.random() < 0.3:
            r["method"] = self.rng.choice(["no.such", "", "rpc.discover", "lease.create"])
        return dumps(r), None

    def mutation(self):
        data = bytearray(self.rng.choice(self.corpus))
        for _ in range(self.rng.randrange(1, 6)):
            op = self.rng.randrange(7)
            pos = self.rng.randrange(len(data) + 1)
            if op == 0 and data:  # flip a bit
                p = self.rng.randrange(len(data))
                data[p] ^= 1 << self.rng.randrange(8)
            elif op == 1:  # insert random bytes
                data[pos:pos] = bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 5)))
            elif op == 2 and data:  # delete a run
                del data[pos:pos + self.rng.randrange(1, 9)]
            elif op == 3 and data:  # duplicate a chunk
                a = self.rng.randrange(len(data))
                data[pos:pos] = data[a:a + self.rng.randrange(1, 33)]
            elif op == 4:  # insert a token
                data[pos:pos] = self.rng.choice(self.dict_tokens)
            elif op == 5 and data:  # replace a digit run with a huge number
                digits = [i for i, c in enumerate(data) if 0x30 <= c <= 0x39]
                if digits:
                    p = self.rng.choice(digits)
                    data[p:p + 1] = self.rng.choice(HUGE_NUMBERS)
            else:  # truncate
                del data[pos:]
        return bytes(data).replace(b"\n", b" "), None

    def json_mutation(self):
        r = self.some_valid()
        params = r.get("params")
        op = self.rng.randrange(7)
        if op == 0 and isinstance(params, dict) and params:
            del params[self.rng.choice(list(params))]
        elif op == 1 and isinstance(params, dict) and params:
            params[self.rng.choice(list(params))] = self.random_value()
        elif op == 2:
            r["params"] = dict(params or {}, **{self.rng.choice(["extra", "nmae", "idempotency_key", "dry_run",
                                                                 "limit", "cursor"]): self.random_value()})
        elif op == 3 and isinstance(params, dict):
            r["params"] = [params]
        elif op == 4:
            r["id"] = self.random_value()
        elif op == 5 and isinstance(params, dict):
            for v in params.values():
                if isinstance(v, list) and v and isinstance(v[0], dict):
                    v[0][self.rng.choice(list(v[0]) or ["kind"])] = self.random_value()
                    break
            else:
                r["params"] = {k: self.random_value() for k in (params or {"x": 0})}
        else:
            r["method"] = self.rng.choice(list(seeds.VALID_PARAMS) + ["", "x", "lease.", "rpc.discover\u0000"])
        return dumps(r), None

    def _wrong_type_cases(self, openrpc: dict) -> list[tuple[str, dict, str, Any]]:
        comps = openrpc["components"]["schemas"]

        def types(s: dict, seen=()) -> set[str] | None:
            if "$ref" in s:
                name = s["$ref"].rsplit("/", 1)[-1]
                if name in seen:
                    return None
                return types(comps[name], seen + (name,))
            out: set[str] = set()
            if "type" in s:
                t = s["type"]
                out |= set(t if isinstance(t, list) else [t])
            for k in ("oneOf", "anyOf"):
                for sub in s.get(k, []):
                    st = types(sub, seen)
                    if st is None:
                        return None
                    out |= st
            for v in ([s["const"]] if "const" in s else []) + s.get("enum", []):
                out.add({bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
                         dict: "object", type(None): "null"}[type(v)])
            return out or None

        samples = {"boolean": True, "integer": 7, "number": 2.5, "string": "x", "array": [1], "object": {"a": 1}}
        cases = []
        valid = {m: [p for p in plist if isinstance(p, dict)] for m, plist in seeds.VALID_PARAMS.items()}
        for m in openrpc["methods"]:
            # Without an idempotency key: a reused key answers -32005 before the params are read.
            base = {k: v for k, v in (valid.get(m["name"]) or [{}])[0].items() if k != "idempotency_key"}
            for p in m.get("params", []):
                allowed = types(p["schema"])
                if allowed is None:
                    continue
                if "number" in allowed:
                    allowed = allowed | {"integer"}
                for t, v in samples.items():
                    if t not in allowed:
                        cases.append((m["name"], base, p["name"], v))
        return cases

    def wrong_type(self):
        method, base, pname, value = self.rng.choice(self.wrong)
        params = copy.deepcopy(base)
        params[pname] = copy.deepcopy(value)
        rid = self.rng.randrange(1 << 30)
        return dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": rid}), \
            Want(rid, -32602, method, params, pname)

    def envelope(self):
        r = self.some_valid()
        op = self.rng.randrange(6)
        if op == 0:
            r["jsonrpc"] = self.rng.choice([None, "1.0", 2.0, "2.0 ", "", ["2.0"]])
        elif op == 1:
            del r["jsonrpc"]
        elif op == 2:
            r["method"] = self.rng.choice([None, 5, ["system.health"], {}, True])
        elif op == 3:
            r["params"] = self.rng.choice([5, "name", True, None, 1.5])
        elif op == 4:
            r["id"] = self.rng.choice([True, False, {"a": 1}, [1], []])
        else:
            return self.rng.choice([b"42", b'"x"', b"true", b"null", b"3.5", b"{}", b"[[]]", b"[{}]", b"[null]",
                                    b'{"jsonrpc":"2.0"}', b"\xef\xbb\xbf{}", b"{\"a\":1}\x00", b" \t\r{}\r"]), None
        return dumps(r), None

    def random_bytes(self):
        n = self.rng.choice([1, 2, 4, 16, 64, 256, 2048])
        alphabet = self.rng.random()
        if alphabet < 0.5:
            data = bytes(self.rng.randrange(256) for _ in range(n))
        else:
            data = bytes(self.rng.choice(b'{}[]",:0123456789-.eE truefalsn\\u') for _ in range(n))
        return data, None  # may hold newlines: split into lines by the sender

    def invalid_utf8(self):
        r = self.some_valid()
        raw = dumps(r)
        bad = self.rng.choice(INVALID_UTF8 + BAD_ESCAPES)
        # Inside a string value if there is one, else anywhere.
        q = [i for i, c in enumerate(raw) if c == 0x22]
        p = self.rng.choice(q) + 1 if q else self.rng.randrange(len(raw))
        return raw[:p] + bad + raw[p:], None

    def huge_number(self):
        r = self.some_valid()
        num = self.rng.choice(HUGE_NUMBERS)
        raw = dumps(r)
        digits = [i for i, c in enumerate(raw) if 0x30 <= c <= 0x39 and (i == 0 or not 0x30 <= raw[i - 1] <= 0x39)]
        if digits and self.rng.random() < 0.7:
            p = self.rng.choice(digits)
            e = p
            while e < len(raw) and raw[e] in b"0123456789.eE+-":
                e += 1
            return raw[:p] + num + raw[e:], None
        # As the id, or as a value of a parameter.
        if self.rng.random() < 0.5:
            return raw[:-1] + b',"id":' + num + b"}", None
        return (b'{"jsonrpc":"2.0","method":"' + r["method"].encode() + b'","params":{"' +
                self.rng.choice([b"seconds", b"limit", b"count", b"vcpus", b"amount", b"after_seq", b"duration_s",
                                 b"before_end_s", b"min_lifetime_s"]) + b'":' + num + b'},"id":' + num + b"}"), None

    def deep(self):
        n = self.rng.choice([MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 1000, 10_000, 100_000])
        kind = self.rng.randrange(4)
        if kind == 0:
            return b"[" * n + b"]" * n, None
        if kind == 1:
            return b'{"a":' * n + b"1" + b"}" * n, None
        if kind == 2:  # unbalanced
            return b"[" * n, None
        inner = b"[" * n + b"]" * n
        return (b'{"jsonrpc":"2.0","method":"host.list","params":{"properties":' + inner + b'},"id":1}'), None

    def batch(self):
        items: list[Any] = []
        for _ in range(self.rng.randrange(1, 20)):
            x = self.rng.random()
            if x < 0.5:
                items.append(self.some_valid())
            elif x < 0.7:
                v = self.some_valid()
                del v["id"]
                items.append(v)
            else:
                items.append(self.random_value())
        return dumps(items), None

    def giant_batch(self):
        n = self.rng.choice([MAX_BATCH - 1, MAX_BATCH, MAX_BATCH + 1, 5000])
        cheap = [{"jsonrpc": "2.0", "method": "clock.now", "id": i} if i % 3 else
                 {"jsonrpc": "2.0", "method": "system.health"} for i in range(n)]
        return dumps(cheap), None

    def giant_string(self):
        head = b'{"jsonrpc":"2.0","method":"host.get","id":1,"params":{"name":"compute-1","pad":"'
        tail = b'"}}'
        total = self.rng.choice([MAX_LINE - 1, MAX_LINE, MAX_LINE + 1, MAX_LINE + 4096])
        return head + b"x" * (total - len(head) - len(tail)) + tail, None


# ------------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------------

class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.inputs = 0
        self.lines = 0
        self.replies = 0
        self.responses = 0
        self.batch_requests = 0
        self.server_notifications = 0
        self.oversized = 0
        self.bytes_sent = 0
        self.by_generator: collections.Counter = collections.Counter()
        self.codes: collections.Counter = collections.Counter()
        self.findings: list[dict] = []
        self.schema_checks = 0
        self.last_now = DEFAULT_NOW
        self.reconnects = 0

    def finding(self, what: str, line: bytes, gen: str) -> None:
        with self.lock:
            if len(self.findings) < 200:
                self.findings.append({"problem": what, "generator": gen, "line": repr(line[:300]),
                                      "line_bytes": len(line)})
            print(f"FINDING [{gen}]: {what}\n  line: {line[:300]!r}", file=sys.stderr, flush=True)


def substitute(line: bytes, ids: dict[str, str]) -> bytes:
    return line.replace(b"@preemptible", ids["preemptible"].encode()).replace(b"@lease", ids["lease"].encode())


def is_blank(line: bytes) -> bool:
    return all(c in b" \t\r" for c in line)


class Worker(threading.Thread):
    """One connection: pipelined bursts of lines, each burst ended by a probe; replies checked in order."""

    def __init__(self, k: int, socket_path: str, budget: int, seed: int, stats: Stats, gens_args, ids,
                 schema_every: int, burst_max: int):
        super().__init__(name=f"fuzz-{k}", daemon=True)
        self.k, self.path, self.budget, self.stats, self.ids = k, socket_path, budget, stats, ids
        self.rng = random.Random(seed * 1000 + k)
        self.gens = Generators(self.rng, *gens_args)
        self.schema_every = schema_every
        self.burst_max = burst_max
        self.error: str | None = None
        self.probe = 0
        self.subscriptions = 0

    def connect(self) -> RPCClient:
        return RPCClient(self.path, validate=False, timeout=120)

    def run(self) -> None:
        try:
            self._run()
        except Exception as e:  # a hang or a dropped connection is a finding, not a crash of the fuzzer
            self.error = f"{type(e).__name__}: {e}"
            self.stats.finding(f"connection {self.k}: {self.error}", b"", "transport")

    def _run(self) -> None:
        c = self.connect()
        done = 0
        schemas = Schemas.get() if self.schema_every else None
        while done < self.budget:
            burst = []  # (gen, line, want kind, wants)
            payload = bytearray()
            n = min(self.budget - done, self.rng.randrange(1, self.burst_max + 1))
            for _ in range(n):
                gen, raw, override = self.gens.pick()
                raw = substitute(raw, self.ids)
                done += 1
                if len(raw) > MAX_LINE and b"\n" not in raw:
                    self.oversized(gen, raw)
                    continue
                with self.stats.lock:
                    self.stats.inputs += 1
                    self.stats.by_generator[gen] += 1
                for piece in raw.split(b"\n"):
                    if is_blank(piece):
                        continue
                    if len(piece) > MAX_LINE:
                        continue  # only random bytes could; they are short
                    kind, wants = expected_replies(piece)
                    if override is not None and kind == "one":
                        wants = override
                    burst.append((gen, piece, kind, wants))
                payload += raw + b"\n"
            self.probe += 1
            probe_id = f"probe-{self.k}-{self.probe}"
            payload += dumps({"jsonrpc": "2.0", "method": "clock.now", "id": probe_id}) + b"\n"
            # Sent from a second thread while this one reads: a client that stops reading while it
            # writes a big burst would (rightly) be closed once 4096 event notifications queue up
            # for it (UnixSocketRPCServer.maxQueuedNotifications), and could deadlock on its own
            # replies filling the socket.
            sent: list[BaseException] = []

            def send(data=bytes(payload)):
                try:
                    c.send_raw(data)
                except BaseException as e:  # reported below, after the replies that did arrive
                    sent.append(e)
            sender = threading.Thread(target=send, daemon=True)
            sender.start()
            with self.stats.lock:
                self.stats.bytes_sent += len(payload)
                self.stats.lines += len(burst)
            for gen, piece, kind, wants in burst:
                if kind == "none":
                    continue
                reply = c.recv()
                with self.stats.lock:
                    self.stats.replies += 1
                self.check(gen, piece, kind, wants, reply, schemas)
            reply = c.recv()
            sender.join()
            if sent:
                raise sent[0]
            if not (isinstance(reply, dict) and reply.get("id") == probe_id and "result" in reply):
                self.stats.finding(f"expected the probe's reply, got {json.dumps(reply)[:300]} "
                                   "(a notification answered, or a reply missing)", bytes(payload[:300]), "probe")
                c.close()
                c = self.connect()
            else:
                with self.stats.lock:
                    self.stats.last_now = max(self.stats.last_now, reply["result"]["now"])
            with self.stats.lock:
                self.stats.server_notifications += len(c.notifications)
            c.notifications.clear()
            # Every events.subscribe adds a subscription, and each one gets every event: bound them,
            # or on a busy machine this Python reader falls behind and berthd (rightly) closes the
            # connection once 4096 notifications wait unread. A fresh connection has none.
            if self.subscriptions >= MAX_SUBSCRIPTIONS:
                c.close()
                c = self.connect()
                self.subscriptions = 0
                with self.stats.lock:
                    self.stats.reconnects += 1
        c.close()

    def check(self, gen, piece, kind, wants, reply, schemas) -> None:
        if kind == "one":
            pairs = [(reply, wants)]
        else:
            if not isinstance(reply, list) or len(reply) != len(wants):
                self.stats.finding(f"batch of {len(wants)} request(s) got {json.dumps(reply)[:300]}", piece, gen)
                return
            pairs = list(zip(reply, wants))
            with self.stats.lock:
                self.stats.batch_requests += len(wants)
        for r, w in pairs:
            if w.method == "events.subscribe" and isinstance(r, dict) and "result" in r:
                self.subscriptions += 1
            with self.stats.lock:
                self.stats.responses += 1
                if isinstance(r, dict) and isinstance(r.get("error"), dict):
                    self.stats.codes[r["error"].get("code")] += 1
                else:
                    self.stats.codes["result"] += 1
            p = check_response(r, w)
            if p:
                self.stats.finding(p + f" (reply {json.dumps(r)[:300]})", piece, gen)
                continue
            if schemas and "result" in r and w.method and self.rng.randrange(self.schema_every) == 0:
                # The result matches the contract, and params berthd accepted are params the contract allows.
                # berthd reads an explicit null as "not given" for optional params (a documented
                # leniency, docs/reliability.md "Fuzzing"): compare what it accepted without them.
                accepted = without_nulls(w.params) if w.params is not None else {}
                for rel, instance in ((f"methods/{w.method}.result.json", r["result"]),
                                      (f"methods/{w.method}.params.json", accepted)):
                    if schemas.has(rel):
                        errs = schemas.errors(rel, instance)
                        with self.stats.lock:
                            self.stats.schema_checks += 1
                        if errs:
                            self.stats.finding(f"{w.method}: {rel.rsplit('.', 2)[-2]} do not match schemas/{rel}: "
                                               f"{errs[:3]}", piece, gen)

    def oversized(self, gen: str, raw: bytes) -> None:
        """A line over the cap: -32600 request_too_large, then the server closes only this connection."""
        with self.stats.lock:
            self.stats.inputs += 1
            self.stats.oversized += 1
            self.stats.by_generator[gen] += 1
        c = self.connect()
        try:
            try:
                c.send_raw(raw + b"\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may close before it has read everything; its reply is still readable
            reply = c.recv()
            p = check_response(reply, Want(None, -32600))
            if p is None and reply["error"]["data"].get("reason") != "request_too_large":
                p = f"reason {reply['error']['data'].get('reason')!r}, expected request_too_large"
            if p:
                self.stats.finding(f"oversized line: {p}", raw, gen)
            if not c.is_at_eof(timeout=30):
                self.stats.finding("connection not closed after an oversized line", raw, gen)
        finally:
            c.close()


def setup(rpc: RPCClient) -> dict[str, str]:
    """The inventory FuzzWorld uses (Sources/BerthFuzz), a grant, a lease and a preemptible."""
    for i in (1, 2, 3):
        rpc.call("host.create", {"name": f"compute-{i}", "vcpus": 16, "memory_mb": 65536, "disk_gb": 500,
                                 "properties": {"rack": "r2" if i == 3 else "r1", "ib": "true" if i == 2 else "false"}})
    rpc.call("host.create", {"name": "gpu-1", "vcpus": 64, "memory_mb": 524288, "disk_gb": 2000,
                             "gpus": [{"model": "A100-40GB"}] * 2, "properties": {"rack": "r3"}})
    rpc.call("credits.grant", {"project_id": "p1", "resource_class": "host_hours", "amount": 1000})
    now = rpc.call("clock.now")["now"]
    t = parse_ts(now)
    import datetime as dt
    fmt = lambda x: x.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    lease = rpc.call("lease.create", {"name": "seed", "project_id": "p1", "start": fmt(t + dt.timedelta(hours=1)),
                                      "end": fmt(t + dt.timedelta(hours=4)),
                                      "reservations": [{"kind": "host", "count": 1}]})
    pre = rpc.call("preemptible.create", {"project_id": "p1", "vcpus": 2, "memory_mb": 2048, "disk_gb": 10})
    return {"lease": lease["id"], "preemptible": pre["id"]}


def invariants(rpc: RPCClient) -> list[str]:
    """berthd answers, and calendar.get shows no double booking from now on."""
    from crash_harness import overlaps  # noqa: E402

    bad: list[str] = []
    h = rpc.call("system.health")
    if h.get("status") not in ("ok", "degraded") or h.get("storage") != "ok":
        bad.append(f"system.health: {h}")
    now = rpc.call("clock.now")["now"]
    cal = rpc.call("calendar.get", {"from": now, "to": "9999-12-31T23:59:59Z"})
    for host in cal["hosts"]:
        allocs = [a for a in host["allocations"] if a["end"] is None or a["end"] > now]
        clip = lambda a: (max(a["start"], now), a["end"])  # noqa: E731
        whole = [(*clip(a), a.get("lease_id")) for a in allocs if a["kind"] == "host"]
        for p in overlaps(whole):
            bad.append(f"host {host['name']}: whole-host allocations {p[0]} and {p[1]} overlap")
        for a in allocs:
            if a["kind"] != "host":
                for w in whole:
                    for p in overlaps([w, (*clip(a), a.get("lease_id") or a.get("preemptible_id"))]):
                        bad.append(f"host {host['name']}: whole-host {p[0]} overlaps {a['kind']} {p[1]}")
        gpu = collections.defaultdict(list)
        for a in allocs:
            if a["kind"] == "gpu":
                for s in range(a["slot"], a["slot"] + a["size"]):
                    gpu[(a["gpu"], s)].append((*clip(a), f"{a['lease_id']}/{a['reservation_id']}"))
        for (g, s), iv in gpu.items():
            for p in overlaps(iv):
                bad.append(f"host {host['name']} gpu {g} slot {s}: {p[0]} overlaps {p[1]}")
    return bad


def run(inputs: int, seed: int = 1, connections: int = 4, socket_path: str | None = None, workdir: str | None = None,
        schema_every: int = 50, burst_max: int = 32, epoch_inputs: int = 250_000, log=print) -> dict:
    openrpc = json.loads((HERE.parents[1] / "schemas" / "openrpc.json").read_text())
    # Not the 100-year clock jump: repeated by mutation it would leave the rest of an epoch in the far
    # future, where no lease can be made (the in-process fuzzer covers it, one world at a time).
    corpus = [p.read_bytes() for p in sorted((HERE / "corpus").iterdir()) if p.is_file() and "advance-max" not in p.name]
    stats = Stats()
    started = time.monotonic()
    report: dict[str, Any] = {"seed": seed, "connections": connections, "inputs_requested": inputs, "epochs": []}
    tmp = Path(workdir or tempfile.mkdtemp(prefix="berth-sockfuzz-"))
    tmp.mkdir(parents=True, exist_ok=True)
    remaining = inputs
    epoch = 0
    daemon: Berthd | None = None
    try:
        while remaining > 0:
            epoch += 1
            # A fresh daemon and state per epoch: hostile clock moves cannot push the whole run into
            # the year 9999, and every epoch's state is checked (and reloaded by a restart) at its end.
            if socket_path is None:
                d = tmp / f"epoch-{epoch}"
                d.mkdir(exist_ok=True)
                daemon = Berthd(d)
                daemon.start()
                path = daemon.socket_path
            else:
                path = socket_path
            rpc = RPCClient(path, validate=False)
            ids = setup(rpc) if epoch == 1 or socket_path is None else ids  # noqa: F821
            stats.last_now = DEFAULT_NOW
            n = min(remaining, epoch_inputs)
            remaining -= n
            share = [n // connections + (1 if k < n % connections else 0) for k in range(connections)]
            t0 = time.monotonic()
            workers = [Worker(k, path, share[k], seed * 7919 + epoch, stats, (openrpc, corpus), ids, schema_every,
                              burst_max) for k in range(connections)]
            for w in workers:
                w.start()
            while any(w.is_alive() for w in workers):
                for w in workers:
                    w.join(timeout=10)
                with stats.lock:
                    el = time.monotonic() - started
                    log(f"[epoch {epoch}] {stats.inputs} inputs, {stats.responses} responses, "
                        f"{stats.inputs / max(el, 1e-9):.0f} inputs/s, {len(stats.findings)} findings")
            info: dict[str, Any] = {"epoch": epoch, "inputs": n, "seconds": round(time.monotonic() - t0, 1),
                                    "clock": stats.last_now}
            alive = daemon.running if daemon else True
            info["alive"] = alive
            if not alive:
                stats.finding(f"berthd exited with {daemon.proc.returncode}:\n{daemon.log_text()[-3000:]}", b"", "daemon")
            else:
                rpc = RPCClient(path, validate=False)
                bad = invariants(rpc)
                if daemon is not None:
                    # The fuzzed state must load again.
                    rpc.close()
                    daemon.restart(now=None)
                    rpc = RPCClient(path, validate=False)
                    bad += invariants(rpc)
                    daemon.terminate()
                for b in bad:
                    stats.finding(f"invariant: {b}", b"", "invariants")
                info["invariant_problems"] = len(bad)
                rpc.close()
            report["epochs"].append(info)
            if daemon is not None:
                daemon.cleanup()
                daemon = None
    finally:
        if daemon is not None:
            daemon.cleanup()
    el = time.monotonic() - started
    report.update({
        "inputs": stats.inputs, "lines": stats.lines, "replies": stats.replies, "responses_checked": stats.responses,
        "batch_requests": stats.batch_requests, "oversized_lines": stats.oversized,
        "server_notifications": stats.server_notifications, "schema_checks": stats.schema_checks,
        "reconnects_after_subscriptions": stats.reconnects,
        "bytes_sent": stats.bytes_sent, "seconds": round(el, 1), "inputs_per_s": round(stats.inputs / max(el, 1e-9)),
        "by_generator": dict(stats.by_generator), "codes": {str(k): v for k, v in stats.codes.most_common()},
        "findings": stats.findings,
    })
    return report


def main(argv=None) -> int:
    # SIGTERM unwinds like Ctrl-C, so the daemons this run started are stopped (`run`'s finally).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--inputs", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--report", help="write the report as JSON here")
    ap.add_argument("--socket", help="fuzz a berthd that is already running (manual clock, admin caller)")
    ap.add_argument("--workdir", help="state and logs of the daemons this run starts")
    ap.add_argument("--schema-every", type=int, default=50,
                    help="check about one result in N against schemas/ (0: never)")
    ap.add_argument("--burst-max", type=int, default=32, help="most lines pipelined before reading replies")
    ap.add_argument("--epoch-inputs", type=int, default=250_000, help="inputs per daemon (fresh state) before the next")
    a = ap.parse_args(argv)
    report = run(a.inputs, a.seed, a.connections, a.socket, a.workdir, a.schema_every, a.burst_max, a.epoch_inputs)
    text = json.dumps(report, indent=2)
    if a.report:
        Path(a.report).write_text(text)
    summary = {k: report[k] for k in ("inputs", "responses_checked", "oversized_lines", "seconds", "inputs_per_s")}
    print(json.dumps(summary), f"findings: {len(report['findings'])}")
    return 1 if report["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
