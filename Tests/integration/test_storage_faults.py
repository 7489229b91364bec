"""Storage faults: a full disk, a read-only file system and failing fsyncs make
writes answer -32007 `unavailable` while reads keep working, nothing acknowledged is lost, nothing
refused is half-applied, and writes work again once the fault clears, without a restart. A corrupt,
foreign or newer database at start is reported clearly and left untouched.

How the faults are made:
- disk full: the state directory lives on a real tmpfs of a few MiB that the test fills with a
  file until the kernel answers ENOSPC (mounting needs root, as the suite has in CI; without it the
  test falls back to the shim below, unless BERTH_REQUIRE_MOUNT=1, exported by .ci/run);
- read-only and failing fsync: support/storage_fault_shim.c, an LD_PRELOAD shim that makes
  writes/opens-for-writing fail with EROFS, or fsync/fdatasync with EIO, for files under the state
  directory while a control file says so. (A real tmpfs cannot be remounted read-only while berthd
  holds its database open for writing: the kernel refuses with EBUSY.)
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from berthtest import RPCError, events, lease_params, make_hosts, ts, wait_until
from test_metrics import LISTEN_RE, scrape

CC = next((c for c in (os.environ.get("CC"), "cc", "gcc", "clang", "/opt/swift/usr/bin/clang") if c and shutil.which(c)),
          None)
SHIM_SOURCE = Path(__file__).parent / "support" / "storage_fault_shim.c"
REQUIRE_MOUNT = os.environ.get("BERTH_REQUIRE_MOUNT") == "1"
REQUIRE_SHIM = os.environ.get("BERTH_REQUIRE_FAKETIME") == "1"

# Long names (the contract's 255-byte maximum), so that every create writes a few KiB.
PADDING = "u" * 255


@pytest.fixture(scope="module")
def shim(tmp_path_factory) -> str:
    if CC is None:
        if REQUIRE_SHIM:
            pytest.fail("no C compiler to build support/storage_fault_shim.c (BERTH_REQUIRE_FAKETIME=1)")
        pytest.skip("no C compiler to build support/storage_fault_shim.c")
    out = tmp_path_factory.mktemp("shim") / "storage_fault_shim.so"
    subprocess.run([CC, "-shared", "-fPIC", "-O2", "-o", str(out), str(SHIM_SOURCE), "-ldl"], check=True)
    return str(out)


class Fault:
    """The shim's control file: `set("erofs")`, `set("eio")`, `set("enospc")`, `clear()`."""

    def __init__(self, tmp_path: Path, shim: str, state_dir: Path):
        self.path = tmp_path / "fault"
        self.env = {"LD_PRELOAD": shim, "BERTH_FAULT_FILE": str(self.path), "BERTH_FAULT_DIR": str(state_dir)}

    def set(self, kind: str) -> None:
        self.path.write_text(kind)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


@pytest.fixture
def tiny_fs(tmp_path):
    """A real 8 MiB tmpfs, or None where mounting is not allowed."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        if REQUIRE_MOUNT:
            pytest.fail(f"cannot mount a tmpfs (BERTH_REQUIRE_MOUNT=1): {r.stderr.strip()}")
        yield None
        return
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def fill(directory: Path) -> Path:
    """Writes a file until the file system is full (ENOSPC), to the last byte."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for size in (1 << 20, 1 << 16, 1 << 12, 512, 1):
            while True:
                try:
                    f.write(b"\0" * size)
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
    return filler


def try_create(rpc, k: int) -> tuple[dict | None, RPCError | None]:
    try:
        return rpc.call("lease.create", lease_params(ts(10 + k), ts(11 + k), name=f"w{k}-{PADDING[:240]}", user_id=PADDING)), None
    except RPCError as e:
        assert e.code == -32007 and e.reason == "unavailable", e
        return None, e


def check_reads(rpc, kept: dict, names: set[str]) -> None:
    """Everything acknowledged is readable: one lease, the list, the calendar, events."""
    assert rpc.call("lease.get", {"id": kept["id"]}) == kept
    listed = {x["name"] for x in rpc.call("lease.list", {"limit": 1000})["items"]}
    assert listed == names
    rpc.call("calendar.get", {"from": ts(0), "to": ts(24 * 30)})
    evs = events(rpc)
    assert [e["seq"] for e in evs] == list(range(1, len(evs) + 1))
    assert {e["lease_id"] for e in evs if e["type"] == "lease.created"} == \
        {x["id"] for x in rpc.call("lease.list", {"limit": 1000})["items"]}


def write_until_refused(rpc, acked: dict[str, dict], start: int, *, attempts: int = 400) -> tuple[int, RPCError]:
    """Creates leases until one is refused; returns the next index and the first refusal."""
    for k in range(start, start + attempts):
        lease, err = try_create(rpc, k)
        if err is not None:
            return k + 1, err
        acked[lease["name"]] = lease
    raise AssertionError(f"{attempts} writes on a faulty disk all succeeded")


def wait_writable(rpc, acked: dict[str, dict], k: int) -> int:
    """After the fault clears, writes succeed again (after at most the 5 s back-off), no restart."""
    tries = iter(range(k, k + 1_000_000))

    def created():
        lease, _ = try_create(rpc, next(tries))
        return lease
    lease = wait_until(created, "a write to succeed after the fault cleared", interval=0.1)
    acked[lease["name"]] = lease
    return next(tries)


def run_fault_scenario(daemon, rpc, make_fault, clear_fault, expect_fault: set[str]) -> None:
    make_hosts(rpc, *(f"h{i}" for i in range(8)))
    kept = rpc.call("lease.create", lease_params(ts(1), ts(2), name="kept", count=2))
    acked: dict[str, dict] = {"kept": kept}
    assert rpc.call("system.health")["storage"] == "ok"

    make_fault()
    k, first = write_until_refused(rpc, acked, 0)
    assert first.data.get("storage_fault") in expect_fault, first.data
    health = rpc.call("system.health")
    assert health["status"] == "degraded" and health["storage"] in ("error", "read_only"), health
    assert health["storage_problem"]
    # Reads keep working and show exactly the acknowledged writes; the refused one left nothing.
    check_reads(rpc, kept, set(acked))
    # Further writes (of every kind) are refused too while the fault lasts; reads still work.
    for _ in range(3):
        lease, err = try_create(rpc, k)
        k += 1
        if lease is not None:  # a small write may still fit in space SQLite already holds
            acked[lease["name"]] = lease
        check_reads(rpc, kept, set(acked))
    upd = None
    try:
        upd = rpc.call("lease.update", {"id": kept["id"], "name": "renamed"})
    except RPCError as e:
        assert e.code == -32007, e
    if upd is not None:
        kept = upd
        acked.pop("kept")
        acked["renamed"] = upd
    check_reads(rpc, kept, set(acked))
    # Moving the manual clock is a write too: refused, the clock stays where it was (and nothing
    # it would have fired fires).
    now = rpc.call("clock.now")["now"]
    for _ in range(3):
        try:
            rpc.call("clock.advance", {"seconds": 2 * 3600})
        except RPCError as e:
            assert e.code == -32007, e
            assert rpc.call("clock.now")["now"] == now
            assert rpc.call("lease.get", {"id": kept["id"]})["status"] == "pending"
        else:  # a small write may still fit: then the lease has started and ended, as it should
            kept = rpc.call("lease.get", {"id": kept["id"]})
            assert kept["status"] == "ended", kept
            acked[kept["name"]] = kept
            break

    clear_fault()
    k = wait_writable(rpc, acked, k)
    health = rpc.call("system.health")
    assert health["storage"] == "ok" and health["status"] == "ok" and "storage_problem" not in health, health
    check_reads(rpc, kept, set(acked))
    assert "group commit failed" in daemon.log_text()

    # Every acknowledged write is on disk: a crash now loses none of them.
    daemon.kill()
    daemon.restart(now=None)
    rpc = daemon.client()
    for name, lease in acked.items():
        assert rpc.call("lease.get", {"id": lease["id"]}) == lease, name
    check_reads(rpc, kept, set(acked))


def test_disk_full_refuses_writes_keeps_reads_and_recovers(daemon, tmp_path, tiny_fs, shim):
    if tiny_fs is not None:
        state = tiny_fs / "state"
        fault = None
        daemon.start(state_dir=state)
        filler: list[Path] = []
        make = lambda: filler.append(fill(tiny_fs))  # noqa: E731
        clear = lambda: filler.pop().unlink()  # noqa: E731
    else:  # no mount: the shim's ENOSPC stands in for the real thing
        state = tmp_path / "state"
        fault = Fault(tmp_path, shim, state)
        daemon.start(state_dir=state, env=fault.env)
        make = lambda: fault.set("enospc")  # noqa: E731
        clear = fault.clear
    rpc = daemon.client()
    run_fault_scenario(daemon, rpc, make, clear, {"full", "io_error"})


def test_read_only_file_system_refuses_writes_keeps_reads_and_recovers(daemon, tmp_path, shim):
    state = tmp_path / "state"
    fault = Fault(tmp_path, shim, state)
    daemon.start(state_dir=state, env=fault.env)
    rpc = daemon.client()
    run_fault_scenario(daemon, rpc, lambda: fault.set("erofs"), fault.clear, {"io_error", "read_only"})


def test_failing_fsync_refuses_writes_and_recovers(daemon, tmp_path, shim):
    state = tmp_path / "state"
    fault = Fault(tmp_path, shim, state)
    daemon.start(state_dir=state, env=fault.env)
    rpc = daemon.client()
    run_fault_scenario(daemon, rpc, lambda: fault.set("eio"), fault.clear, {"io_error"})


def test_lasting_fault_backs_off_instead_of_retrying_every_write(daemon, tmp_path, shim):
    """While a fault lasts, berthd does not plan, fail and rebuild its state for every request:
    after the second failure in a row, writes are refused at once (with when they are retried)."""
    state = tmp_path / "state"
    fault = Fault(tmp_path, shim, state)
    daemon.start(state_dir=state, env=fault.env, config={"metrics": {"listen": "127.0.0.1:0"}})
    m = wait_until(lambda: LISTEN_RE.search(daemon.log_text()), "the metrics listening line in the log")
    daemon.metrics_url = "http://" + (m.group(1) or m.group(2))
    rpc = daemon.client()
    make_hosts(rpc, "h1")
    assert scrape(daemon).get("berth_storage_healthy") == 1
    fault.set("eio")
    messages = [try_create(rpc, k)[1].message for k in range(20)]
    assert all(m is not None for m in messages)
    refused_fast = [m for m in messages if "writes are retried in" in m]
    assert refused_fast, messages
    failed_commits = daemon.log_text().count("group commit failed")
    assert 2 <= failed_commits < 20, failed_commits
    metrics = scrape(daemon)
    assert metrics.get("berth_storage_healthy") == 0
    assert metrics.get("berth_storage_failed_commits_total") == failed_commits
    fault.clear()
    wait_writable(rpc, {}, 100)
    assert scrape(daemon).get("berth_storage_healthy") == 1


# ------------------------------------------------------------------------------------------------
# A database berthd must not open: refused at start, with a clear message, and never changed
# ------------------------------------------------------------------------------------------------

def snapshot(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def refused_start(daemon, state: Path) -> str:
    before = snapshot(state)
    daemon.start(state_dir=state, wait_ready=False)
    code = daemon.wait_exit()
    log = daemon.log_text()
    assert code != 0, log
    assert str(state / "berth.sqlite") in log or "berth.sqlite" in log, log
    after = snapshot(state)
    # Files that were there are byte for byte the same; the only new ones may be the empty WAL and
    # the shared-memory index SQLite makes to read a WAL-mode database at all.
    assert {k: after.get(k) for k in before} == before, "berthd changed a database it refused"
    for new in set(after) - set(before):
        assert new in ("berth.sqlite-wal", "berth.sqlite-shm"), new
        if new.endswith("-wal"):
            assert (state / new).stat().st_size == 0
    return log


def make_real_database(daemon, state: Path) -> dict:
    daemon.start(state_dir=state)
    rpc = daemon.client()
    make_hosts(rpc, "h1", "h2")
    lease = rpc.call("lease.create", lease_params(ts(1), ts(2), name="precious"))
    daemon.terminate()
    # Fold the WAL into the main file, so the file alone holds everything.
    db = sqlite3.connect(state / "berth.sqlite")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    for suffix in ("-wal", "-shm"):
        (state / f"berth.sqlite{suffix}").unlink(missing_ok=True)
    return lease


def test_garbage_database_is_refused_and_left_untouched(daemon, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "berth.sqlite").write_bytes(os.urandom(16384))
    log = refused_start(daemon, state)
    assert "is not a SQLite database" in log and "has not changed it" in log, log


def test_truncated_database_is_refused(daemon, tmp_path):
    state = tmp_path / "state"
    make_real_database(daemon, state)
    db = state / "berth.sqlite"
    db.write_bytes(db.read_bytes()[:60])
    log = refused_start(daemon, state)
    assert "is not a SQLite database" in log, log


def test_corrupt_pages_are_refused_by_the_integrity_check(daemon, tmp_path):
    state = tmp_path / "state"
    make_real_database(daemon, state)
    db = state / "berth.sqlite"
    data = bytearray(db.read_bytes())
    page = 4096
    assert len(data) >= 4 * page
    # Scribble over the b-tree pages after the schema page (page 1 stays readable).
    for p in range(1, len(data) // page):
        data[p * page: p * page + 64] = b"\xa5" * 64
    db.write_bytes(bytes(data))
    log = refused_start(daemon, state)
    assert "is corrupt" in log, log


def test_foreign_database_is_refused(daemon, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    db = sqlite3.connect(state / "berth.sqlite")
    db.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT)")
    db.execute("INSERT INTO customers (name) VALUES ('not berth')")
    db.commit()
    db.close()
    log = refused_start(daemon, state)
    assert "is not Berth's database" in log and "customers" in log, log


def test_database_from_a_newer_berthd_is_refused(daemon, tmp_path):
    state = tmp_path / "state"
    make_real_database(daemon, state)
    db = sqlite3.connect(state / "berth.sqlite")
    db.execute("INSERT INTO grdb_migrations (identifier) VALUES ('v99-from-the-future')")
    db.commit()
    db.execute("PRAGMA journal_mode = DELETE")  # no WAL left behind by this edit
    db.close()
    log = refused_start(daemon, state)
    assert "newer berthd" in log and "v99-from-the-future" in log, log


def test_a_sound_database_still_opens_after_the_checks(daemon, tmp_path):
    """The checks do not refuse a good database (with and without check_database_at_start)."""
    state = tmp_path / "state"
    lease = make_real_database(daemon, state)
    daemon.start(state_dir=state, now=None)
    assert daemon.client().call("lease.get", {"id": lease["id"]}) == lease
    daemon.terminate()
    daemon.start(state_dir=state, now=None, config={"check_database_at_start": False})
    assert daemon.client().call("lease.get", {"id": lease["id"]}) == lease
