"""Socket fuzzer, CI size: hostile lines against the real berthd, every reply a valid
JSON-RPC response, berthd alive and without double booking afterwards (Tests/fuzz/socket_fuzzer.py).
Long runs: `socket_fuzzer.py --inputs 1000000` or `make fuzz-socket`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))

import socket_fuzzer  # noqa: E402

INPUTS = int(os.environ.get("BERTH_FUZZ_SOCKET_INPUTS", "20000"))
SEED = int(os.environ.get("BERTH_FUZZ_SOCKET_SEED", "1"))


@pytest.mark.timeout(600)
def test_hostile_lines_get_valid_replies_and_leave_berthd_sound(tmp_path):
    lines: list[str] = []
    report = socket_fuzzer.run(INPUTS, seed=SEED, connections=4, workdir=str(tmp_path / "work"),
                               epoch_inputs=INPUTS, log=lines.append)
    (tmp_path / "report.json").write_text(json.dumps(report, indent=2))
    print("\n".join(lines[-5:]))
    print(json.dumps({k: v for k, v in report.items() if k != "findings"}, indent=1))
    assert report["inputs"] == INPUTS
    # The run reached every kind of input, and most of them were answered and checked.
    for gen in ("valid", "mutation", "wrong_type", "random_bytes", "invalid_utf8", "huge_numbers", "deep_nesting",
                "batch", "envelope", "notification"):
        assert report["by_generator"].get(gen, 0) > 0, f"generator {gen} never ran"
    assert report["responses_checked"] > INPUTS // 2
    assert report["epochs"] and all(e["alive"] for e in report["epochs"])
    assert report["findings"] == [], "\n".join(json.dumps(f) for f in report["findings"][:20])


def test_oracle_catches_wrong_replies():
    """The socket fuzzer's oracle can fail: each kind of wrong reply is reported."""
    W = socket_fuzzer.Want
    ok = {"jsonrpc": "2.0", "result": {}, "id": 1}
    assert socket_fuzzer.check_response(ok, W(1)) is None
    assert socket_fuzzer.check_response(ok, W(2)) is not None  # wrong id
    assert socket_fuzzer.check_response(dict(ok, id=1.0), W(1)) is not None  # id of another type
    assert socket_fuzzer.check_response(ok, W(1, -32602)) is not None  # a result where an error was due
    assert socket_fuzzer.check_response({"jsonrpc": "2.0", "id": 1}, W(1)) is not None
    assert socket_fuzzer.check_response(dict(ok, error={}), W(1)) is not None
    err = lambda code, reason, **d: {"jsonrpc": "2.0", "id": None,  # noqa: E731
                                     "error": {"code": code, "message": "m", "data": {"reason": reason, **d}}}
    assert socket_fuzzer.check_response(err(-32700, "parse_error"), W(None, -32700)) is None
    assert socket_fuzzer.check_response(err(-32700, "invalid_request"), W(None, -32700)) is not None
    assert socket_fuzzer.check_response(err(-32600, "invalid_request"), W(None, -32700)) is not None
    assert socket_fuzzer.check_response(err(-32000, "x"), W(None)) is not None
    assert socket_fuzzer.check_response(err(-32603, "internal_error"), W(None)) is not None
    assert socket_fuzzer.check_response(err(-32602, "invalid_params"), W(None)) is not None  # no data.errors
    e = err(-32602, "invalid_params", errors=[{"path": "vcpus", "message": "m"}])
    assert socket_fuzzer.check_response(e, W(None, -32602, param="vcpus")) is None
    assert socket_fuzzer.check_response(e, W(None, -32602, param="name")) is not None
    # What each line is owed.
    assert socket_fuzzer.expected_replies(b'{"jsonrpc":"2.0","method":"x"}') == ("none", None)
    kind, w = socket_fuzzer.expected_replies(b'{"jsonrpc":"2.0","method":"x","id":[1]}')
    assert kind == "one" and w.id is None and w.code == -32600
    for line in (b"[" * 257 + b"]" * 257, b'["\\ud800"]', b"1e400", b"NaN", b'"\xff"', b"[1,]"):
        kind, w = socket_fuzzer.expected_replies(line)
        assert kind == "one" and w.code == -32700, line
    kind, ws = socket_fuzzer.expected_replies(b"[" * 256 + b"]" * 256)  # deep, but JSON: a batch of one non-object
    assert kind == "batch" and [(w.id, w.code) for w in ws] == [(None, -32600)]
    kind, ws = socket_fuzzer.expected_replies(b'[{"jsonrpc":"2.0","method":"x","id":1},{"jsonrpc":"2.0","method":"x"},5]')
    assert kind == "batch" and [(w.id, w.code) for w in ws] == [(1, None), (None, -32600)]
