"""Crash harness, CI size: 16 concurrent clients, SIGKILL at seeded random moments,
10 rounds; every round checks acknowledged writes, half-applied state, double booking, ledger and
outbox (see Tests/crash/crash_harness.py). Nightly size: `crash_harness.py --rounds 100`."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "crash"))

import crash_harness  # noqa: E402
from berthtest import DEFAULT_NOW  # noqa: E402

ROUNDS = int(os.environ.get("BERTH_CRASH_ROUNDS", "10"))
SEED = int(os.environ.get("BERTH_CRASH_SEED", "1"))


@pytest.mark.timeout(900)
def test_crash_rounds_keep_every_promise(tmp_path):
    lines: list[str] = []
    report = crash_harness.run(rounds=ROUNDS, seed=SEED, clients=16, workdir=str(tmp_path / "work"), log=lines.append)
    (tmp_path / "report.json").write_text(json.dumps(report, indent=2))
    print("\n".join(lines))
    assert report["kills"] == ROUNDS
    t = report["totals"]
    # The run did real work: writes were acknowledged, and kills caught requests in flight.
    assert t.get("acked_creates", 0) > 50 and t.get("acked_deletes", 0) > 0 and t.get("acked_updates", 0) > 0
    assert t.get("unknown", 0) > 0, "no kill ever landed while a request was in flight"
    assert report["findings"] == [], "\n".join(report["findings"][:30])


def test_checker_catches_lost_and_altered_writes(daemon):
    """The checks can fail: a model claiming acks the daemon does not have is reported."""
    daemon.start(config={"enforce_credits": True})
    rpc = daemon.client()
    hosts = {h["name"]: h for h in crash_harness.inventory()}
    for h in hosts.values():
        rpc.call("host.create", h)
    for p in crash_harness.PROJECTS:
        rpc.call("credits.grant", {"project_id": p, "resource_class": "host_hours", "amount": 100})
    params = {"name": "x", "project_id": "p0", "start": "2030-01-01T02:00:00Z", "end": "2030-01-01T03:00:00Z",
              "reservations": [{"kind": "host", "count": 1}]}
    lease = rpc.call("lease.create", params)
    m = crash_harness.Model()
    m.requests["x"] = params
    m.leases[lease["id"]] = {"owner": 0, "acked": dict(lease, end="2030-01-01T04:00:00Z"), "deleted": False,
                             "uncertain": False}
    ghost = dict(lease, id="00000000-0000-4000-8000-000000000000")
    m.leases[ghost["id"]] = {"owner": 0, "acked": ghost, "deleted": False, "uncertain": False}
    m.grants.append({"id": "00000000-0000-4000-8000-000000000001"})
    m.clock = "2030-01-01T00:30:00Z"  # an acked clock.advance the daemon lost
    res = crash_harness.check(rpc, m, 1, crash_harness.add(DEFAULT_NOW, 86400), hosts)
    text = "\n".join(res["findings"])
    assert f"lease {lease['id']} differs from its last acked write" in text
    assert f"acked lease {ghost['id']} (x) is gone" in text
    assert "acked grant 00000000-0000-4000-8000-000000000001 missing" in text
    assert "clock went back" in text
    # And a consistent model passes.
    m2 = crash_harness.Model()
    m2.requests["x"] = params
    m2.leases[lease["id"]] = {"owner": 0, "acked": lease, "deleted": False, "uncertain": False}
    assert crash_harness.check(rpc, m2, 1, crash_harness.add(DEFAULT_NOW, 86400), hosts)["findings"] == []
