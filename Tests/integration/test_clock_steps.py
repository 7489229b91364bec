"""Wall-clock steps: the real berthd on the SYSTEM clock (not --clock manual), its
CLOCK_REALTIME stepped forward and backward at runtime by the test. Lifecycle events must fire
exactly once: a forward step past a start fires it (not skipped), a backward step fires nothing
again and ends nothing, and the daemon keeps running its timers afterwards. Every wait is on a
condition with a timeout.

The step is made by a tiny LD_PRELOAD shim (support/wallclock_shim.c, compiled here with cc):
real time plus an offset read from a file on every call, for CLOCK_REALTIME, gettimeofday and time
only, which is what an NTP or operator step changes. libfaketime was tried first and does not work
for a Swift daemon (see the shim's header and docs/reliability.md). Needs a C compiler; skipped
without one unless BERTH_REQUIRE_FAKETIME=1 (CI)."""

from __future__ import annotations

import collections
import math
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from berthtest import events, lease_params, make_hosts, parse_ts, ts, wait_until

SHIM_SOURCE = Path(__file__).resolve().parent / "support" / "wallclock_shim.c"
CC = next((c for c in (os.environ.get("CC"), "cc", "gcc", "clang", "/opt/swift/usr/bin/clang") if c and shutil.which(c)),
          None)

if CC is None and os.environ.get("BERTH_REQUIRE_FAKETIME") == "1":
    raise RuntimeError("BERTH_REQUIRE_FAKETIME=1 but there is no C compiler to build the wall-clock shim")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (cc) to build support/wallclock_shim.c")


@pytest.fixture(scope="module")
def shim(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("shim") / "wallclock_shim.so"
    subprocess.run([CC, "-shared", "-fPIC", "-O2", "-o", str(out), str(SHIM_SOURCE), "-ldl"], check=True)
    return str(out)


T0 = "2030-06-01T00:00:00Z"


def at(hours: float = 0, minutes: float = 0) -> str:
    return ts(hours, minutes=minutes, base=T0)


class FakeWallClock:
    """berthd's CLOCK_REALTIME = real time + an offset the test sets (so it keeps ticking)."""

    def __init__(self, path: Path, shim: str):
        self.path, self.shim = path, shim

    def set(self, t: str) -> None:
        offset = math.ceil(parse_ts(t).timestamp() - time.time())
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{offset}\n")
        os.replace(tmp, self.path)  # atomic: berthd never reads a half-written file

    def env(self) -> dict:
        return {"LD_PRELOAD": self.shim, "BERTH_WALLCLOCK_OFFSET_FILE": str(self.path)}


def near(t: str, target: str, slack: int = 30) -> bool:
    """`t` is `target` or up to `slack` seconds later (the faked clock ticks on from where it was set)."""
    return 0 <= (parse_ts(t) - parse_ts(target)).total_seconds() <= slack


@pytest.fixture
def fake(daemon, tmp_path, shim):
    clock = FakeWallClock(tmp_path / "wallclock-offset", shim)
    clock.set(T0)
    daemon.start(clock="system", now=None, env=clock.env())
    return clock


WORK = {"role": "work"}


def hosts(rpc, *names):
    """Work hosts for the test's leases, and a probe host only daemon_now's dry runs use."""
    make_hosts(rpc, *names, properties=WORK)
    make_hosts(rpc, "probe", properties={"role": "probe"})


def work_lease(start, end, **kw):
    return lease_params(start, end, reservations=[{"kind": "host", "count": 1, "properties": WORK}], **kw)


def daemon_now(rpc) -> str:
    """berthd's idea of now (a dry-run lease starting "now" shows it; nothing is stored)."""
    return rpc.call("lease.create", dict(lease_params("now", "2099-01-01T00:00:00Z", name="probe", project="probe",
                                                      reservations=[{"kind": "host", "count": 1,
                                                                     "properties": {"role": "probe"}}]),
                                         dry_run=True))["start"]


def lease_events(rpc, lid: str) -> list[tuple[str, str]]:
    return [(e["type"], e["at"]) for e in events(rpc, types=["lease.*"]) if e.get("lease_id") == lid]


def count(rpc) -> collections.Counter:
    return collections.Counter((e["type"], e.get("lease_id")) for e in events(rpc, types=["lease.*"]))


def test_shim_steps_berthds_clock(daemon, fake):
    """Empirical check that berthd's clock reads go through the interposed clock_gettime."""
    rpc = daemon.client()
    hosts(rpc, "h1")
    assert near(daemon_now(rpc), T0)
    fake.set(at(5))
    wait_until(lambda: near(daemon_now(rpc), at(5)), "berthd to see the stepped clock", timeout=30)
    fake.set(at(-3))
    wait_until(lambda: near(daemon_now(rpc), at(-3)), "berthd to see the clock stepped back", timeout=30)


def test_steps_forward_and_back_fire_each_lifecycle_event_exactly_once(daemon, fake):
    rpc = daemon.client()
    hosts(rpc, "h1", "h2")
    a = rpc.call("lease.create", work_lease(at(1), at(2), name="a", before_end_s=600))
    b = rpc.call("lease.create", work_lease(at(3), at(4), name="b"))

    # Forward past a's start: lease.started once, at its due time.
    fake.set(at(1, minutes=5))
    wait_until(lambda: rpc.call("lease.get", {"id": a["id"]})["status"] == "active", "a to start")
    assert lease_events(rpc, a["id"])[1:] == [("lease.started", at(1))]

    # Backward before a's start. A marker lease created now ("now" = the stepped-back time) starts
    # and, after a second small step, ends: once its end is processed, the ticker has run at the
    # stepped-back times, so anything the backward step would wrongly (re)fire has fired by then.
    fake.set(at(0, minutes=30))
    wait_until(lambda: near(daemon_now(rpc), at(0, minutes=30)), "berthd to see the backward step")
    marker = rpc.call("lease.create", work_lease("now", at(0, minutes=35), name="marker", project="m"))
    assert near(marker["start"], at(0, minutes=30))
    wait_until(lambda: rpc.call("lease.get", {"id": marker["id"]})["status"] == "active", "marker to start")
    fake.set(at(0, minutes=36))
    wait_until(lambda: rpc.call("lease.get", {"id": marker["id"]})["status"] == "ended", "marker to end")
    c = count(rpc)
    assert c[("lease.started", a["id"])] == 1 and c[("lease.ended", a["id"])] == 0
    assert c[("lease.before_end", a["id"])] == 0
    assert c[("lease.started", b["id"])] == 0
    assert rpc.call("lease.get", {"id": a["id"]})["status"] == "active"  # a started lease does not un-start

    # Forward past a's end (and its before_end): each once; b not yet.
    fake.set(at(2, minutes=5))
    wait_until(lambda: rpc.call("lease.get", {"id": a["id"]})["status"] == "ended", "a to end")
    assert lease_events(rpc, a["id"])[1:] == [("lease.started", at(1)), ("lease.before_end", at(1, minutes=50)),
                                              ("lease.ended", at(2))]
    assert count(rpc)[("lease.started", b["id"])] == 0

    # A big jump over b's whole window: b starts and ends, nothing skipped, in time order.
    fake.set(at(6))
    wait_until(lambda: rpc.call("lease.get", {"id": b["id"]})["status"] == "ended", "b to start and end")
    assert lease_events(rpc, b["id"])[1:] == [("lease.started", at(3)), ("lease.ended", at(4))]

    # Back a whole day and forward again: nothing fires twice.
    before = events(rpc)
    fake.set(at(-24))
    wait_until(lambda: near(daemon_now(rpc), at(-24)), "berthd to see the day-long backward step")
    fake.set(at(7))
    m2 = rpc.call("lease.create", work_lease("now", at(7, minutes=1), name="marker2", project="m"))
    fake.set(at(7, minutes=2))
    wait_until(lambda: rpc.call("lease.get", {"id": m2["id"]})["status"] == "ended", "marker2 to end")
    after = events(rpc)
    assert after[:len(before)] == before
    assert [(e["type"], e.get("lease_id")) for e in after[len(before):]] == [
        ("lease.created", m2["id"]), ("lease.started", m2["id"]), ("lease.ended", m2["id"])]
    # The actions owed were written once each: one start and one end per lease.
    for lease in (a, b):
        kinds = sorted(x["kind"] for x in rpc.call("actions.list", {"lease_id": lease["id"]})["items"])
        assert kinds == ["lease.end", "lease.start"], kinds
    # And the daemon is still healthy after all this.
    assert rpc.call("system.health")["status"] == "ok"


def test_backward_step_does_not_stall_timers(daemon, fake):
    """After a step back, events due at the (new) wall time still fire promptly: the daemon does
    not wait for the old time to come back."""
    rpc = daemon.client()
    hosts(rpc, "h1")
    fake.set(at(10))
    wait_until(lambda: near(daemon_now(rpc), at(10)), "berthd to see the forward step")
    fake.set(at(1))
    wait_until(lambda: near(daemon_now(rpc), at(1)), "berthd to see the backward step")
    lease = rpc.call("lease.create", work_lease(at(1, minutes=1), at(1, minutes=2), name="soon"))
    fake.set(at(1, minutes=3))
    wait_until(lambda: rpc.call("lease.get", {"id": lease["id"]})["status"] == "ended", "the lease to run", timeout=30)
    evs = lease_events(rpc, lease["id"])
    assert evs[0][0] == "lease.created" and near(evs[0][1], at(1))
    assert evs[1:] == [("lease.started", at(1, minutes=1)), ("lease.ended", at(1, minutes=2))]
