#!/usr/bin/env python3
"""Berth vs OpenStack Blazar, the same candidate search on the same population.

    python3 benchmarks/peers/blazar/compare.py            # what `make bench-peer` runs

For each scale it runs, one after the other on this machine:
  - `berth-bench --allocator-only --hosts H --leases L --iterations N --output ...` (release build;
    its rows "allocator: place 1-4 hosts" and "allocator: place 2 hosts, rack filter");
  - bench_blazar.py in the Blazar venv (setup.sh): Blazar 18.0.0's
    PhysicalHostPlugin._matching_hosts on the same population, for the first requests of the same
    sequence (seed 7);
then checks that both saw the same population (allocation count, and the accept rate of Berth's
placement replayed by bench_blazar.py over the same N requests), and prints medians, p99s and
Blazar/Berth ratios. The ratio uses the faster of Blazar's two schemas (see README.md).

Needs python3 >= 3.11 and the release berth-bench (`swift build -c release --product berth-bench`).
Writes a JSON summary (--output, default benchmarks/peers/blazar/results.json, git-ignored).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", "..", ".."))

# The issue's numbers for Blazar's median, measured before this script existed (hosts, leases) -> s.
ISSUE_REFERENCE_S = {(100, 1000): 1.4, (1000, 5000): 21.8}

ROWS = (
    # (label, berth-bench row, bench_blazar row)
    ("1-4 hosts", "allocator: place 1-4 hosts", "_matching_hosts: 1-4 hosts"),
    ("2 hosts, rack filter", "allocator: place 2 hosts, rack filter", "_matching_hosts: 2 hosts, rack filter"),
)


def parse_scale(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)[/x:](\d+)", text.replace(",", "").replace("_", ""))
    if not m:
        raise argparse.ArgumentTypeError("a scale is HOSTS/LEASES, e.g. 1000/5000")
    return int(m.group(1)), int(m.group(2))


def fmt_us(us: float) -> str:
    if us >= 1e6:
        return "%.2f s" % (us / 1e6)
    if us >= 1e3:
        return "%.1f ms" % (us / 1e3)
    return "%.0f µs" % us if us >= 100 else "%.1f µs" % us


def fmt_ratio(r: float) -> str:
    return "{:,.0f}×".format(r) if r >= 10 else "%.1f×" % r


def run(cmd: list[str], log, timeout: float | None = None) -> tuple[int, str]:
    """Runs a command, echoing its output to `log` (stderr) and returning (status, output)."""
    print("$ " + " ".join(cmd), file=log, flush=True)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    out = []
    for line in p.stdout:
        out.append(line)
        print("  | " + line.rstrip("\n"), file=log, flush=True)
    return p.wait(timeout=timeout), "".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scales", nargs="+", type=parse_scale, default=[(100, 1000), (1000, 5000)],
                   help="HOSTS/LEASES pairs (default 100/1000 1000/5000; add 10000/100000 for the large, estimated one)")
    p.add_argument("--large", action="store_true", help="also 10000/100000 (Blazar estimated from sampled hosts)")
    p.add_argument("--berth-iterations", type=int, default=2000, help="requests berth-bench times per scale")
    p.add_argument("--blazar-iterations", type=int, default=20, help="requests Blazar is timed on per scale and schema")
    p.add_argument("--blazar-rack-iterations", type=int, default=20, help="rack-filtered requests for Blazar")
    p.add_argument("--blazar-time-cap", type=float, default=240.0,
                   help="seconds of Blazar searching per scale and schema; past it the row keeps the requests done")
    p.add_argument("--schema", choices=["indexed", "shipped", "both"], default="both")
    p.add_argument("--berth-bench", default=os.path.join(REPO, ".build", "release", "berth-bench"))
    p.add_argument("--no-setup", action="store_true", help="do not run setup.sh (the venv must exist)")
    p.add_argument("--output", default=os.path.join(HERE, "results.json"))
    args = p.parse_args(argv)
    scales = list(dict.fromkeys(args.scales + ([(10000, 100000)] if args.large else [])))
    log = sys.stderr
    started = time.perf_counter()

    if not os.access(args.berth_bench, os.X_OK):
        print("compare.py: %s not found; build it with `swift build -c release --product berth-bench`" % args.berth_bench, file=sys.stderr)
        return 2
    if not args.no_setup:
        status, _ = run(["bash", os.path.join(HERE, "setup.sh")], log)
        if status != 0:
            print("compare.py: setup.sh failed", file=sys.stderr)
            return 2
    venv_python = os.path.join(os.environ.get("BERTH_BLAZAR_VENV", os.path.join(HERE, ".venv")), "bin", "python")

    summary = {"scales": [], "machine": {"cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()}}
    problems = []
    with tempfile.TemporaryDirectory(prefix="berth-peer-") as tmp:
        for hosts, leases in scales:
            print("\n== %d hosts / %d leases" % (hosts, leases), file=log, flush=True)
            berth_json = os.path.join(tmp, "berth-%d-%d.json" % (hosts, leases))
            t0 = time.perf_counter()
            status, out = run([args.berth_bench, "--allocator-only", "--hosts", str(hosts), "--leases", str(leases),
                               "--iterations", str(args.berth_iterations), "--output", berth_json], log)
            berth_s = time.perf_counter() - t0
            if status != 0 or not os.path.exists(berth_json):
                problems.append("berth-bench failed at %d/%d" % (hosts, leases))
                continue
            with open(berth_json) as f:
                berth = json.load(f)
            m = re.search(r"population: \d+ hosts, \d+ leases, (\d+) allocations", out)
            berth_allocations = int(m.group(1)) if m else None

            blazar_json = os.path.join(tmp, "blazar-%d-%d.json" % (hosts, leases))
            large = hosts * leases > 10_000_000
            t0 = time.perf_counter()
            status, _ = run([venv_python, os.path.join(HERE, "bench_blazar.py"), "--hosts", str(hosts), "--leases", str(leases),
                             "--iterations", str(3 if large else args.blazar_iterations),
                             "--rack-iterations", str(3 if large else args.blazar_rack_iterations),
                             "--time-cap", str(args.blazar_time_cap), "--schema", args.schema,
                             "--check-requests", str(args.berth_iterations), "--output", blazar_json], log)
            blazar_s = time.perf_counter() - t0
            if not os.path.exists(blazar_json):
                problems.append("bench_blazar.py failed at %d/%d" % (hosts, leases))
                continue
            with open(blazar_json) as f:
                blazar = json.load(f)
            summary["blazar_version"] = blazar["blazar_version"]
            if status != 0:
                problems.append("Blazar's answers differ from Berth's at %d/%d (see the log above)" % (hosts, leases))

            checks = {
                "same_allocations": berth_allocations == blazar["allocations"],
                "same_accept_rate": abs(berth.get("allocator_accept_rate", -1) - blazar["berth_replay_accept_rate"]) < 1e-9,
            }
            if not all(checks.values()):
                problems.append("population mismatch at %d/%d: berth-bench %s allocations, accept rate %s; "
                                "bench_blazar.py %s, %s" % (hosts, leases, berth_allocations, berth.get("allocator_accept_rate"),
                                                             blazar["allocations"], blazar["berth_replay_accept_rate"]))
            scale = {"hosts": hosts, "leases": leases, "allocations": blazar["allocations"], "checks": checks,
                     "berth_bench_s": round(berth_s, 1), "bench_blazar_s": round(blazar_s, 1), "rows": []}
            berth_rows = {r["name"]: r for r in berth["results"]}
            for label, berth_name, blazar_name in ROWS:
                b = berth_rows.get(berth_name)
                if b is None:
                    continue
                row = {"request": label, "berth_median_us": b["median_us"], "berth_p99_us": b["p99_us"], "berth_samples": b["samples"]}
                for s in blazar["schemas"]:
                    r = next((r for r in s["results"] if r["name"] == blazar_name), None)
                    if r and r["samples"]:
                        row["blazar_" + s["schema"]] = {k: r[k] for k in ("median_ms", "p99_ms", "samples", "estimated", "capped")}
                medians = [(v["median_ms"], k[len("blazar_"):]) for k, v in row.items() if k.startswith("blazar_")]
                if medians:
                    best_ms, best_schema = min(medians)
                    row["ratio_schema"] = best_schema
                    row["ratio"] = best_ms * 1000.0 / b["median_us"]
                scale["rows"].append(row)
            summary["scales"].append(scale)

    summary["total_s"] = round(time.perf_counter() - started, 1)
    summary["machine"]["loadavg_at_end"] = os.getloadavg()

    # The table.
    print("")
    print("Berth vs Blazar %s: host-candidate search, median (p99), same population and requests" % summary.get("blazar_version", "?"))
    head = "%-16s %-22s %-20s %-24s %-24s %s" % ("hosts/leases", "request", "Berth", "Blazar, FK indexes", "Blazar, as shipped", "Blazar/Berth")
    print(head)
    print("-" * len(head))
    for sc in summary["scales"]:
        for row in sc["rows"]:
            def cell(key):
                v = row.get(key)
                if not v:
                    return "-"
                text = "%s (%s)" % (fmt_us(v["median_ms"] * 1000), fmt_us(v["p99_ms"] * 1000))
                return text + (" est." if v["estimated"] else " n=%d" % v["samples"])
            ratio = ("%s (%s)" % (fmt_ratio(row["ratio"]), "indexed" if row["ratio_schema"] == "indexed" else "shipped")) if "ratio" in row else "-"
            print("%-16s %-22s %-20s %-24s %-24s %s" % (
                "{:,}/{:,}".format(sc["hosts"], sc["leases"]), row["request"],
                "%s (%s)" % (fmt_us(row["berth_median_us"]), fmt_us(row["berth_p99_us"])),
                cell("blazar_indexed"), cell("blazar_shipped"), ratio))
    print("")
    for sc in summary["scales"]:
        ref = ISSUE_REFERENCE_S.get((sc["hosts"], sc["leases"]))
        row = next((r for r in sc["rows"] if r["request"] == "1-4 hosts"), None)
        shipped = row and row.get("blazar_shipped")
        if ref and shipped:
            mine = shipped["median_ms"] / 1000.0
            print("the first recorded run measured Blazar at %.1f s median for %s/%s; this run, same schema (as shipped): %.2f s (%+.0f %%)" % (
                ref, "{:,}".format(sc["hosts"]), "{:,}".format(sc["leases"]), mine, 100.0 * (mine - ref) / ref))
    print("Berth: berth-bench %d requests per scale; Blazar: the first of the same requests (n per cell; est. = estimated"
          " from sampled hosts). Blazar runs in process on SQLite in /dev/shm with no Nova, network or API, so the ratio"
          " is a lower bound." % args.berth_iterations)
    print("load average at start %.1f, at end %.1f (2 cores: other work on the machine inflates both sides)." % (
        summary["machine"]["loadavg_at_start"][0], summary["machine"]["loadavg_at_end"][0]))
    print("total %.0f s" % summary["total_s"])
    with open(args.output, "w") as f:
        json.dump(summary, f, indent=2)
        f.write("\n")
    print("wrote %s" % os.path.relpath(args.output, os.getcwd()))
    for problem in problems:
        print("PROBLEM: " + problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
