"""JSON-RPC 2.0 over the Unix socket: framing, errors, batches, notifications, ids, concurrency."""

from __future__ import annotations

import json
import socket

import pytest

from berthtest import RPCClient, error_of


def test_malformed_json_gets_parse_error_and_connection_stays_usable(rpc):
    rpc.send_raw(b'{"jsonrpc": "2.0", "method": "system.health", "id": 1\n')
    reply = rpc.recv()
    err = error_of(reply)
    assert err["code"] == -32700
    assert err["data"]["reason"] == "parse_error"
    assert reply["id"] is None
    rpc.send_raw(b"\x00\xff not json at all\n")
    assert error_of(rpc.recv())["code"] == -32700
    # Same connection, next request works.
    assert rpc.call("system.health")["status"] == "ok"


@pytest.mark.parametrize("value", [b"42", b'"x"', b"true", b"null", b"3.5"])
def test_non_request_json_values_are_invalid_requests(rpc, value):
    rpc.send_raw(value + b"\n")
    reply = rpc.recv()
    err = error_of(reply)
    assert err["code"] == -32600
    assert err["data"]["reason"] == "invalid_request"
    assert reply["id"] is None
    assert rpc.call("clock.now")["now"] == "2030-01-01T00:00:00Z"


def test_batch_of_non_objects_gets_one_error_each(rpc):
    rpc.send_raw(b"[1, 2, 3]\n")
    reply = rpc.recv()
    assert isinstance(reply, list) and len(reply) == 3
    for r in reply:
        assert error_of(r)["code"] == -32600
        assert r["id"] is None


@pytest.mark.parametrize("version", ["1.0", 2.0, None, "2.0 "])
def test_wrong_jsonrpc_version_is_invalid_request(rpc, version):
    msg = {"method": "system.health", "id": 17}
    if version is not None:
        msg["jsonrpc"] = version
    rpc.send(msg)
    reply = rpc.recv()
    assert error_of(reply)["code"] == -32600
    assert reply["id"] == 17


@pytest.mark.parametrize("method", [None, 5, ["system.health"]])
def test_missing_or_non_string_method_is_invalid_request(rpc, method):
    msg = {"jsonrpc": "2.0", "id": "m"}
    if method is not None:
        msg["method"] = method
    rpc.send(msg)
    reply = rpc.recv()
    assert error_of(reply)["code"] == -32600
    assert reply["id"] == "m"


@pytest.mark.parametrize("bad_id", [True, {"a": 1}, [1]])
def test_id_of_wrong_type_is_invalid_request_with_null_id(rpc, bad_id):
    rpc.send({"jsonrpc": "2.0", "method": "system.health", "id": bad_id})
    reply = rpc.recv()
    assert error_of(reply)["code"] == -32600
    assert reply["id"] is None


def test_unknown_method(rpc):
    e = rpc.error("lease.teleport", {"id": "x"}, -32601)
    assert e.reason == "method_not_found"
    assert "lease.teleport" in e.message


def test_clock_methods_do_not_exist_on_the_system_clock(daemon):
    daemon.start(clock=None, now=None)
    rpc = daemon.client()
    for m in ("clock.now", "clock.set", "clock.advance"):
        assert rpc.error(m, None, -32601).reason == "method_not_found"
    assert rpc.call("system.health")["status"] == "ok"


@pytest.mark.parametrize("params", [5, "name", True])
def test_params_of_wrong_json_type_is_invalid_request(rpc, params):
    rpc.send({"jsonrpc": "2.0", "method": "host.get", "params": params, "id": 3})
    reply = rpc.recv()
    assert error_of(reply)["code"] == -32600
    assert reply["id"] == 3


def test_positional_params_are_invalid_params(rpc):
    # Params are by name only: an array is well-formed JSON-RPC but not what any method takes.
    e = rpc.error("host.get", ["node-1"], -32602)
    assert e.error_paths[0] == "params"


def test_batch_mixed_with_notifications_answers_requests_in_order(rpc):
    batch = [
        {"jsonrpc": "2.0", "method": "clock.now", "id": "a"},
        {"jsonrpc": "2.0", "method": "host.create",
         "params": {"name": "from-notification", "vcpus": 4, "memory_mb": 1024, "disk_gb": 10}},
        {"jsonrpc": "2.0", "method": "no.such.method", "id": 2},
        {"jsonrpc": "2.0", "method": "host.get", "params": {"name": "from-notification"}, "id": None},
        42,
    ]
    rpc.send(batch)
    reply = rpc.recv()
    assert isinstance(reply, list)
    assert [r["id"] for r in reply] == ["a", 2, None, None]
    assert reply[0]["result"] == {"now": "2030-01-01T00:00:00Z"}
    assert error_of(reply[1])["code"] == -32601
    # The notification in the batch was executed (before the host.get that follows it).
    assert reply[2]["result"]["name"] == "from-notification"
    assert error_of(reply[3])["code"] == -32600


def test_empty_batch_is_one_invalid_request(rpc):
    rpc.send_raw(b"[]\n")
    reply = rpc.recv()
    assert isinstance(reply, dict), f"an empty batch gets one error object, not an array: {reply}"
    assert error_of(reply)["code"] == -32600
    assert reply["id"] is None


def test_batch_of_only_notifications_gets_no_reply(rpc):
    rpc.send([
        {"jsonrpc": "2.0", "method": "system.health"},
        {"jsonrpc": "2.0", "method": "clock.now"},
        {"jsonrpc": "2.0", "method": "no.such.method"},
    ])
    # Replies come in order: if the batch had produced one, it would arrive before this.
    rpc.send({"jsonrpc": "2.0", "method": "clock.now", "id": "after"})
    reply = rpc.recv()
    assert isinstance(reply, dict) and reply.get("id") == "after", f"unexpected reply to a notification batch: {reply}"


def test_notifications_get_no_reply_but_are_executed(rpc):
    rpc.notify("host.create", {"name": "n1", "vcpus": 2, "memory_mb": 1024, "disk_gb": 10})
    rpc.notify("no.such.method")
    rpc.notify("host.get", {"name": "does-not-exist"})  # an error, but a notification: still no reply
    rpc.send({"jsonrpc": "2.0", "method": "host.get", "params": {"name": "n1"}, "id": 99})
    reply = rpc.recv()
    assert reply["id"] == 99, f"a notification was answered: {reply}"
    assert reply["result"]["name"] == "n1"


@pytest.mark.parametrize("rid", ["abc", "", "ünïcødé-✓", 0, -7, 42, 2**53 + 1, 2**63 - 1, -(2**63), 1.5, None])
def test_id_is_echoed_exactly(rpc, rid):
    rpc.send({"jsonrpc": "2.0", "method": "clock.now", "id": rid})
    line = rpc.recv_line()
    reply = json.loads(line)
    assert reply["id"] == rid and type(reply["id"]) is type(rid)
    assert reply["result"]["now"] == "2030-01-01T00:00:00Z"


def test_pipelined_requests_are_answered_in_order(rpc):
    ids = [f"req-{(i * 37) % 101}" for i in range(100)]
    lines = []
    for i, rid in enumerate(ids):
        if i % 3 == 0:
            # A write through the scheduler (slow, fsync) ...
            msg = {"jsonrpc": "2.0", "method": "host.create", "id": rid,
                   "params": {"name": f"p{i}", "vcpus": 1, "memory_mb": 512, "disk_gb": 1}}
        elif i % 3 == 1:
            # ... then reads that need no scheduler (fast) ...
            msg = {"jsonrpc": "2.0", "method": "system.health", "id": rid}
        else:
            # ... and an error.
            msg = {"jsonrpc": "2.0", "method": "host.get", "id": rid, "params": {"name": f"missing{i}"}}
        lines.append(json.dumps(msg).encode() + b"\n")
    rpc.send_raw(b"".join(lines))
    replies = [rpc.recv() for _ in ids]
    assert [r["id"] for r in replies] == ids
    for i, r in enumerate(replies):
        if i % 3 == 0:
            assert r["result"]["name"] == f"p{i}"
        elif i % 3 == 1:
            assert r["result"]["status"] == "ok"
        else:
            assert error_of(r)["code"] == -32001


def test_oversized_line_is_refused_and_only_that_connection_closed(berthd):
    bystander = berthd.client()
    assert bystander.call("clock.now")
    big = berthd.client()
    payload = b'{"jsonrpc":"2.0","method":"system.health","id":1,"params":{"pad":"' + b"x" * (2 << 20) + b'"}}\n'
    try:
        big.send_raw(payload)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may close before it has read everything; its reply is still readable
    reply = big.recv()
    err = error_of(reply)
    assert err["code"] == -32600
    assert reply["id"] is None
    assert big.is_at_eof(), "the connection must be closed after the over-long line"
    # Nothing else is affected: an existing and a new connection both work.
    assert bystander.call("clock.now")["now"] == "2030-01-01T00:00:00Z"
    assert berthd.client().call("system.health")["status"] == "ok"


def test_line_limit_is_configurable(daemon):
    daemon.start(config={"max_request_bytes": 4096})
    ok = daemon.client()
    small_pad = "y" * 3000
    e = ok.error("host.get", {"name": "h", "pad": small_pad}, -32602)  # under the limit: parsed, then refused
    assert "pad" in e.error_paths
    big = daemon.client()
    big.send({"jsonrpc": "2.0", "method": "host.get", "id": 5, "params": {"name": "h", "pad": "z" * 5000}})
    assert error_of(big.recv())["code"] == -32600
    assert big.is_at_eof()
    assert ok.call("clock.now")


def test_client_disconnecting_mid_request_leaves_daemon_serving(berthd):
    for _ in range(5):
        c = RPCClient(berthd.socket_path)
        c.send_raw(b'{"jsonrpc":"2.0","method":"host.create","params":{"name":"half')
        c.close()
    # And one that sends a whole request and goes away without reading the reply.
    c = RPCClient(berthd.socket_path)
    c.send_raw(b'{"jsonrpc":"2.0","method":"host.create","id":1,'
               b'"params":{"name":"gone","vcpus":1,"memory_mb":1,"disk_gb":1}}\n')
    c.close()
    rpc = berthd.client()
    assert rpc.call("system.health")["status"] == "ok"
    # The cut-off host.create requests created nothing.
    names = [h["name"] for h in rpc.call("host.list")["items"]]
    assert not any(n.startswith("half") for n in names)


def test_half_closed_client_still_gets_its_replies(berthd):
    """A client that sends its requests and shuts down its write side (`nc -N`) is still answered,
    including a last line without its newline."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(berthd.socket_path)
    s.sendall(b'{"jsonrpc":"2.0","method":"clock.now","id":1}\n{"jsonrpc":"2.0","method":"system.health","id":2}')
    s.shutdown(socket.SHUT_WR)
    c = RPCClient(berthd.socket_path, sock=s)
    assert c.recv()["id"] == 1
    assert c.recv()["id"] == 2
    assert c.is_at_eof()


def test_a_thousand_concurrent_connections(berthd, nofile_limit):
    n = 1000
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(60)
            s.connect(berthd.socket_path)
            socks.append(s)
        # Every connection is open at once; each now makes a call.
        for i, s in enumerate(socks):
            method = "clock.now" if i % 2 else "system.health"
            s.sendall(json.dumps({"jsonrpc": "2.0", "method": method, "id": i}).encode() + b"\n")
        clients = [RPCClient(berthd.socket_path, sock=s) for s in socks]
        for i, c in enumerate(clients):
            reply = c.recv()
            assert reply["id"] == i and "result" in reply, reply
        # A second round on the same connections, still all open.
        for i, c in enumerate(clients):
            c.send({"jsonrpc": "2.0", "method": "clock.now", "id": f"second-{i}"})
        for i, c in enumerate(clients):
            assert c.recv()["id"] == f"second-{i}"
    finally:
        for s in socks:
            s.close()
    assert berthd.client().call("system.health")["status"] == "ok"


def test_health(rpc):
    h = rpc.call("system.health")
    assert h["status"] == "ok" and h["storage"] == "ok" and h["adapter"] in ("ok", "degraded")
    assert isinstance(h["uptime_s"], int) and h["uptime_s"] >= 0
    assert h["version"]


def test_hostile_json_is_refused_without_harm(berthd):
    rpc = berthd.client()
    rpc.send_raw(b"[" * 400_000 + b"]" * 400_000 + b"\n")  # under the line limit, absurdly deep
    assert error_of(rpc.recv())["code"] == -32700
    rpc.send_raw(b'{"jsonrpc":"2.0","method":"host.get","id":1,"params":{"name":"\xff\xfe"}}\n')
    assert error_of(rpc.recv())["code"] == -32700
    rpc.send_raw(b'{"jsonrpc":"2.0","method":"host.get","id":1,"params":{"name":"\\ud800"}}\n')
    assert error_of(rpc.recv())["code"] == -32700
    assert rpc.call("system.health")["status"] == "ok"
    assert berthd.running
