"""HTTP fuzzer, CI size: hostile HTTP/1.1 against the real berthd's Blazar REST API, every answer
a complete response with an allowed status and a Blazar-shaped JSON error, berthd alive and without
double booking afterwards (Tests/fuzz/http_fuzzer.py). Long runs: `http_fuzzer.py --inputs 200000`
or `make fuzz-http`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))

import http_fuzzer  # noqa: E402

INPUTS = int(os.environ.get("BERTH_FUZZ_HTTP_INPUTS", "3000"))
SEED = int(os.environ.get("BERTH_FUZZ_HTTP_SEED", "1"))


@pytest.mark.timeout(600)
def test_hostile_http_gets_valid_answers_and_leaves_berthd_sound(tmp_path):
    lines: list[str] = []
    report = http_fuzzer.run(INPUTS, seed=SEED, connections=2, workdir=str(tmp_path / "work"), log=lines.append)
    (tmp_path / "report.json").write_text(json.dumps(report, indent=2))
    print("\n".join(lines[-5:]))
    print(json.dumps({k: v for k, v in report.items() if k != "findings"}, indent=1))
    assert report["findings"] == [], "\n".join(json.dumps(f) for f in report["findings"][:20])
    assert report["inputs"] == INPUTS
    for gen in ("valid", "body_mutation", "route", "method", "auth", "content_type", "content_length", "chunked",
                "truncated", "request_line", "byte_mutation", "deep_nesting", "durations"):
        assert report["by_generator"].get(gen, 0) > 0, f"generator {gen} never ran"
    assert report["responses_checked"] > INPUTS * 3 // 4
    assert report["leases_created"] > 0 and report["alive"] and report["daemon_restarts"] == 0


def _resp(status: int, body: bytes = b"", ctype: str | None = "application/json") -> http_fuzzer.Response:
    headers = [("content-type", ctype)] if ctype else []
    return http_fuzzer.Response("HTTP/1.1", status, "", headers, body, 0)


def test_oracle_catches_wrong_answers():
    """The HTTP fuzzer's oracle can fail: each kind of wrong answer is reported."""
    R = http_fuzzer.Req
    get = R("t", "GET", "/v1/leases", b"", "well", "/v1/leases")
    err = lambda code, msg="m": json.dumps({"error_code": code, "error_message": msg, "error_name": code}).encode()  # noqa: E731
    check = http_fuzzer.check_response
    assert check(get, _resp(200, b'{"leases":[]}')) is None
    assert check(get, _resp(404, err(404))) is None
    assert check(get, _resp(500, err(500, "Not enough hosts available"))) is None
    assert check(get, _resp(503, err(503))) is None
    assert check(get, _resp(500, err(500, "Internal Server Error"))) is not None
    assert check(get, _resp(504, err(504))) is not None
    assert check(get, _resp(501, err(501))) is not None  # not a floating-IP route
    assert check(R("t", "GET", "/v1/floatingips", b"", "well", "/v1/floatingips"), _resp(501, err(501))) is None
    assert check(get, _resp(404, err(400))) is not None  # error_code is not the status
    assert check(get, _resp(404, b'{"error_code":404,"error_name":404}')) is not None  # no message
    assert check(get, _resp(400, b"", ctype=None)) is not None  # not JSON on a well-formed request
    assert check(get, _resp(200, b"{not json")) is not None
    assert check(get, _resp(200, b"<html>", ctype="text/html")) is not None
    assert check(get, _resp(204, b"x")) is not None
    # A malformed request may be refused by the HTTP layer with an empty 400, never with a 500.
    bad = R("t", "G ET", "/v1/leases", b"", "loose", "/v1/leases")
    assert check(bad, _resp(400, b"", ctype=None)) is None
    assert check(bad, _resp(500, b"", ctype=None)) is not None
    # Response framing: chunked bodies, interim 100, disagreeing Content-Lengths.
    import socket
    a, b = socket.socketpair()
    conn = http_fuzzer.Conn.__new__(http_fuzzer.Conn)
    conn.sock, conn.buf, conn.eof = a, b"", False
    b.sendall(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
              b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab")
    r = conn.read_response("GET")
    assert (r.status, r.body) == (200, b"abc")
    with pytest.raises(ValueError):
        conn.read_response("GET")
    a.close(), b.close()
    a, b = socket.socketpair()
    conn.sock, conn.buf, conn.eof = a, b"", False
    b.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")  # cut short
    b.close()
    with pytest.raises(http_fuzzer.Closed):
        conn.read_response("GET")
    a.close()
