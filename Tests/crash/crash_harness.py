#!/usr/bin/env python3
"""Crash harness: concurrent clients against the real berthd, SIGKILL at random
moments, restart, and check that every promise about durability and consistency still holds.

Each round:
  1. start berthd (`--clock manual`, `enforce_credits: true`) on the same state directory;
  2. run `--clients` threads, each with its own connection, doing a seeded random mix of
     lease.create / lease.update / lease.delete / lease.get, preemptible.create / delete,
     credits.grant, clock.advance and host.update (down/up: healing), recording every request it
     sent and every reply it got;
  3. SIGKILL berthd after a delay drawn from the seeded RNG (the fault injection: the only
     sleeps in the harness decide *when* a crash happens, never whether a check passes);
  4. restart berthd on the same state (sometimes killing it once more during start-up), retry the
     creates cut off by the kill with their idempotency_key, and check (see `check()`):
     - every acknowledged write is there: acked creates exist with the acked content (unless an
       acked delete followed: then status `deleted`), acked preemptible deletes are `ended`, acked
       grants are in the ledger, the clock is at least the latest acked clock.advance;
     - nothing is half-applied: every lease has all the allocations its request asked for, a
       lease.created event and vice versa, charges minus refunds equal its cost; a lease nobody got
       a reply for must come from a request that was in flight at the kill;
     - no double booking in calendar.get over the whole horizon: whole hosts overlap nothing,
       GPU slices never share a slot of one GPU at one time, instance slots and preemptibles stay
       within a host's vcpus, memory and disk;
     - the ledger sums to credits.balance per project and class, `available` never below zero;
     - events are gap-free and no lease started or ended twice; every lease.started /
       lease.ended (and deleted-after-start) has its lease.start / lease.end action, every
       preemptible its preemptible.start action, all in a valid status;
       at the end the outbox drains (every action done or failed, none lost).

Usage: crash_harness.py [--rounds 10] [--seed 1] [--clients 16] [--report out.json]
Environment: BERTHD (default <repo>/.build/debug/berthd). Exit status 0 when no findings.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))

from berthtest import DEFAULT_NOW, Berthd, ConnectionClosed, RPCClient, RPCError, fmt_ts, parse_ts  # noqa: E402

PROJECTS = ["p0", "p1", "p2", "p3"]
CLASSES = ["host_hours", "gpu_slice_hours", "vcpu_hours"]
COMPUTE = {"vcpus": 32, "memory_mb": 131072, "disk_gb": 1000}
GPU_HOST = {"vcpus": 64, "memory_mb": 524288, "disk_gb": 2000}
#: Error codes a well-behaved daemon may answer these requests with under contention.
EXPECTED_CODES = {-32001, -32002, -32003, -32005}
EPS = 1e-6


def inventory() -> list[dict]:
    hosts = [{"name": f"c{i:02d}", **COMPUTE, "properties": {"rack": "r1" if i <= 3 else "r2"}} for i in range(1, 7)]
    hosts += [{"name": f"g{i:02d}", **GPU_HOST, "gpus": [{"model": "A100-40GB"}] * 4, "properties": {"rack": "r3"}}
              for i in range(1, 3)]
    return hosts


HOST_NAMES = [h["name"] for h in inventory()]


def add(t: str, seconds: float) -> str:
    return fmt_ts(parse_ts(t) + dt.timedelta(seconds=seconds))


class Model:
    """What the clients were told (acked) and what they asked without hearing back (in flight)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: dict[str, dict] = {}          # lease name -> lease.create params (every one sent)
        self.leases: dict[str, dict] = {}            # id -> {"owner", "acked", "deleted", "uncertain"}
        self.preemptibles: dict[str, dict] = {}      # id -> {"owner", "deleted", "uncertain", "params"}
        self.grants: list[dict] = []                 # acked ledger entries
        self.inflight_creates: dict[str, dict] = {}  # lease name -> params of a create cut off by a kill
        # host.update to down was sent this many times (acked or not): healing may have moved any
        # lease acked before, so its allocations are compared only if none was sent since its ack.
        self.heal_epoch = 0
        self.host_state: dict[str, str] = {}          # host -> last acked state
        self.clock = DEFAULT_NOW                     # latest acked clock value
        self.stats = collections.Counter()
        self.errors = collections.Counter()
        self.findings: list[str] = []

    def note_clock(self, now: str):
        with self.lock:
            if parse_ts(now) > parse_ts(self.clock):
                self.clock = now


class Client(threading.Thread):
    def __init__(self, model: Model, socket_path: str, cid: int, rnd: int, seed: int, max_ops: int):
        super().__init__(daemon=True, name=f"client-{cid}")
        self.m, self.path, self.cid, self.rnd, self.max_ops = model, socket_path, cid, rnd, max_ops
        self.rng = random.Random(f"{seed}/{rnd}/{cid}")
        self.n = 0

    def mine(self, table: dict) -> list[str]:
        with self.m.lock:
            return [i for i, x in table.items() if x["owner"] == self.cid and not x["deleted"]
                    and not x["uncertain"]]

    def run(self):
        try:
            c = RPCClient(self.path, validate=False, timeout=120)
        except OSError:
            return
        try:
            for _ in range(self.max_ops):
                self.step(c)
        except (ConnectionClosed, ConnectionError, OSError, TimeoutError, json.JSONDecodeError):
            pass  # the daemon was killed under us: whatever was in flight is unknown
        finally:
            c.close()

    def call(self, c: RPCClient, method: str, params: dict, on_unknown=None):
        """(result, None) or (None, RPCError); marks the op unknown when the connection dies."""
        self.m.stats["sent"] += 1
        try:
            r = c.call(method, params)
        except RPCError as e:
            self.m.stats["errors"] += 1
            self.m.errors[f"{method} {e.code} {e.reason}"] += 1
            # A start or end that a concurrent clock.advance has just put in the past is refused (-32602).
            racing_clock = e.code == -32602 and ("in the past" in (e.message or "") or "must be in the future" in (e.message or ""))
            if e.code not in EXPECTED_CODES and not racing_clock:
                with self.m.lock:
                    self.m.findings.append(f"round {self.rnd}: {method} {json.dumps(params)[:300]} -> "
                                           f"unexpected error {e.code}: {e.message}")
            return None, e
        except BaseException:
            self.m.stats["unknown"] += 1
            if on_unknown:
                on_unknown()
            raise
        self.m.stats["acked"] += 1
        return r, None

    def step(self, c: RPCClient):
        rng, m = self.rng, self.m
        self.n += 1
        op = rng.choices(["create", "update", "delete", "get", "pcreate", "pdelete", "grant", "advance", "host"],
                         [34, 18, 10, 6, 10, 6, 10, 6, 2])[0]
        with m.lock:
            now = m.clock
        if op == "create":
            name = f"c{self.cid}-r{self.rnd}-o{self.n}"
            kind = rng.choice(["host", "host", "gpu", "gpu", "instance"])
            if kind == "host":
                res = {"kind": "host", "count": rng.randint(1, 2)}
            elif kind == "gpu":
                res = {"kind": "gpu", "profile": rng.choice(["1g.5gb", "2g.10gb", "3g.20gb", "7g.40gb"]),
                       "count": rng.randint(1, 3)}
            else:
                res = {"kind": "instance", "vcpus": rng.choice([2, 4, 8]), "memory_mb": rng.choice([4096, 16384]),
                       "disk_gb": rng.choice([20, 100]), "count": rng.randint(1, 4)}
            start = add(now, rng.randint(1, 96) * 900 + 3600)
            params = {"name": name, "project_id": rng.choice(PROJECTS), "start": start,
                      "end": add(start, rng.randint(1, 16) * 1800), "reservations": [res]}
            if rng.random() < 0.3:
                params["before_end_s"] = 600
            # Every create carries a key, so one whose reply the kill swallowed can be retried.
            params["idempotency_key"] = f"key-{name}"
            with m.lock:
                m.requests[name] = params

            def unknown_create():
                with m.lock:
                    m.inflight_creates[name] = params
            with m.lock:
                epoch = m.heal_epoch
            r, _ = self.call(c, "lease.create", params, unknown_create)
            if r is not None:
                with m.lock:
                    m.leases[r["id"]] = {"owner": self.cid, "acked": r, "deleted": False, "uncertain": False,
                                         "epoch": epoch}
                m.stats["acked_creates"] += 1
        elif op in ("update", "delete", "get"):
            ids = self.mine(m.leases)
            if not ids:
                return
            lid = rng.choice(ids)
            rec = m.leases[lid]

            def unknown():
                with m.lock:
                    rec["uncertain"] = True
            if op == "get":
                r, _ = self.call(c, "lease.get", {"id": lid})
                return
            if op == "update":
                acked = rec["acked"]
                params = {"id": lid, "name": f"{acked['name'].split('~')[0]}~u{self.n}",
                          "end": add(acked["end"], rng.choice([-1800, 1800, 3600, 7200]))}
                if parse_ts(params["end"]) <= parse_ts(acked["start"]):
                    params["end"] = add(acked["start"], 1800)
                with m.lock:
                    epoch = m.heal_epoch
                r, _ = self.call(c, "lease.update", params, unknown)
                if r is not None:
                    with m.lock:
                        rec["acked"] = r
                        rec["epoch"] = epoch
                    m.stats["acked_updates"] += 1
            else:
                r, _ = self.call(c, "lease.delete", {"id": lid}, unknown)
                if r is not None:
                    with m.lock:
                        rec["deleted"] = True
                    m.stats["acked_deletes"] += 1
        elif op == "pcreate":
            params = {"project_id": rng.choice(PROJECTS), "vcpus": rng.choice([1, 2, 4, 8]),
                      "memory_mb": rng.choice([1024, 8192]), "disk_gb": rng.choice([10, 40]),
                      "min_lifetime_s": rng.choice([600, 3600])}
            r, _ = self.call(c, "preemptible.create", params)
            if r is not None:
                with m.lock:
                    m.preemptibles[r["id"]] = {"owner": self.cid, "deleted": False, "uncertain": False,
                                               "params": params, "acked": r}
                m.stats["acked_preemptible_creates"] += 1
        elif op == "pdelete":
            ids = self.mine(m.preemptibles)
            if not ids:
                return
            pid = rng.choice(ids)
            rec = m.preemptibles[pid]

            def unknown():
                with m.lock:
                    rec["uncertain"] = True
            r, _ = self.call(c, "preemptible.delete", {"id": pid}, unknown)
            if r is not None:
                with m.lock:
                    rec["deleted"] = True
                m.stats["acked_preemptible_deletes"] += 1
        elif op == "grant":
            params = {"project_id": rng.choice(PROJECTS), "resource_class": rng.choice(CLASSES),
                      "amount": rng.choice([5, 20, 50]), "note": f"c{self.cid}-r{self.rnd}-o{self.n}"}
            r, _ = self.call(c, "credits.grant", params)
            if r is not None:
                with m.lock:
                    m.grants.append(r)
                m.stats["acked_grants"] += 1
        elif op == "host":
            # A host fails or comes back: down heals the leases on it (moves them or marks them
            # degraded) and ends the preemptibles there; up makes it reservable again.
            name = rng.choice(HOST_NAMES)
            state = rng.choice(["down", "down", "up"]) if m.host_state.get(name, "up") == "up" else "up"
            if state == "down":
                with m.lock:
                    m.heal_epoch += 1
            r, _ = self.call(c, "host.update", {"name": name, "state": state})
            if r is not None:
                m.host_state[name] = state
                m.stats[f"acked_host_{state}"] += 1
        elif op == "advance":
            r, _ = self.call(c, "clock.advance", {"seconds": rng.randint(1, 8) * 450})
            if r is not None:
                m.note_clock(r["now"])
                m.stats["acked_advances"] += 1


# ------------------------------------------------------------------------------------------------
# Checks
# ------------------------------------------------------------------------------------------------

def pages(rpc: RPCClient, method: str, params: dict | None = None) -> list[dict]:
    out, cursor = [], None
    while True:
        p = dict(params or {}, limit=1000)
        if cursor is not None:
            p["cursor"] = cursor
        page = rpc.call(method, p)
        out += page["items"]
        cursor = page.get("next_cursor")
        if cursor is None:
            return out


def all_events(rpc: RPCClient) -> list[dict]:
    out, after = [], 0
    while True:
        page = rpc.call("events.list", {"after_seq": after, "limit": 1000})
        out += page["items"]
        if page["next_cursor"] is None:
            return out
        after = page["next_cursor"]


def content(lease: dict, healed: bool = False) -> dict:
    """The parts of a lease an acknowledged write fixes (status moves with the clock; after a host
    went down, healing may move allocations)."""
    return {"name": lease["name"], "project_id": lease["project_id"], "start": lease["start"], "end": lease["end"],
            "before_end_s": lease.get("before_end_s"), "cost": lease["cost"],
            "reservations": [(r["id"], r["kind"], None if healed else json.dumps(r["allocations"], sort_keys=True))
                             for r in lease["reservations"]]}


def whole(lease: dict, request: dict | None) -> str | None:
    """None when every reservation has every allocation its request asked for."""
    if request is not None and len(request["reservations"]) != len(lease["reservations"]):
        return f"{len(lease['reservations'])} reservations for a request of {len(request['reservations'])}"
    for r in lease["reservations"]:
        allocs = r["allocations"]
        n = sum(a.get("slots", 1) for a in allocs) if r["kind"] == "instance" else len(allocs)
        if n != r["count"]:
            return f"reservation {r['id']} ({r['kind']}) has {n} of {r['count']} allocations"
    return None


def overlaps(intervals: list[tuple]) -> list[tuple]:
    """Pairs of (start, end, tag) intervals that overlap in time (end None = open)."""
    far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    iv = sorted(((parse_ts(s), parse_ts(e) if e else far, tag) for s, e, tag in intervals), key=lambda x: x[0])
    bad = []
    for i, (s1, e1, t1) in enumerate(iv):
        for s2, e2, t2 in iv[i + 1:]:
            if s2 >= e1:
                break
            if s1 < e2 and s2 < e1:
                bad.append((t1, t2))
    return bad


def check(rpc: RPCClient, m: Model, rnd: int, horizon: str, hosts: dict, final: bool = False) -> dict:
    findings: list[str] = []
    counts = collections.Counter()

    def bad(msg):
        findings.append(f"round {rnd}: {msg}")

    now = rpc.call("clock.now")["now"]
    if parse_ts(now) < parse_ts(m.clock):
        bad(f"clock went back to {now}, an acked clock.advance had reached {m.clock}")
    m.clock = max(m.clock, now, key=parse_ts)
    leases = {x["id"]: x for x in pages(rpc, "lease.list")}
    evs = all_events(rpc)
    actions = pages(rpc, "actions.list")
    pre = {x["id"]: x for x in pages(rpc, "preemptible.list")}
    # The whole horizon, and at least 30 days past now (leases start at most ~25 h ahead).
    horizon = max(horizon, add(now, 30 * 86400), key=parse_ts)
    cal = rpc.call("calendar.get", {"from": DEFAULT_NOW, "to": horizon})

    # --- acknowledged writes -------------------------------------------------------------------
    for lid, rec in m.leases.items():
        counts["acked_leases_checked"] += 1
        got = leases.get(lid)
        if got is None:
            bad(f"acked lease {lid} ({rec['acked']['name']}) is gone")
            continue
        if rec["deleted"]:
            if got["status"] != "deleted":
                bad(f"acked delete of {lid} lost: status {got['status']}")
            continue
        if rec["uncertain"]:
            continue  # an update or delete was in flight at the kill: either outcome is allowed
        healed = rec.get("epoch", 0) < m.heal_epoch  # a host went down since: allocations may move
        if content(got, healed) != content(rec["acked"], healed):
            bad(f"lease {lid} differs from its last acked write:\n  acked {content(rec['acked'])}\n  got   {content(got)}")
        want = "pending" if parse_ts(now) < parse_ts(got["start"]) else (
            "active" if parse_ts(now) < parse_ts(got["end"]) else "ended")
        if got["status"] != want:
            bad(f"lease {lid} is {got['status']} at {now} (start {got['start']}, end {got['end']})")
    for lid, got in leases.items():
        if lid not in m.leases:
            if got["name"].split("~")[0] not in m.requests:
                bad(f"lease {lid} ({got['name']}) was never requested")
            counts["unacked_leases_found"] += 1
        req = m.requests.get(got["name"].split("~")[0])
        w = whole(got, req)
        if w:
            bad(f"lease {lid} half-applied: {w}")
    for pid, rec in m.preemptibles.items():
        counts["acked_preemptibles_checked"] += 1
        got = pre.get(pid)
        if got is None:
            bad(f"acked preemptible {pid} is gone")
        elif rec["deleted"] and got["status"] != "ended":
            bad(f"acked preemptible.delete of {pid} lost: status {got['status']}")
    for g in m.grants:
        counts["acked_grants_checked"] += 1

    # --- events ----------------------------------------------------------------------------------
    seqs = [e["seq"] for e in evs]
    if seqs != list(range(1, len(evs) + 1)):
        bad(f"event seqs are not gap-free 1..{len(evs)}")
    by = collections.defaultdict(collections.Counter)
    before_end = collections.Counter()
    for e in evs:
        if e["type"].startswith("lease."):
            by[e["type"]][e.get("lease_id")] += 1
        if e["type"] == "lease.updated" and "healed_from" in (e.get("data") or {}):
            counts["healed_moves"] += 1
        if e["type"] == "lease.updated" and "degraded_reason" in (e.get("data") or {}):
            counts["degraded_by_healing"] += 1
        if e["type"] == "lease.before_end":  # re-armed when an update moves the end: once per end
            before_end[(e.get("lease_id"), (e.get("data") or {}).get("end"))] += 1
    twice = [k for k, v in before_end.items() if v > 1]
    if twice:
        bad(f"lease.before_end fired more than once for the same end: {twice[:5]}")
    if set(by["lease.created"]) != set(leases):
        bad(f"lease.created events {len(by['lease.created'])} vs leases {len(leases)}: "
            f"missing {sorted(set(leases) - set(by['lease.created']))[:5]}, "
            f"extra {sorted(set(by['lease.created']) - set(leases))[:5]}")
    for t in ("lease.created", "lease.started", "lease.ended", "lease.deleted"):
        twice = [k for k, v in by[t].items() if v > 1]
        if twice:
            bad(f"{t} fired more than once for {twice[:5]}")
    if set(by["lease.deleted"]) != {i for i, x in leases.items() if x["status"] == "deleted"}:
        bad("lease.deleted events do not match deleted leases")
    for lid, x in leases.items():
        started = by["lease.started"][lid] > 0
        if x["status"] in ("active", "ended") and not started:
            bad(f"{x['status']} lease {lid} has no lease.started event")
        if x["status"] == "pending" and (started or by["lease.ended"][lid]):
            bad(f"pending lease {lid} has lease.started/ended events")
        if x["status"] == "ended" and not by["lease.ended"][lid]:
            bad(f"ended lease {lid} has no lease.ended event")
    pcreated = {e.get("preemptible_id") for e in evs if e["type"] == "preemptible.created"}
    if pcreated != set(pre):
        bad(f"preemptible.created events ({len(pcreated)}) do not match preemptibles ({len(pre)})")

    # --- actions (the outbox) --------------------------------------------------------------------
    akinds = collections.defaultdict(collections.Counter)
    for a in actions:
        counts["actions"] += 1
        if a["status"] not in ("pending", "running", "done", "failed"):
            bad(f"action {a['id']} has status {a['status']}")
        akinds[a.get("lease_id") or a["target"]][a["kind"]] += 1
    for lid, x in leases.items():
        if by["lease.started"][lid] and not akinds[lid]["lease.start"]:
            bad(f"lease {lid} started but has no lease.start action")
        if (by["lease.ended"][lid] or (x["status"] == "deleted" and by["lease.started"][lid])) \
                and not akinds[lid]["lease.end"]:
            bad(f"lease {lid} ended ({x['status']}) but has no lease.end action")
        if not by["lease.started"][lid] and (akinds[lid]["lease.start"] or akinds[lid]["lease.end"]):
            bad(f"lease {lid} never started but has start/end actions {dict(akinds[lid])}")
    for pid in pre:
        if not akinds[f"preemptible/{pid}"]["preemptible.start"]:
            bad(f"preemptible {pid} has no preemptible.start action")

    # --- no double booking -----------------------------------------------------------------------
    # From `now` on only: calendar.get shows each reservation's current allocation over the lease's
    # whole window, and an update may have moved an active lease (lease.updated hosts_added/removed),
    # so the part before now is not the history of where it ran.
    nowt = parse_ts(now)

    def clip(a):
        s, e = max(parse_ts(a["start"]), nowt), (parse_ts(a["end"]) if a["end"] else None)
        return None if (e is not None and e <= s) else (fmt_ts(s), fmt_ts(e) if e else None)
    res_of = {r["id"]: r for x in leases.values() for r in x["reservations"]}
    for h in cal["hosts"]:
        name = h["name"]
        allocs = [dict(a, start=c[0], end=c[1]) for a in h["allocations"] for c in [clip(a)] if c]
        counts["calendar_allocations"] += len(allocs)
        cap = hosts[name]
        whole_iv = [(a["start"], a["end"], f"{a['lease_id']}") for a in allocs if a["kind"] == "host"]
        for a in allocs:
            if a["kind"] == "host":
                continue
            tag = a.get("lease_id") or a.get("preemptible_id")
            for s, e, t in whole_iv:
                for pair in overlaps([(s, e, t), (a["start"], a["end"], tag)]):
                    bad(f"host {name}: whole-host lease {pair[0]} overlaps {a['kind']} {pair[1]}")
        for pair in overlaps(whole_iv):
            bad(f"host {name}: whole-host leases {pair[0]} and {pair[1]} overlap")
        gpu = collections.defaultdict(list)
        for a in allocs:
            if a["kind"] == "gpu":
                for s in range(a["slot"], a["slot"] + a["size"]):
                    gpu[(a["gpu"], s)].append((a["start"], a["end"], f"{a['lease_id']}/{a['reservation_id']}"))
        for (g, s), iv in gpu.items():
            for pair in overlaps(iv):
                bad(f"host {name} gpu {g} slot {s}: {pair[0]} overlaps {pair[1]}")
        # Instance slots and preemptibles: vcpus/memory/disk within the host at every boundary.
        usage = []
        for a in allocs:
            if a["kind"] == "instance":
                r = res_of.get(a["reservation_id"])
                if r is None:
                    bad(f"host {name}: instance allocation of unknown reservation {a['reservation_id']}")
                    continue
                usage.append((a["start"], a["end"], a["slots"], r))
            elif a["kind"] == "preemptible":
                p = pre.get(a["preemptible_id"])
                if p is None:
                    bad(f"host {name}: calendar shows unknown preemptible {a['preemptible_id']}")
                    continue
                usage.append((a["start"], a["end"], a.get("slots", 1), p))
        points = sorted({parse_ts(u[0]) for u in usage})
        for t in points:
            tot = collections.Counter()
            for s, e, n, r in usage:
                if parse_ts(s) <= t and (e is None or t < parse_ts(e)):
                    for k in ("vcpus", "memory_mb", "disk_gb"):
                        tot[k] += n * r[k]
            for k in ("vcpus", "memory_mb", "disk_gb"):
                if tot[k] > cap[k]:
                    bad(f"host {name} at {fmt_ts(t)}: {k} {tot[k]} > capacity {cap[k]}")
    # Every live lease allocation is in the calendar.
    cal_res = collections.Counter(a["reservation_id"] for h in cal["hosts"] for a in h["allocations"]
                                  if a.get("reservation_id"))
    for lid, x in leases.items():
        if x["status"] in ("pending", "active"):
            for r in x["reservations"]:
                if cal_res[r["id"]] != len(r["allocations"]):
                    bad(f"lease {lid} reservation {r['id']}: {len(r['allocations'])} allocations, "
                        f"calendar shows {cal_res[r['id']]}")

    # --- credits ---------------------------------------------------------------------------------
    ledger_ids = set()
    for p in PROJECTS:
        entries = pages(rpc, "credits.ledger", {"project_id": p})
        ledger_ids |= {e["id"] for e in entries}
        bal = rpc.call("credits.balance", {"project_id": p})
        sums = collections.defaultdict(lambda: collections.Counter())
        per_lease = collections.defaultdict(lambda: collections.Counter())
        for e in entries:
            s = sums[e["resource_class"]]
            s[e["kind"]] += e["amount"]
            if e.get("lease_id"):
                sign = {"charge": 1, "refund": -1}.get(e["kind"], 0)
                per_lease[e["lease_id"]][e["resource_class"]] += sign * e["amount"]
        for cls in set(sums) | set(bal):
            s, b = sums[cls], bal.get(cls)
            if b is None:
                bad(f"{p}: ledger has {cls} entries, balance has none")
                continue
            granted = s["grant"] + s["adjustment"]
            spent = s["charge"] - s["refund"]
            if abs(granted - b["granted"]) > EPS or abs(spent - b["spent"]) > EPS:
                bad(f"{p} {cls}: ledger granted {granted} spent {spent}, balance {b}")
            if abs(b["granted"] - b["spent"] - b["available"] - b["expired"]) > EPS:
                bad(f"{p} {cls}: granted - spent != available + expired: {b}")
            if b["available"] < -EPS:
                bad(f"{p} {cls}: available {b['available']} < 0 with enforcement on")
            counts["balances_checked"] += 1
        for lid, per in per_lease.items():
            x = leases.get(lid)
            if x is None:
                bad(f"{p}: ledger entries for lease {lid} that does not exist")
                continue
            for cls in set(per) | set(x["cost"]):
                if abs(per[cls] - x["cost"].get(cls, 0)) > EPS:
                    bad(f"lease {lid} {cls}: charges - refunds {per[cls]} != cost {x['cost'].get(cls, 0)}")
    for g in m.grants:
        if g["id"] not in ledger_ids:
            bad(f"acked grant {g['id']} missing from the ledger")

    if final:
        # Every action owed to the cloud is eventually delivered or visibly failed.
        deadline = time.monotonic() + 120
        while True:
            pending = [a for a in pages(rpc, "actions.list") if a["status"] in ("pending", "running")]
            if not pending:
                break
            if time.monotonic() > deadline:
                bad(f"{len(pending)} actions still pending after 120 s: {pending[:3]}")
                break
            time.sleep(0.2)
    counts["leases"] = len(leases)
    counts["events"] = len(evs)
    return {"findings": findings, "counts": dict(counts), "now": now}


# ------------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------------

def retry_inflight_creates(rpc: RPCClient, m: Model, rnd: int) -> list[str]:
    """After the restart, what a careful portal does with a create whose reply it never got: send
    it again with the same `idempotency_key`. If the first one was committed before the kill, the
    retry must return that very lease (the key's record is durable with it); if not, the retry
    creates it now (or is refused like any create). Either way exactly one lease has that name."""
    findings = []
    by_name: dict[str, list[dict]] = collections.defaultdict(list)
    for x in pages(rpc, "lease.list"):
        by_name[x["name"].split("~")[0]].append(x)
    for name, params in sorted(m.inflight_creates.items()):
        before = by_name.get(name, [])
        m.stats["retried_inflight_creates"] += 1
        try:
            r = rpc.call("lease.create", params)
        except RPCError as e:
            if before:
                findings.append(f"round {rnd}: retry of committed create {name} with its key failed: {e.code} {e.message}")
            elif e.code not in EXPECTED_CODES and e.code != -32602:
                findings.append(f"round {rnd}: retry of create {name} got unexpected error {e.code}: {e.message}")
            continue
        if before:
            m.stats["retries_answered_from_record"] += 1
            if [b["id"] for b in before] != [r["id"]]:
                findings.append(f"round {rnd}: retry of committed create {name} returned lease {r['id']}, "
                                f"but {[b['id'] for b in before]} exist(s)")
            elif content(r) != content(before[0]):
                findings.append(f"round {rnd}: retry of committed create {name} returned other content:\n"
                                f"  stored {content(before[0])}\n  replay {content(r)}")
        else:
            m.stats["retries_created"] += 1
        after = [x for x in pages(rpc, "lease.list", {"project_id": params["project_id"], "from": params["start"],
                                                      "to": params["end"]})
                 if x["name"].split("~")[0] == name]
        if len(after) != 1:
            findings.append(f"round {rnd}: after retrying create {name}, {len(after)} leases have that name")
        # From now on it is an acknowledged lease like any other (no client owns it).
        m.leases.setdefault(r["id"], {"owner": -1, "acked": r, "deleted": False, "uncertain": False})
    m.inflight_creates.clear()
    return findings


def run(rounds: int = 10, seed: int = 1, clients: int = 16, max_ops: int = 400, kill_min: float = 0.2,
        kill_max: float = 2.5, workdir: str | None = None, log=print) -> dict:
    rng = random.Random(seed)
    tmp = Path(workdir or tempfile.mkdtemp(prefix="berth-crash-"))
    tmp.mkdir(parents=True, exist_ok=True)
    d = Berthd(tmp)
    m = Model()
    hosts = {h["name"]: h for h in inventory()}
    horizon = add(DEFAULT_NOW, 120 * 86400)
    report = {"seed": seed, "rounds": rounds, "clients": clients, "max_ops_per_client": max_ops, "round_stats": [],
              "kills": 0, "findings": []}
    t0 = time.monotonic()
    config = {"enforce_credits": True}
    try:
        d.start(config=config)
        rpc = d.client()
        for h in hosts.values():
            rpc.call("host.create", h)
        for p in PROJECTS:
            for cls in CLASSES:
                m.grants.append(rpc.call("credits.grant", {"project_id": p, "resource_class": cls, "amount": 400}))
        for rnd in range(1, rounds + 1):
            before = dict(m.stats)
            threads = [Client(m, d.socket_path, i, rnd, seed, max_ops) for i in range(clients)]
            for t in threads:
                t.start()
            delay = rng.uniform(kill_min, kill_max)
            # Fault injection: SIGKILL after the seeded random delay (or earlier if every client is done).
            deadline = time.monotonic() + delay
            for t in threads:
                t.join(max(0.0, deadline - time.monotonic()))
            alive = sum(t.is_alive() for t in threads)
            d.kill()
            report["kills"] += 1
            for t in threads:
                t.join(60)
            stuck = [t.name for t in threads if t.is_alive()]
            if stuck:
                m.findings.append(f"round {rnd}: clients {stuck} still blocked 60 s after the kill")
            # Sometimes crash again while berthd is starting up: reading the state back, catching up
            # on lifecycle events missed while it was down (which writes), binding the socket.
            if rng.random() < 0.3:
                d.restart(now=None, wait_ready=False)
                time.sleep(rng.uniform(0.0, 0.5))  # fault injection: when the second kill happens
                d.kill()
                report["kills_during_startup"] = report.get("kills_during_startup", 0) + 1
            d.restart(now=None)
            for c in d.clients:
                c.close()
            d.clients.clear()
            rpc = d.client()
            m.findings += retry_inflight_creates(rpc, m, rnd)
            res = check(rpc, m, rnd, horizon, hosts, final=(rnd == rounds))
            m.findings += res["findings"]
            delta = {k: v - before.get(k, 0) for k, v in m.stats.items()}
            rs = {"round": rnd, "kill_after_s": round(delay, 3), "clients_busy_at_kill": alive, "ops": delta,
                  "checks": res["counts"], "findings": len(res["findings"]), "clock": res["now"]}
            report["round_stats"].append(rs)
            log(f"round {rnd}: kill after {delay:.2f}s ({alive} clients busy), sent {delta.get('sent', 0)}, "
                f"acked {delta.get('acked', 0)}, unknown {delta.get('unknown', 0)}, leases {res['counts'].get('leases')}, "
                f"findings {len(res['findings'])}")
            for f in res["findings"][:10]:
                log("  FINDING " + f)
    except BaseException:
        report["daemon_log_tail"] = d.all_logs()[-20000:]
        raise
    finally:
        report["elapsed_s"] = round(time.monotonic() - t0, 1)
        report["totals"] = dict(m.stats)
        report["errors"] = dict(m.errors)
        report["findings"] = m.findings
        report["acked_writes_verified_last_round"] = {
            "leases": len(m.leases), "preemptibles": len(m.preemptibles), "grants": len(m.grants)}
        d.cleanup()
        if workdir is None and not m.findings:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            report["workdir"] = str(tmp)
    return report


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--ops", type=int, default=400, help="max operations per client per round")
    ap.add_argument("--kill-min", type=float, default=0.2)
    ap.add_argument("--kill-max", type=float, default=2.5)
    ap.add_argument("--report", help="write the JSON report here")
    ap.add_argument("--workdir", help="keep the state directory and logs here")
    a = ap.parse_args(argv)
    rep = run(a.rounds, a.seed, a.clients, a.ops, a.kill_min, a.kill_max, a.workdir)
    if a.report:
        Path(a.report).write_text(json.dumps(rep, indent=2))
    t = rep["totals"]
    print(f"{rep['rounds']} rounds, {rep['kills']} kills (+{rep.get('kills_during_startup', 0)} during start-up), {t.get('sent', 0)} requests sent, {t.get('acked', 0)} acked "
          f"({t.get('acked_creates', 0)} creates, {t.get('acked_updates', 0)} updates, {t.get('acked_deletes', 0)} deletes, "
          f"{t.get('acked_preemptible_creates', 0)}+{t.get('acked_preemptible_deletes', 0)} preemptible, "
          f"{t.get('acked_grants', 0)} grants, {t.get('acked_advances', 0)} clock advances), "
          f"{t.get('unknown', 0)} in flight at a kill; {len(rep['findings'])} findings; {rep['elapsed_s']} s")
    return 1 if rep["findings"] else 0


if __name__ == "__main__":
    sys.exit(main())
