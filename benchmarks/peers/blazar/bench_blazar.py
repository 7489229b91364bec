#!/usr/bin/env python3
"""Times OpenStack Blazar's host-candidate search on berth-bench's population.

Run it with the interpreter of the venv that setup.sh makes (blazar 18.0.0 from PyPI):

    benchmarks/peers/blazar/.venv/bin/python benchmarks/peers/blazar/bench_blazar.py \
        --hosts 1000 --leases 5000 --iterations 20 --output blazar-1000.json

What it does, in process (no Nova, no Keystone, no RPC, no API):

1. Generates exactly berth-bench's population: the same SplitMix64 (seed 42) and the same draws as
   Swift's `Int64.random(in:using:)` (Lemire's method), every lease placed by a replay of Berth's
   own host placement (free hosts, tightest free gap around the window, then name). The number of
   allocations printed matches berth-bench's "population:" line.
2. Stores it with Blazar's own schema and models (`blazar.db.sqlalchemy.api.setup_db`, the
   metadata Blazar's unit tests use) in SQLite on tmpfs (/dev/shm): computehosts with their
   `rack` extra capability and placement inventories, and per lease exactly the rows
   `ManagerService.create_lease` + `PhysicalHostPlugin.reserve_resource` write: leases,
   reservations, computehost_reservations, computehost_allocations, events (start_lease,
   end_lease, before_end_lease).
3. Times `PhysicalHostPlugin._matching_hosts(hypervisor_properties, resource_properties,
   count_range, start_date, end_date)` -- the search behind every host lease create (Blazar calls
   it twice per create: in `allocation_candidates` and again in `reserve_resource`) -- for the
   first N requests of berth-bench's allocator benchmark (SplitMix64 seed 7: 1-4 hosts, a random
   whole-hour window), and optionally its rack-filtered request (2 hosts, `rack == rX`).
   Every answer is checked against the replayed Berth placement (enough free hosts or not).

Two schemas: `shipped` is what `setup_db` creates on SQLite (no index on foreign-key columns);
`indexed` adds one index per foreign-key column, which is what MySQL/InnoDB, Blazar's production
database, creates by itself. The ratio against Berth uses the faster of the two.

Prints a table and writes JSON (--output). Timings are reported, never asserted.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid

import warnings

import numpy as np

# futurist imports eventlet (never monkey-patched here), which warns that it is deprecated.
warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

# --------------------------------------------------------------------------------------------
# berth-bench's generator, ported


MASK64 = (1 << 64) - 1


class SplitMix64:
    """Tests/BerthTestSupport/SplitMix64.swift, plus Swift's `next(upperBound:)` (Lemire's nearly
    divisionless method, as in the standard library), so every draw equals berth-bench's."""

    def __init__(self, seed: int):
        self.state = seed & MASK64

    def next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def below(self, bound: int) -> int:
        m = self.next() * bound
        if (m & MASK64) < bound:
            t = ((1 << 64) - bound) % bound
            while (m & MASK64) < t:
                m = self.next() * bound
        return m >> 64

    def range(self, lo: int, hi: int) -> int:  # Int64.random(in: lo..<hi)
        return lo + self.below(hi - lo)

    def closed(self, lo: int, hi: int) -> int:  # Int64.random(in: lo...hi)
        return lo + self.below(hi - lo + 1)


BASE = datetime.datetime(2030, 1, 1)  # 2030-01-01T00:00:00Z, naive UTC as Blazar stores it
HORIZON_HOURS = 60 * 24
MAX_HOURS = 72
SLOTS = HORIZON_HOURS + MAX_HOURS  # every window lies in [0, SLOTS) hours from BASE
CAP_HOURS = 366 * 24  # LeaseCalendar.slack's cap per side
NONE_BEFORE = -(1 << 30)
NONE_AFTER = 1 << 30


def host_name(i: int) -> str:
    return "h%05d" % i  # "h\(String(i + 100_000).dropFirst())" for i < 100,000


class BerthPlacement:
    """Berth's `LeasePlanner.place` for a whole-host request (no GPUs, every host schedulable):
    the hosts free for the whole window, ranked by `LeaseCalendar.slack` (free time before plus
    after, each capped), then by name; the first `count` win.

    Time is in whole hours (every window starts and ends on one), one row per hour, one column per
    host: `busy[t, h]`, `next_start[t, h]` (earliest start >= t) and `prev_end[t, h]` (latest end
    <= t), so one request reads three rows of H values whatever the number of leases."""

    def __init__(self, hosts: int, racks: list[int]):
        self.hosts = hosts
        self.racks = np.array(racks)
        self.busy = np.zeros((SLOTS + 1, hosts), dtype=bool)
        self.next_start = np.full((SLOTS + 1, hosts), NONE_AFTER, dtype=np.int64)
        self.prev_end = np.full((SLOTS + 1, hosts), NONE_BEFORE, dtype=np.int64)
        self.index = np.arange(hosts, dtype=np.int64)

    def choose(self, s: int, e: int, count: int, rack: int | None = None) -> list[int] | None:
        next_start = self.next_start[s]
        free = ~self.busy[s] & (next_start >= e)
        if rack is not None:
            free &= self.racks == rack
        if np.count_nonzero(free) < count:
            return None
        slack = np.minimum(s - self.prev_end[s], CAP_HOURS) + np.minimum(next_start - e, CAP_HOURS)
        key = slack * self.hosts + self.index  # (slack, name): names sort as indices
        key[~free] = NONE_AFTER * self.hosts  # beyond any free host's key
        return sorted(int(h) for h in np.argpartition(key, count - 1)[:count])

    def insert(self, h: int, s: int, e: int) -> None:
        self.busy[s:e, h] = True
        np.minimum(self.next_start[: s + 1, h], s, out=self.next_start[: s + 1, h])
        np.maximum(self.prev_end[e:, h], e, out=self.prev_end[e:, h])


def generate_population(hosts: int, leases: int):
    """berth-bench's buildPopulation(): returns (placement state, [(start_h, end_h, [host])])."""
    racks = [i % 20 for i in range(hosts)]
    state = BerthPlacement(hosts, racks)
    rng = SplitMix64(42)
    out = []
    while len(out) < leases:
        s = rng.range(0, HORIZON_HOURS)
        e = s + rng.closed(1, MAX_HOURS)
        count = rng.closed(1, 4)
        chosen = state.choose(s, e, count)
        if chosen is None:
            continue
        for h in chosen:
            state.insert(h, s, e)
        out.append((s, e, chosen))
    return state, out


def generate_requests(n: int):
    """The first n requests of berth-bench's allocator benchmark (seed 7): each iteration draws
    a start, a length, a host count, then the rack of the filtered request."""
    rng = SplitMix64(7)
    out = []
    for _ in range(n):
        s = rng.range(0, HORIZON_HOURS)
        e = s + rng.closed(1, MAX_HOURS)
        count = rng.closed(1, 4)
        rack = rng.range(0, 20)
        out.append((s, e, count, rack))
    return out


# --------------------------------------------------------------------------------------------
# Blazar


def det_uuid(kind: str, i: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "berth-bench/%s/%d" % (kind, i)))


def hours(h: int) -> datetime.datetime:
    return BASE + datetime.timedelta(hours=h)


def init_blazar(db_path: str):
    """Blazar's configuration and database layer, as its DB unit tests set them up."""
    from blazar import config as blazar_config  # registers Blazar's options
    from blazar.db import api as _  # noqa: F401 -- registers [database] (oslo.db defaults)
    from blazar.db.sqlalchemy import api as db_api
    from blazar.db.sqlalchemy import facade_wrapper
    from blazar.plugins.oshosts import host_plugin  # noqa: F401 -- registers its options before parsing
    from oslo_log import log as logging

    conf = blazar_config.CONF
    if not conf._args:
        conf([], project="blazar")
    conf.set_override("use_stderr", False)
    conf.set_override("connection", "sqlite:///" + db_path, group="database")
    logging.setup(conf, "blazar")

    facade_wrapper._clear_engine()
    db_api.setup_db()
    return conf


def load_population(hosts: int, population, indexed: bool) -> tuple[int, float]:
    """Writes the inventory and leases with Blazar's models; returns (row count, seconds)."""
    import sqlalchemy as sa
    from blazar import status
    from blazar.db.sqlalchemy import facade_wrapper, models

    t0 = time.perf_counter()
    rows = 0
    with facade_wrapper.session_for_write() as session:
        conn = session.connection()

        def put(model, values):
            nonlocal rows
            if values:
                conn.execute(sa.insert(model.__table__), values)
                rows += len(values)

        rack_prop = det_uuid("property", 0)
        put(models.ResourceProperty, [{"id": rack_prop, "resource_type": "physical:host", "property_name": "rack", "private": False}])
        host_rows, caps, inventories = [], [], []
        for i in range(hosts):
            hid = det_uuid("host", i)
            name = host_name(i)
            # The fields create_computehost copies from Nova's hypervisor, as Nova reports them.
            host_rows.append({
                "id": hid, "vcpus": 64, "cpu_info": "{}", "hypervisor_type": "QEMU", "hypervisor_version": 8002000,
                "hypervisor_hostname": name, "service_name": name, "memory_mb": 262144, "local_gb": 960,
                "status": None, "availability_zone": "", "trust_id": det_uuid("trust", 0), "reservable": True,
            })
            caps.append({"id": det_uuid("cap", i), "computehost_id": hid, "property_id": rack_prop, "capability_value": "r%d" % (i % 20)})
            for j, (rc, total) in enumerate((("VCPU", 64), ("MEMORY_MB", 262144), ("DISK_GB", 960))):
                inventories.append({
                    "id": det_uuid("inv", 3 * i + j), "computehost_id": hid, "resource_class": rc, "total": total,
                    "reserved": 0, "min_unit": 1, "max_unit": total, "step_size": 1, "allocation_ratio": 1.0,
                })
        put(models.ComputeHost, host_rows)
        put(models.ComputeHostExtraCapability, caps)
        put(models.ComputeHostResourceInventory, inventories)

        chunk = 5000
        for lo in range(0, len(population), chunk):
            leases, reservations, host_res, allocations, events = [], [], [], [], []
            for n in range(lo, min(len(population), lo + chunk)):
                s, e, chosen = population[n]
                lid, rid, hrid = det_uuid("lease", n), det_uuid("reservation", n), det_uuid("host-reservation", n)
                start, end = hours(s), hours(e)
                leases.append({
                    "id": lid, "name": "bench-%d" % n, "user_id": "bench", "project_id": "bench", "start_date": start,
                    "end_date": end, "trust_id": det_uuid("trust", 0), "status": status.lease.PENDING, "degraded": False,
                })
                reservations.append({
                    "id": rid, "lease_id": lid, "resource_id": hrid, "resource_type": "physical:host",
                    "status": status.reservation.PENDING, "missing_resources": False, "resources_changed": False,
                })
                host_res.append({
                    "id": hrid, "reservation_id": rid, "aggregate_id": n + 1, "resource_properties": "",
                    "count_range": "%d-%d" % (len(chosen), len(chosen)), "hypervisor_properties": "", "before_end": "default",
                })
                for k, h in enumerate(chosen):
                    allocations.append({"id": det_uuid("alloc-%d" % n, k), "compute_host_id": det_uuid("host", h), "reservation_id": rid})
                before_end = max(start, end - datetime.timedelta(minutes=60))  # minutes_before_end_lease = 60
                for k, (kind, when) in enumerate((("start_lease", start), ("end_lease", end), ("before_end_lease", before_end))):
                    events.append({"id": det_uuid("event-%d" % n, k), "lease_id": lid, "event_type": kind, "time": when, "status": status.event.UNDONE})
            put(models.Lease, leases)
            put(models.Reservation, reservations)
            put(models.ComputeHostReservation, host_res)
            put(models.ComputeHostAllocation, allocations)
            put(models.Event, events)
        if indexed:
            # What InnoDB creates by itself: one index per foreign-key column.
            for table in models.Lease.metadata.sorted_tables:
                for fk in table.foreign_keys:
                    col = fk.parent
                    conn.execute(sa.text('CREATE INDEX IF NOT EXISTS "ix_%s_%s" ON "%s" ("%s")' % (table.name, col.name, table.name, col.name)))
        conn.execute(sa.text("ANALYZE"))
    return rows, time.perf_counter() - t0


def percentile(samples: list[float], p: float) -> float:
    """berth-bench's Stats.percentile: nearest rank below, on the sorted samples."""
    s = sorted(samples)
    if not s:
        return 0.0
    return s[min(len(s) - 1, int((len(s) - 1) * p))]


def search_args(request, rack: bool):
    s, e, count, r = request
    if rack:
        return 2, "", json.dumps(["=", "$rack", "r%d" % r]), hours(s), hours(e)
    return count, "", "", hours(s), hours(e)


def projected_search_s(request, rack: bool, sample: int, budget_s: float) -> float:
    """Estimates one _matching_hosts call without running it whole: times the host query in full,
    then Blazar's per-host loop body (the same two calls, copied from _matching_hosts) on up to
    `sample` hosts spread over the list (at least 5, fewer than `sample` once `budget_s` is spent),
    and scales that to every host."""
    from blazar.db import api as db_api
    from blazar.db import utils as db_utils
    from blazar.utils import plugins as plugins_utils

    _, hyper, props, start, end = search_args(request, rack)
    devnull = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(devnull):
        filters = plugins_utils.convert_requirements(props) if props else []
        hosts = db_api.reservable_host_get_all_by_queries(filters)
    query_s = time.perf_counter() - t0
    picked = hosts[:: max(1, len(hosts) // sample)][:sample]
    t1 = time.perf_counter()
    done = 0
    for host in picked:
        if not db_api.host_allocation_get_all_by_values(compute_host_id=host["id"]):
            pass
        elif db_utils.get_free_periods(host["id"], start, end, end - start) == [(start, end)]:
            pass
        done += 1
        if done >= 5 and time.perf_counter() - t1 > budget_s:
            break
    per_host_s = (time.perf_counter() - t1) / max(1, done)
    return query_s + per_host_s * len(hosts)


def time_search(plugin, requests, state: BerthPlacement, rack: bool, iterations: int, time_cap: float,
                max_request_s: float, sample: int):
    """Times _matching_hosts on the first requests until `iterations` are done or `time_cap`
    seconds are spent; checks every answer against Berth's replayed placement. When the first
    request is projected to take longer than `max_request_s`, every request is estimated instead
    (projected_search_s) and the row says so."""
    samples, accepted, mismatches = [], 0, 0
    devnull = io.StringIO()
    spent = 0.0
    t0 = time.perf_counter()
    probe = projected_search_s(requests[0], rack, sample, max_request_s / 4) if requests and iterations > 0 else 0.0
    estimated = probe > max_request_s
    if estimated:
        samples.append(probe * 1000.0)
        spent += time.perf_counter() - t0
    for request in requests[len(samples):iterations]:
        if spent >= time_cap:
            break
        count, hyper, props, start, end = search_args(request, rack)
        t0 = time.perf_counter()
        if estimated:
            dt = projected_search_s(request, rack, sample, max_request_s / 4)
        else:
            # Blazar 18.0.0 prints dir() of every extra capability row it filters on (a stray debug
            # print in host_get_all_by_queries); it is part of its cost, but kept off the terminal.
            with contextlib.redirect_stdout(devnull):
                found = plugin._matching_hosts(hyper, props, "%d-%d" % (count, count), start, end)
            dt = time.perf_counter() - t0
            devnull.seek(0)
            devnull.truncate()
            s, e, _, r = request
            expected = state.choose(s, e, count, r if rack else None) is not None
            got = len(found) >= count
            accepted += got
            mismatches += got != expected
        spent += time.perf_counter() - t0
        samples.append(dt * 1000.0)
    return samples, accepted, mismatches, estimated


def run_schema(args, schema: str, state, population, requests) -> dict:
    workdir = tempfile.mkdtemp(prefix="berth-blazar-", dir=args.tmpdir)
    try:
        db_path = os.path.join(workdir, "blazar.db")
        init_blazar(db_path)
        rows, load_s = load_population(args.hosts, population, indexed=(schema == "indexed"))
        from blazar.plugins.oshosts import host_plugin

        plugin = host_plugin.PhysicalHostPlugin()
        out = {"schema": schema, "db_rows": rows, "db_load_s": round(load_s, 3), "db_bytes": os.path.getsize(db_path), "results": []}
        print("  %s schema: %d rows in %.1f s (%s)" % (schema, rows, load_s, db_path), flush=True)
        # The plain search gets most of the time cap; the (much cheaper) rack search what is left.
        started = time.perf_counter()
        for name, rack, n, share in (
            ("_matching_hosts: 1-4 hosts", False, args.iterations, 0.8 if args.rack_iterations > 0 else 1.0),
            ("_matching_hosts: 2 hosts, rack filter", True, args.rack_iterations, 1.0),
        ):
            if n <= 0:
                continue
            cap = max(0.0, args.time_cap * share - (time.perf_counter() - started))
            samples, accepted, mismatches, estimated = time_search(
                plugin, requests, state, rack, n, cap, args.max_request_s, args.sample_hosts)
            row = {
                "name": name, "schema": schema, "requested": n, "samples": len(samples),
                "median_ms": percentile(samples, 0.5), "p99_ms": percentile(samples, 0.99),
                "mean_ms": statistics.fmean(samples) if samples else 0.0,
                "estimated": estimated, "capped": len(samples) < n,
                "accepted": None if estimated else accepted, "mismatches_vs_berth": None if estimated else mismatches,
            }
            if samples and (row["capped"] or estimated):
                row["projected_full_run_s"] = row["mean_ms"] * n / 1000.0
            out["results"].append(row)
            notes = []
            if estimated:
                notes.append("ESTIMATED from sampled hosts (up to %d per request)" % args.sample_hosts)
            else:
                notes.append("accepted %d, mismatches vs Berth %d" % (accepted, mismatches))
            if row.get("projected_full_run_s"):
                notes.append("all %d requests would take ~%.0f s" % (n, row["projected_full_run_s"]))
            print("    %-40s %4d/%-4d median %10.1f ms  p99 %10.1f ms  %s" % (
                name, len(samples), n, row["median_ms"], row["p99_ms"], "; ".join(notes)), flush=True)
        return out
    finally:
        from blazar.db.sqlalchemy import facade_wrapper

        facade_wrapper._clear_engine()
        shutil.rmtree(workdir, ignore_errors=True)


def dump(hosts: int, leases: int, n: int) -> int:
    """The replay's output in verify_port.swift's format, for verify_port.sh to diff."""
    state, population = generate_population(hosts, leases)
    names = lambda hs: ",".join(host_name(h) for h in sorted(hs)) if hs else "-"  # noqa: E731
    out = ["L %d %d %s" % (s, e, names(c)) for s, e, c in population]
    out += ["R %s %s" % (names(state.choose(s, e, c)), names(state.choose(s, e, 2, r))) for s, e, c, r in generate_requests(n)]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--leases", type=int, default=5000)
    p.add_argument("--iterations", type=int, default=20, help="requests timed (1-4 hosts), first N of seed 7")
    p.add_argument("--rack-iterations", type=int, default=0, help="rack-filtered requests timed (2 hosts)")
    p.add_argument("--schema", choices=["indexed", "shipped", "both"], default="both")
    p.add_argument("--time-cap", type=float, default=240.0,
                   help="seconds of searching per schema (80%% for the plain requests, the rest for the rack ones); past it, stop")
    p.add_argument("--max-request-s", type=float, default=60.0,
                   help="a search projected to take longer is estimated (sampled hosts) instead of run whole")
    p.add_argument("--sample-hosts", type=int, default=100, help="hosts timed per estimated search")
    p.add_argument("--check-requests", type=int, default=2000,
                   help="requests replayed with Berth's placement to report berth-bench's accept rate (cross-check)")
    p.add_argument("--tmpdir", default="/dev/shm" if os.path.isdir("/dev/shm") else None)
    p.add_argument("--output", default=None)
    p.add_argument("--dump", type=int, metavar="N", default=None,
                   help="print the population and Berth's answers to the first N requests, then exit (verify_port.sh)")
    args = p.parse_args(argv)
    if args.dump is not None:
        return dump(args.hosts, args.leases, args.dump)

    import blazar
    from importlib import metadata

    print("blazar %s (%s), SQLAlchemy %s, oslo.db %s, Python %s" % (
        metadata.version("blazar"), os.path.dirname(blazar.__file__), metadata.version("SQLAlchemy"),
        metadata.version("oslo.db"), sys.version.split()[0]), flush=True)
    t0 = time.perf_counter()
    state, population = generate_population(args.hosts, args.leases)
    allocations = sum(len(c) for _, _, c in population)
    gen_s = time.perf_counter() - t0
    print("population: %d hosts, %d leases, %d allocations (generated in %.2f s)" % (args.hosts, args.leases, allocations, gen_s), flush=True)
    n_req = max(args.iterations, args.rack_iterations, args.check_requests)
    requests = generate_requests(n_req)
    check = requests[: args.check_requests]
    accept_rate = sum(state.choose(s, e, c) is not None for s, e, c, _ in check) / max(1, len(check))
    result = {
        "hosts": args.hosts, "leases": args.leases, "allocations": allocations,
        "berth_replay_accept_rate": accept_rate, "berth_replay_requests": len(check),
        "blazar_version": metadata.version("blazar"), "python": sys.version.split()[0],
        "sqlalchemy": metadata.version("SQLAlchemy"), "oslo_db": metadata.version("oslo.db"),
        "database": "sqlite on %s" % (args.tmpdir or tempfile.gettempdir()), "schemas": [],
    }
    for schema in (["indexed", "shipped"] if args.schema == "both" else [args.schema]):
        result["schemas"].append(run_schema(args, schema, state, population, requests))

    rows = [r for s in result["schemas"] for r in s["results"]]
    print("")
    print("%-40s %-8s %8s %12s %12s" % ("Blazar %s, %d hosts / %d leases" % (result["blazar_version"], args.hosts, args.leases),
                                          "schema", "samples", "median ms", "p99 ms"))
    for r in rows:
        print("%-40s %-8s %8d %12.1f %12.1f%s" % (r["name"], r["schema"], r["samples"], r["median_ms"], r["p99_ms"],
                                                  "  (estimated)" if r["estimated"] else ""))
    if args.output:
        with open(args.output, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        print("\nwrote %s" % args.output)
    return 1 if any(r["mismatches_vs_berth"] for r in rows) else 0  # a wrong population is no comparison


if __name__ == "__main__":
    sys.exit(main())
