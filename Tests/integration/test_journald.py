"""Structured logging to journald, seen from the journal's side of the socket.

There is no journald on these machines, so the test plays journald: berthd runs in a private mount
namespace (`unshare --mount`, root only) where a tmpfs covers /run and the test's own directory is
bind-mounted at /run/systemd/journal, so libsystemd's `sd_journal_sendv` delivers to a datagram
socket of the test's at /run/systemd/journal/socket. The test parses the native journal protocol
(`FIELD=value\\n`, or `FIELD\\n<le64 size><bytes>\\n` for values with newlines) and checks the fields
operators filter on: MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, CODE_FILE/CODE_LINE/CODE_FUNC, and the
metadata fields RPC_METHOD, LEASE_ID, PROJECT_ID, HOST_NAME, RPC_ERROR_CODE, EVENT_TYPE.

berthd picks the journal handler only when JOURNAL_STREAM names its stderr, as systemd sets it for
`StandardError=journal`; with JOURNAL_STREAM unset it writes text to stderr (the other tests).
"""

from __future__ import annotations

import os
import struct
import subprocess

import pytest

from berthtest import DEADLINE, DatagramListener, make_hosts, ts

SHELL = 'mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && mount --bind "$0" /run/systemd/journal && exec "$@"'


def can_unshare_mounts() -> bool:
    if os.geteuid() != 0:
        return False
    return subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not can_unshare_mounts(),
                                reason="needs root and mount namespaces (unshare --mount) to stand in for journald")


def parse_native(data: bytes) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            key, value = line.split(b"=", 1)
            i = nl + 1
        else:
            key = line
            (size,) = struct.unpack("<Q", data[nl + 1:nl + 9])
            value = data[nl + 9:nl + 9 + size]
            assert data[nl + 9 + size:nl + 10 + size] == b"\n", "binary field not terminated by a newline"
            i = nl + 10 + size
        fields.setdefault(key.decode(), []).append(value.decode())
    return fields


class FakeJournal(DatagramListener):
    """A datagram socket speaking journald's native protocol; records (sender pid, fields)."""

    def __init__(self, directory: str):
        self.entries: list[tuple[int, dict[str, list[str]]]] = []
        # An entry may be large, and a burst of them must not be dropped before the thread reads them.
        super().__init__(os.path.join(directory, "socket"), max_size=1 << 20, receive_buffer=8 << 20,
                         name="fake journald")

    def received(self, pid: int, data: bytes) -> None:
        self.entries.append((pid, parse_native(data)))

    def wait_for(self, predicate, what: str) -> tuple[int, dict[str, list[str]]]:
        return self.wait(
            lambda: next((e for e in self.entries if predicate(e[1])), None), DEADLINE,
            timed_out=lambda: AssertionError(f"no journal entry {what}; got: {[f.get('MESSAGE') for _, f in self.entries]}"))


@pytest.fixture
def journal(daemon):
    j = FakeJournal(str(daemon.sock_dir))
    yield j
    j.close()


def one(fields: dict[str, list[str]], key: str) -> str:
    values = fields.get(key, [])
    assert len(values) == 1, f"{key}: expected exactly one value, got {values} in {fields}"
    return values[0]


def message(text: str):
    return lambda f: f.get("MESSAGE") == [text]


def test_structured_fields_reach_journald(daemon, journal):
    daemon.start(wrap=["unshare", "--mount", "sh", "-c", SHELL, str(daemon.sock_dir)], journal_stream=True)
    pid = daemon.pid
    rpc = daemon.client()
    make_hosts(rpc, "node-1")
    lease = rpc.call("lease.create", {"name": "journal", "project_id": "proj-j", "start": ts(1), "end": ts(2),
                                      "reservations": [{"kind": "host", "count": 1}]})

    # The daemon's own start-up message, at notice.
    sender, started = journal.wait_for(lambda f: one(f, "MESSAGE").startswith("berthd ") and "listening" in f["MESSAGE"][0],
                                       "for the start-up notice")
    assert sender == pid, "entries must come from berthd itself (journald records the sender's _PID)"
    assert one(started, "PRIORITY") == "5" and one(started, "SYSLOG_IDENTIFIER") == "berthd"
    assert one(started, "CLOCK") == "manual" and one(started, "HOSTS") == "0"

    # A change made over RPC: method, lease and project as fields, at info, with the code location.
    _, created = journal.wait_for(message("rpc lease.create"), "for lease.create")
    assert one(created, "RPC_METHOD") == "lease.create"
    assert one(created, "LEASE_ID") == lease["id"]
    assert one(created, "PROJECT_ID") == "proj-j"
    assert one(created, "PRIORITY") == "6"
    assert one(created, "RPC_PEER_UID") == "0"
    assert one(created, "CODE_FILE").endswith("OperationsLogging.swift")
    assert one(created, "CODE_LINE").isdigit() and one(created, "CODE_FUNC")
    assert one(created, "LOGGER_LABEL") == "berthd"

    # A refused call: the error code as a field.
    missing = "00000000-0000-4000-8000-000000000000"
    rpc.error("lease.get", {"id": missing}, code=-32001)
    _, refused = journal.wait_for(lambda f: one(f, "MESSAGE").startswith("rpc lease.get failed"), "for the refusal")
    assert one(refused, "LEASE_ID") == missing and one(refused, "RPC_ERROR_CODE") == "-32001"
    assert one(refused, "RPC_ERROR_REASON") == "not_found" and one(refused, "PRIORITY") == "6"

    # Timer-driven transitions, which no RPC call names, carry the lease too.
    rpc.call("clock.set", {"now": ts(1)})
    _, started_lease = journal.wait_for(message("event lease.started"), "for lease.started")
    assert one(started_lease, "LEASE_ID") == lease["id"] and one(started_lease, "PROJECT_ID") == "proj-j"
    assert one(started_lease, "EVENT_TYPE") == "lease.started"

    # A host going down is a warning (PRIORITY 4), with the host as a field.
    rpc.call("host.update", {"name": "node-1", "state": "down"})
    _, down = journal.wait_for(message("event host.down"), "for host.down")
    assert one(down, "PRIORITY") == "4" and one(down, "HOST_NAME") == "node-1"

    # Reads are debug: not sent at the default level.
    rpc.call("lease.list")
    assert not any(f.get("RPC_METHOD") == ["lease.list"] for _, f in journal.entries)
    # Everything went to the journal, nothing to stderr as text.
    assert "rpc lease.create" not in daemon.log_text()
    assert daemon.terminate() == 0
    journal.wait_for(message("berthd stopped"), "for the stop")


def test_text_on_stderr_without_journal_stream(daemon, journal):
    """Same namespace and socket, but JOURNAL_STREAM unset: plain text on stderr, nothing sent natively."""
    daemon.start(wrap=["unshare", "--mount", "sh", "-c", SHELL, str(daemon.sock_dir)])
    rpc = daemon.client()
    make_hosts(rpc, "node-1")
    assert daemon.terminate() == 0
    log = daemon.log_text()
    assert "rpc host.create" in log and "host.name=node-1" in log and "rpc.method=host.create" in log
    with journal.cond:
        assert journal.entries == []
