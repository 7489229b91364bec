"""GPU slices (`kind: "gpu"`, MIG instances) over the socket: geometry (allowed starts, sizes, `+me`),
packing, bad input, whole hosts against slices, dry runs, updates, availability, the calendar,
lifecycle events and actions, and crash recovery.

The allowed starts and sizes come from the project's model table (data/gpu-models.json), never
from this file, so the tests check the daemon against the data it ships with.
"""

from __future__ import annotations

import json
import random
import signal

import pytest

from berthtest import REPO, RPCError, create_lease, events, lease_params, make_host, refused, ts, wait_until

MODELS = json.loads((REPO / "data" / "gpu-models.json").read_text())["models"]


def profile(model: str, name: str) -> dict:
    return next(p for p in MODELS[model]["profiles"] if p["name"] == name)


def gpu(profile_name: str, count: int = 1, **extra) -> dict:
    return {"kind": "gpu", "profile": profile_name, "count": count, **extra}


def a100_host(rpc, name: str, n: int = 1, **extra) -> dict:
    return make_host(rpc, name, gpus=[{"model": "A100-40GB"} for _ in range(n)], **extra)


def slices(lease: dict) -> list[dict]:
    return [a for r in lease["reservations"] for a in r["allocations"]]


def slots(lease: dict) -> list[int]:
    return [a["slot"] for a in slices(lease)]


def gpu_lease(rpc, start, end, profile_name="1g.5gb", count=1, **lease_fields) -> dict:
    return create_lease(rpc, start, end, reservations=[gpu(profile_name, count)], **lease_fields)


def gpu_calendar(rpc, frm: str = ts(0), to: str = ts(0, days=30), hosts: list[str] | None = None) -> list[dict]:
    """Every GPU-slice entry of calendar.get, each with its host name added."""
    params = {"from": frm, "to": to}
    if hosts is not None:
        params["hosts"] = hosts
    out = []
    for h in rpc.call("calendar.get", params)["hosts"]:
        for a in h["allocations"]:
            if a["kind"] == "gpu":
                out.append({**a, "host": h["name"]})
    return out


def overlaps(a: dict, b: dict) -> bool:
    return a["start"] < b["end"] and b["start"] < a["end"]  # RFC 3339 UTC strings sort as times


def check_gpu_invariants(rpc) -> list[dict]:
    """What every GPU placement must satisfy, checked on the live calendar and leases:
    each slice starts at an allowed slot of its profile on its GPU's model and spans the profile's
    size; slices on one GPU that coexist in time never share a memory slice; at most one `+me` per
    GPU at any instant; every allocation of every live lease is in the calendar and vice versa."""
    models = {h["name"]: [g["model"] for g in h["gpus"]] for h in rpc.call("host.list")["items"]}
    entries = gpu_calendar(rpc)
    for e in entries:
        model = models[e["host"]][e["gpu"]]
        p = profile(model, e["profile"])
        assert e["slot"] in p["starts"], f"{e['profile']} at slot {e['slot']} on {model}: allowed {p['starts']}"
        assert e["size"] == p["size"], e
    for i, a in enumerate(entries):
        for b in entries[i + 1:]:
            if (a["host"], a["gpu"]) != (b["host"], b["gpu"]) or not overlaps(a, b):
                continue
            ra = set(range(a["slot"], a["slot"] + a["size"]))
            rb = set(range(b["slot"], b["slot"] + b["size"]))
            assert not ra & rb, f"overlapping slices on {a['host']} gpu {a['gpu']}: {a} and {b}"
            assert not (a["profile"].endswith("+me") and b["profile"].endswith("+me")), f"two +me: {a} {b}"
    live = [l for l in rpc.call("lease.list", {"limit": 1000})["items"] if l["status"] in ("pending", "active")]
    from_leases = sorted((l["id"], a["host"], a["gpu"], a["slot"], a["profile"])
                         for l in live for r in l["reservations"] if r["kind"] == "gpu" for a in r["allocations"])
    from_calendar = sorted((e["lease_id"], e["host"], e["gpu"], e["slot"], e["profile"]) for e in entries
                           if e["status"] in ("pending", "active"))
    assert from_leases == from_calendar
    return entries


# --- geometry -------------------------------------------------------------------------------------

def test_seven_1g5gb_fit_on_one_a100_and_an_eighth_does_not(rpc):
    a100_host(rpc, "g1")
    leases = [gpu_lease(rpc, ts(1), ts(2), name=f"s{i}") for i in range(7)]
    for lease in leases:
        (a,) = slices(lease)
        assert set(a) == {"host", "gpu", "profile", "slot"}
        assert (a["host"], a["gpu"], a["profile"]) == ("g1", 0, "1g.5gb")
    assert sorted(s for l in leases for s in slots(l)) == profile("A100-40GB", "1g.5gb")["starts"] == list(range(7))
    # The eighth: the GPU is full in that window (slice 7 is not a 1g start), free again at 02:00.
    e = refused(rpc, ts(1), ts(2), [gpu("1g.5gb")])
    assert e.data["earliest_start"] == ts(2)
    assert "1g.5gb" in e.message
    # Eight at once can never fit one A100: no later start helps.
    e = refused(rpc, ts(5), ts(6), [gpu("1g.5gb", 8)])
    assert "earliest_start" not in e.data
    assert "7" in e.message and "1g.5gb" in e.message
    assert len(create_lease(rpc, ts(5), ts(6), reservations=[gpu("1g.5gb", 7)])["reservations"][0]["allocations"]) == 7
    check_gpu_invariants(rpc)


def fill_then_keep(rpc, hour: int, keep: set[int]) -> dict[int, dict]:
    """Seven 1g.5gb leases in [hour, hour+1) fill an A100; those not at a slot in `keep` are deleted.
    Returns the surviving leases by slot."""
    by_slot = {}
    for i in range(7):
        lease = gpu_lease(rpc, ts(hour), ts(hour + 1), name=f"h{hour}-{i}")
        (s,) = slots(lease)
        by_slot[s] = lease
    assert sorted(by_slot) == list(range(7))
    for s, lease in list(by_slot.items()):
        if s not in keep:
            rpc.call("lease.delete", {"id": lease["id"]})
            del by_slot[s]
    used = sorted(e["slot"] for e in gpu_calendar(rpc, ts(hour), ts(hour + 1)) if e["status"] == "pending")
    assert used == sorted(keep)
    return by_slot


def test_3g20gb_is_refused_when_slots_1_and_5_are_taken(rpc):
    a100_host(rpc, "g1")
    kept = fill_then_keep(rpc, 1, {1, 5})
    # Six memory slices are free (0, 2, 3, 4, 6, 7) but no aligned block of four: no 3g.20gb.
    e = refused(rpc, ts(1), ts(2), [gpu("3g.20gb")])
    assert e.data["earliest_start"] == ts(2)
    # Five 1g.5gb starts remain (0, 2, 3, 4, 6), not six: slice 7 is no 1g start.
    dry = rpc.call("lease.create", lease_params(ts(1), ts(2), reservations=[gpu("1g.5gb", 5)], dry_run=True))
    assert sorted(slots(dry)) == [0, 2, 3, 4, 6]
    refused(rpc, ts(1), ts(2), [gpu("1g.5gb", 6)])
    # A 2g.10gb still fits (slices 2-3), as does a 1g.10gb at 2 or 6.
    assert slots(rpc.call("lease.create", lease_params(ts(1), ts(2), reservations=[gpu("2g.10gb")], dry_run=True))) == [2]
    # Free slot 5: the block 4-7 is whole again and the 3g.20gb goes there.
    rpc.call("lease.delete", {"id": kept[5]["id"]})
    assert slots(create_lease(rpc, ts(1), ts(2), reservations=[gpu("3g.20gb")])) == [4]
    check_gpu_invariants(rpc)


@pytest.mark.parametrize("used", [set(), {0}, {1}, {3}, {4}, {6}, {1, 5}, {3, 4}, {0, 6}, {2, 5, 6}])
def test_3g20gb_fits_exactly_when_an_aligned_block_of_four_is_free(rpc, used):
    a100_host(rpc, "g1")
    if used:
        fill_then_keep(rpc, 1, used)
    free_blocks = [s for s in profile("A100-40GB", "3g.20gb")["starts"] if not used & set(range(s, s + 4))]
    params = lease_params(ts(1), ts(2), reservations=[gpu("3g.20gb")], dry_run=True)
    if free_blocks:
        got = slots(rpc.call("lease.create", params))
        # Packing: the 3g goes to 4 when it can, leaving slot 0 (the only 4g/7g start) free.
        assert got == [4 if 4 in free_blocks else 0]
    else:
        e = rpc.error("lease.create", params, -32002)
        assert e.data["earliest_start"] == ts(2)


def test_1g10gb_on_an_a100_40gb_takes_two_slots(rpc):
    a100_host(rpc, "g40")
    lease = create_lease(rpc, ts(1), ts(2), reservations=[gpu("1g.10gb", 4, gpu_model="A100-40GB")])
    assert sorted(slots(lease)) == profile("A100-40GB", "1g.10gb")["starts"] == [0, 2, 4, 6]
    assert {e["size"] for e in gpu_calendar(rpc)} == {2}
    # Four of them fill all eight slices: not even a 1g.5gb is left.
    refused(rpc, ts(1), ts(2), [gpu("1g.5gb")])
    refused(rpc, ts(3), ts(4), [gpu("1g.10gb", 5)])
    # On an A100-80GB, the same name is a one-slice profile: seven fit.
    make_host(rpc, "g80", gpus=[{"model": "A100-80GB"}])
    big = create_lease(rpc, ts(1), ts(2), reservations=[gpu("1g.10gb", 7, gpu_model="A100-80GB")])
    assert {a["host"] for a in slices(big)} == {"g80"}
    assert sorted(slots(big)) == list(range(7))
    assert {e["size"] for e in gpu_calendar(rpc, hosts=["g80"])} == {1}
    check_gpu_invariants(rpc)


def test_only_one_media_extension_instance_per_gpu(rpc):
    a100_host(rpc, "g1")
    # Two +me on one GPU can never be.
    e = refused(rpc, ts(1), ts(2), [gpu("1g.5gb+me", 2)])
    assert "earliest_start" not in e.data
    me = create_lease(rpc, ts(1), ts(3), reservations=[gpu("1g.5gb+me")])
    assert slices(me)[0]["profile"] == "1g.5gb+me"
    e = refused(rpc, ts(2), ts(4), [gpu("1g.5gb+me")])
    assert e.data["earliest_start"] == ts(3)
    # Plain 1g.5gb instances still share the GPU with it.
    plain = create_lease(rpc, ts(1), ts(3), reservations=[gpu("1g.5gb", 6)])
    assert sorted(slots(plain) + slots(me)) == list(range(7))
    # A second GPU takes the second +me.
    a100_host(rpc, "g2")
    other = create_lease(rpc, ts(2), ts(4), reservations=[gpu("1g.5gb+me")])
    assert slices(other)[0]["host"] == "g2"
    check_gpu_invariants(rpc)


def test_7g40gb_needs_an_empty_gpu(rpc):
    a100_host(rpc, "g1", 2)
    small = gpu_lease(rpc, ts(1), ts(2))
    (s,) = slices(small)
    whole = create_lease(rpc, ts(1), ts(3), reservations=[gpu("7g.40gb")])
    (w,) = slices(whole)
    assert (w["gpu"], w["slot"]) == (1 - s["gpu"], 0)
    # Both GPUs are taken (one by a single 1g.5gb) until the small lease ends at 02:00.
    e = refused(rpc, ts(1), ts(3), [gpu("7g.40gb")])
    assert e.data["earliest_start"] == ts(2)
    later = create_lease(rpc, ts(2), ts(3), reservations=[gpu("7g.40gb")])
    assert slices(later)[0]["gpu"] == s["gpu"]
    # Two whole GPUs at once never fit beside a third request for one.
    e = refused(rpc, ts(5), ts(6), [gpu("7g.40gb", 3)])
    assert "earliest_start" not in e.data
    check_gpu_invariants(rpc)


def test_gpu_model_filter(rpc):
    make_host(rpc, "mixed", gpus=[{"model": "A100-40GB"}, {"model": "H100-80GB"}])
    make_host(rpc, "small", gpus=[{"model": "A30-24GB"}])
    make_host(rpc, "old", gpus=[{"model": "V100-32GB"}])
    h100 = create_lease(rpc, ts(1), ts(2), reservations=[gpu("1g.10gb", 2, gpu_model="H100-80GB")])
    assert {(a["host"], a["gpu"]) for a in slices(h100)} == {("mixed", 1)}
    a100 = create_lease(rpc, ts(1), ts(2), reservations=[gpu("1g.10gb", gpu_model="A100-40GB")])
    assert {(a["host"], a["gpu"]) for a in slices(a100)} == {("mixed", 0)}
    assert slots(a100)[0] in (0, 2, 4, 6)
    # A profile only one model offers goes to that model without naming it.
    a30 = create_lease(rpc, ts(1), ts(2), reservations=[gpu("2g.12gb", 2)])
    assert sorted((a["host"], a["gpu"], a["slot"]) for a in slices(a30)) == [("small", 0, 0), ("small", 0, 2)]
    # A whole H100 is there once; two can never be, whatever the time.
    e = refused(rpc, ts(3), ts(4), [gpu("7g.80gb", 2, gpu_model="H100-80GB")])
    assert "earliest_start" not in e.data
    # GPU models without MIG are never carved.
    assert all(e["host"] != "old" for e in check_gpu_invariants(rpc))


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("reservation,path,words", [
    (gpu("2g.7gb"), "reservations[0].profile", ["2g.7gb", "unknown"]),
    (gpu("1g.10gb+me", gpu_model="A100-40GB"), "reservations[0].profile", ["1g.10gb+me", "A100-40GB"]),
    (gpu("1g.5gb", gpu_model="H100-80GB"), "reservations[0].profile", ["1g.5gb", "H100-80GB"]),
    (gpu("1g.5gb", gpu_model="V100-32GB"), "reservations[0].profile", ["V100-32GB", "MIG"]),
    (gpu("1g.5gb", gpu_model="B200-192GB"), "reservations[0].gpu_model", ["B200-192GB", "unknown"]),
    (gpu("1g.5gb", 0), "reservations[0].count", []),
    ({"kind": "gpu", "count": 1}, "reservations[0].profile", []),
    (gpu("1g.5gb", vcpus=4), "reservations[0].vcpus", []),
])
def test_bad_gpu_requests_are_invalid_params(rpc, reservation, path, words):
    a100_host(rpc, "g1")
    for method, params in [
        ("lease.create", lease_params(ts(1), ts(2), reservations=[reservation])),
        ("lease.create", lease_params(ts(1), ts(2), reservations=[reservation], dry_run=True)),
        ("availability.find", {"reservations": [reservation], "duration_s": 3600}),
    ]:
        e = rpc.error(method, params, -32602)
        assert e.reason == "invalid_params"
        assert path in e.error_paths, e.data
        msg = next(x["message"] for x in e.data["errors"] if x["path"] == path)
        for w in words:
            assert w in msg, msg
    lease = gpu_lease(rpc, ts(1), ts(2))
    e = rpc.error("lease.update", {"id": lease["id"], "reservations": [reservation]}, -32602)
    assert path in e.error_paths
    assert rpc.call("lease.get", {"id": lease["id"]}) == lease


@pytest.mark.parametrize("gpus,path", [
    ([{"model": "B200-192GB"}], "gpus[0].model"),
    ([{"model": "A100-40GB"}, {"model": "a100-40gb"}], "gpus[1].model"),
    ([{}], "gpus[0].model"),
    ([{"model": "A100-40GB", "mig": True}], "gpus[0].mig"),
    ("A100-40GB", "gpus"),
])
def test_host_with_an_unknown_gpu_model_is_invalid_params(rpc, gpus, path):
    e = rpc.error("host.create", {"name": "g1", "vcpus": 8, "memory_mb": 8192, "disk_gb": 10, "gpus": gpus}, -32602)
    assert path in e.error_paths, e.data
    if path.endswith(".model") and gpus[-1].get("model"):
        assert gpus[-1]["model"] in e.message and "A100-40GB" in e.message  # names the bad one and the known ones
    rpc.error("host.get", {"name": "g1"}, -32001)
    a100_host(rpc, "g1")
    e = rpc.error("host.update", {"name": "g1", "gpus": gpus}, -32602)
    assert path in e.error_paths
    assert rpc.call("host.get", {"name": "g1"})["gpus"] == [{"model": "A100-40GB"}]


def test_host_update_cannot_take_away_a_gpu_holding_slices(rpc):
    a100_host(rpc, "g1", 2)
    lease = create_lease(rpc, ts(1), ts(2), reservations=[gpu("7g.40gb", 2)])
    for gpus in ([{"model": "A100-40GB"}], [{"model": "A100-40GB"}, {"model": "H100-80GB"}], []):
        e = rpc.error("host.update", {"name": "g1", "gpus": gpus}, -32005)
        assert e.reason == "conflict" and e.data["lease_ids"] == [lease["id"]]
        assert "GPU" in e.message
    assert len(rpc.call("host.get", {"name": "g1"})["gpus"]) == 2
    # Adding a GPU is fine, and so is anything once the slices are in the past.
    three = [{"model": "A100-40GB"}] * 2 + [{"model": "A30-24GB"}]
    assert rpc.call("host.update", {"name": "g1", "gpus": three})["gpus"] == three
    rpc.call("clock.set", {"now": ts(2)})
    assert rpc.call("host.update", {"name": "g1", "gpus": []})["gpus"] == []
    assert rpc.call("lease.get", {"id": lease["id"]})["status"] == "ended"


def test_count_larger_than_the_cloud_could_ever_hold(rpc):
    a100_host(rpc, "g1", 2)
    a100_host(rpc, "g2", properties={"rack": "r2"})
    make_host(rpc, "cpu")  # no GPUs
    e = refused(rpc, ts(1), ts(2), [gpu("1g.5gb", 22)])
    assert "earliest_start" not in e.data
    assert "21" in e.message and "1g.5gb" in e.message, e.message  # says how many could ever fit
    e = refused(rpc, ts(1), ts(2), [gpu("3g.20gb", 3, properties={"rack": "r2"})])
    assert "earliest_start" not in e.data and "2" in e.message
    # Down and unreservable hosts do not count either.
    rpc.call("host.update", {"name": "g2", "state": "maintenance"})
    e = refused(rpc, ts(1), ts(2), [gpu("1g.5gb", 15)])
    assert "earliest_start" not in e.data
    assert rpc.call("lease.list")["items"] == []
    assert len(slices(create_lease(rpc, ts(1), ts(2), reservations=[gpu("1g.5gb", 14)]))) == 14


def test_busy_now_but_free_later_gives_earliest_start(rpc):
    a100_host(rpc, "g1")
    create_lease(rpc, ts(1), ts(3), reservations=[gpu("4g.20gb")])
    create_lease(rpc, ts(1), ts(5), reservations=[gpu("3g.20gb")])
    e = refused(rpc, ts(2), ts(4), [gpu("3g.20gb")])
    # The 4g's block frees at 03:00; the 3g's only at 05:00.
    assert e.data["earliest_start"] == ts(3)
    fits = create_lease(rpc, e.data["earliest_start"], ts(5), reservations=[gpu("3g.20gb")])
    assert slots(fits) == [0]
    e = refused(rpc, ts(2), ts(4), [gpu("7g.40gb")])
    assert e.data["earliest_start"] == ts(5)
    check_gpu_invariants(rpc)


# --- whole hosts and slices -----------------------------------------------------------------------

def test_whole_host_and_gpu_slices_exclude_each_other(rpc):
    a100_host(rpc, "g1", 2)
    host = create_lease(rpc, ts(1), ts(3), reservations=[{"kind": "host", "count": 1}])
    assert host["reservations"][0]["allocations"] == [{"host": "g1"}]
    # A host reserved whole lends none of its GPUs.
    e = refused(rpc, ts(2), ts(4), [gpu("1g.5gb")])
    assert e.data["earliest_start"] == ts(3)
    # And a host holding a slice is not free for a whole-host reservation.
    create_lease(rpc, ts(5), ts(6), reservations=[gpu("1g.5gb")])
    e = refused(rpc, ts(5, minutes=30), ts(7), [{"kind": "host", "count": 1}])
    assert e.data["earliest_start"] == ts(6)
    # With a second host, each kind takes its own.
    a100_host(rpc, "g2")
    whole = create_lease(rpc, ts(5), ts(6), reservations=[{"kind": "host", "count": 1}])
    assert whole["reservations"][0]["allocations"] == [{"host": "g2"}]
    refused(rpc, ts(5), ts(6), [{"kind": "host", "count": 1}])
    cal = rpc.call("calendar.get", {"from": ts(5), "to": ts(6)})["hosts"]
    kinds = {h["name"]: sorted(a["kind"] for a in h["allocations"]) for h in cal}
    assert kinds == {"g1": ["gpu"], "g2": ["host"]}


def test_a_lease_with_a_host_and_a_gpu_slice_uses_different_hosts(rpc):
    a100_host(rpc, "a-gpu")
    make_host(rpc, "b-cpu")
    # Whole-host requests leave GPU hosts for GPU work when another host will do ...
    alone = create_lease(rpc, ts(5), ts(6), reservations=[{"kind": "host", "count": 1}], dry_run=True)
    assert alone["reservations"][0]["allocations"] == [{"host": "b-cpu"}]
    # ... so a lease asking for a host and a slice gets both.
    lease = create_lease(rpc, ts(1), ts(2), reservations=[{"kind": "host", "count": 1}, gpu("1g.5gb")])
    assert lease["reservations"][0]["allocations"] == [{"host": "b-cpu"}]
    assert [(a["host"], a["slot"]) for a in lease["reservations"][1]["allocations"]] == [("a-gpu", 6)]
    # With the CPU host taken, the GPU host is the only one left for either kind.
    refused(rpc, ts(1), ts(2), [{"kind": "host", "count": 1}])
    e = refused(rpc, ts(1), ts(2), [{"kind": "host", "count": 2}, gpu("1g.5gb")])
    assert "earliest_start" not in e.data  # two whole hosts and a slice never fit on two hosts


# --- packing --------------------------------------------------------------------------------------

def test_packing_fills_a_partly_used_gpu_from_the_top(rpc):
    a100_host(rpc, "a")
    a100_host(rpc, "b")
    # "b" holds a slice in the window, "a" (first by name) is empty.
    first = create_lease(rpc, ts(1), ts(3), reservations=[gpu("1g.5gb", properties={"name": "b"})])
    assert slots(first) == [6]  # small profiles go high
    nxt = gpu_lease(rpc, ts(1), ts(3))
    assert [(a["host"], a["gpu"], a["slot"]) for a in slices(nxt)] == [("b", 0, 5)]
    # So a whole GPU is still there for the next request, on "a".
    whole = create_lease(rpc, ts(1), ts(3), reservations=[gpu("7g.40gb")])
    assert [(a["host"], a["slot"]) for a in slices(whole)] == [("a", 0)]
    # A 3g.20gb on an empty GPU takes slot 4, leaving slot 0 for a 4g.20gb.
    three = create_lease(rpc, ts(5), ts(6), reservations=[gpu("3g.20gb", properties={"name": "a"})])
    assert slots(three) == [4]
    assert slots(create_lease(rpc, ts(5), ts(6), reservations=[gpu("4g.20gb", properties={"name": "a"})])) == [0]
    check_gpu_invariants(rpc)


def test_mixed_requests_keep_the_geometry(rpc):
    """A deterministic stream of mixed, overlapping requests: every placement is valid."""
    a100_host(rpc, "g1", 2)
    make_host(rpc, "g2", gpus=[{"model": "H100-80GB"}, {"model": "A30-24GB"}])
    rng = random.Random(20300101)
    choices = [("1g.5gb", None), ("1g.5gb+me", None), ("1g.10gb", "A100-40GB"), ("2g.10gb", None),
               ("3g.20gb", None), ("4g.20gb", None), ("7g.40gb", None), ("1g.10gb", "H100-80GB"),
               ("3g.40gb", None), ("1g.6gb", None), ("2g.12gb+me", None), ("4g.24gb", None)]
    accepted = refused_count = 0
    for i in range(40):
        name, model = rng.choice(choices)
        start = rng.randrange(0, 12)
        r = gpu(name, rng.choice([1, 1, 2, 3]), **({"gpu_model": model} if model else {}))
        try:
            create_lease(rpc, ts(start), ts(start + rng.randrange(1, 6)), reservations=[r], name=f"m{i}")
            accepted += 1
        except RPCError as e:
            assert e.code == -32002, e
            refused_count += 1
    assert accepted >= 10 and refused_count > 0  # the stream must exercise both outcomes
    entries = check_gpu_invariants(rpc)
    assert len(entries) >= accepted


# --- dry runs, updates, availability ----------------------------------------------------------------

def test_dry_run_shows_the_placement_and_stores_nothing(rpc):
    a100_host(rpc, "g1")
    gpu_lease(rpc, ts(1), ts(2))
    params = lease_params(ts(1), ts(2), reservations=[gpu("1g.5gb", 2)])
    seen = len(events(rpc))
    dry = rpc.call("lease.create", {**params, "dry_run": True})
    assert [(a["host"], a["gpu"], a["profile"]) for a in slices(dry)] == [("g1", 0, "1g.5gb")] * 2
    assert sorted(slots(dry)) == [4, 5]
    assert len(rpc.call("lease.list")["items"]) == 1
    assert len(gpu_calendar(rpc)) == 1
    assert len(events(rpc)) == seen
    rpc.error("lease.get", {"id": dry["id"]}, -32001)
    # The real thing lands where the dry run said.
    real = rpc.call("lease.create", params)
    assert sorted(map(json.dumps, slices(real))) == sorted(map(json.dumps, slices(dry)))
    # A dry run that does not fit fails like the real thing.
    e = rpc.error("lease.create", {**params, "reservations": [gpu("1g.5gb", 5)], "dry_run": True}, -32002)
    assert e.data["earliest_start"] == ts(2)


def test_update_grows_shrinks_and_extends_keeping_slices(rpc):
    a100_host(rpc, "g1", 2)
    lease = gpu_lease(rpc, ts(1), ts(3), count=2)
    rid = lease["reservations"][0]["id"]
    before = slices(lease)
    grown = rpc.call("lease.update", {"id": lease["id"], "reservations": [gpu("1g.5gb", 4)]})
    assert grown["reservations"][0]["id"] == rid
    assert slices(grown)[:2] == before and len(slices(grown)) == 4
    assert len({(a["gpu"], a["slot"]) for a in slices(grown)}) == 4
    shrunk = rpc.call("lease.update", {"id": lease["id"], "reservations": [{"id": rid, **gpu("1g.5gb", 1)}]})
    assert slices(shrunk) == before[:1]
    extended = rpc.call("lease.update", {"id": lease["id"], "end": ts(8)})
    assert slices(extended) == before[:1] and extended["end"] == ts(8)
    moved = rpc.call("lease.update", {"id": lease["id"], "start": ts(2), "end": ts(9)})
    assert slices(moved) == before[:1]
    # Another profile in place of the old one: new slices.
    three = rpc.call("lease.update", {"id": lease["id"], "reservations": [gpu("3g.20gb")], "dry_run": True})
    assert slots(three) == [4] and three["reservations"][0]["profile"] == "3g.20gb"
    assert rpc.call("lease.get", {"id": lease["id"]}) == moved
    check_gpu_invariants(rpc)


def test_extension_moves_a_slice_only_where_it_no_longer_fits(rpc):
    a100_host(rpc, "g1")
    a = gpu_lease(rpc, ts(1), ts(2), name="a")
    b = gpu_lease(rpc, ts(2), ts(3), name="b")
    (sa,), (sb,) = slots(a), slots(b)
    assert sa == sb == 6  # b fits right after a on the same slice (tightest in time)
    # Extending a into b's time: slot 6 is taken then, so a's slice moves, and only a's.
    dry = rpc.call("lease.update", {"id": a["id"], "end": ts(3), "dry_run": True})
    assert slots(dry) != [6]
    assert rpc.call("lease.get", {"id": a["id"]}) == a
    ext = rpc.call("lease.update", {"id": a["id"], "end": ts(3)})
    assert slots(ext) == slots(dry)
    assert rpc.call("lease.get", {"id": b["id"]}) == b
    # Filling the GPU in that window makes a further extension fail and change nothing.
    create_lease(rpc, ts(3), ts(4), reservations=[gpu("7g.40gb")])
    e = rpc.error("lease.update", {"id": a["id"], "end": ts(4)}, -32002)
    assert e.reason == "no_capacity"
    assert rpc.call("lease.get", {"id": a["id"]}) == ext
    check_gpu_invariants(rpc)


def test_availability_find_for_gpu_slices(rpc):
    a100_host(rpc, "g1")
    create_lease(rpc, ts(1), ts(3), reservations=[gpu("4g.20gb")])
    create_lease(rpc, ts(2), ts(5), reservations=[gpu("1g.5gb")])
    find = lambda res, **kw: [(w["start"], w["end"]) for w in rpc.call(
        "availability.find", {"reservations": res, "duration_s": 3600, **kw})["items"]]
    # A 3g.20gb fits beside the 4g until the 1g arrives at 02:00 (on slices 4-7).
    assert find([gpu("3g.20gb")], earliest=ts(1), limit=1) == [(ts(1), ts(2))]
    # A whole GPU needs both gone: 05:00.
    assert find([gpu("7g.40gb")], earliest=ts(1), limit=1) == [(ts(5), ts(6))]
    # Two 3g.20gb need the 4g's block (free at 03:00) and the 1g's (free at 05:00).
    assert find([gpu("3g.20gb", 2)], earliest=ts(1, minutes=30), limit=1) == [(ts(5), ts(6))]
    # Never: none.
    assert find([gpu("7g.40gb", 2)]) == []


# --- calendar, lifecycle, restart -------------------------------------------------------------------

def test_calendar_shows_gpu_slots(rpc):
    a100_host(rpc, "g1", 2)
    make_host(rpc, "cpu")
    lease = create_lease(rpc, ts(1), ts(2), name="gpus", reservations=[gpu("2g.10gb"), gpu("1g.5gb", 2)])
    cal = rpc.call("calendar.get", {"from": ts(0), "to": ts(3)})
    by_host = {h["name"]: h["allocations"] for h in cal["hosts"]}
    assert by_host["cpu"] == []
    got = sorted((a["reservation_id"], a["gpu"], a["slot"], a["size"], a["profile"]) for a in by_host["g1"])
    want = sorted((r["id"], a["gpu"], a["slot"], profile("A100-40GB", a["profile"])["size"], a["profile"])
                  for r in lease["reservations"] for a in r["allocations"])
    assert got == want
    for a in by_host["g1"]:
        assert (a["kind"], a["lease_id"], a["lease_name"], a["project_id"], a["start"], a["end"], a["status"]) == (
            "gpu", lease["id"], "gpus", "proj-a", ts(1), ts(2), "pending")
    assert gpu_calendar(rpc, ts(2), ts(3)) == []
    assert len(gpu_calendar(rpc, hosts=["g1"])) == 3
    check_gpu_invariants(rpc)


def test_lifecycle_events_and_actions_of_a_gpu_lease(rpc):
    a100_host(rpc, "g1")
    lease = gpu_lease(rpc, ts(1), ts(3), count=2, before_end_s=600)
    lid = lease["id"]
    rpc.call("clock.set", {"now": ts(1)})
    assert rpc.call("lease.get", {"id": lid})["status"] == "active"
    started = rpc.call("actions.list", {"lease_id": lid})["items"]
    assert [a["kind"] for a in started] == ["lease.start"]
    assert started[0]["payload"]["hosts"] == ["g1"]
    assert sorted((a["gpu"], a["slot"], a["profile"]) for a in started[0]["payload"]["allocations"]) == sorted(
        (a["gpu"], a["slot"], a["profile"]) for a in slices(lease))
    # Growing an active lease on the host it already has still owes the cloud an update.
    grown = rpc.call("lease.update", {"id": lid, "reservations": [gpu("1g.5gb", 3)]})
    kinds = [a["kind"] for a in rpc.call("actions.list", {"lease_id": lid})["items"]]
    assert kinds == ["lease.start", "lease.update"]
    upd = rpc.call("actions.list", {"lease_id": lid})["items"][1]
    assert len(upd["payload"]["allocations"]) == 3
    # An update that changes nothing the cloud sees owes nothing.
    rpc.call("lease.update", {"id": lid, "name": "renamed"})
    assert len(rpc.call("actions.list", {"lease_id": lid})["items"]) == 2
    rpc.call("clock.set", {"now": ts(4)})
    got = rpc.call("lease.get", {"id": lid})
    assert got["status"] == "ended" and slices(got) == slices(grown)
    evs = [(e["type"], e["at"]) for e in events(rpc) if e.get("lease_id") == lid]
    assert evs == [("lease.created", ts(0)), ("lease.started", ts(1)), ("lease.updated", ts(1)),
                   ("lease.updated", ts(1)), ("lease.before_end", ts(2, minutes=50)), ("lease.ended", ts(3))]
    items = wait_until(lambda: (lambda xs: xs if xs and all(a["status"] == "done" for a in xs) else None)(
        rpc.call("actions.list", {"lease_id": lid})["items"]), "GPU lease actions delivered")
    assert [a["kind"] for a in items] == ["lease.start", "lease.update", "lease.end"]


def test_deleting_an_active_gpu_lease_frees_its_slices_now(rpc):
    a100_host(rpc, "g1")
    lease = create_lease(rpc, ts(1), ts(5), reservations=[gpu("7g.40gb")])
    rpc.call("clock.set", {"now": ts(2)})
    refused(rpc, ts(2), ts(3), [gpu("1g.5gb")])
    rpc.call("lease.delete", {"id": lease["id"]})
    assert [a["kind"] for a in rpc.call("actions.list", {"lease_id": lease["id"]})["items"]] == [
        "lease.start", "lease.end"]
    assert slots(create_lease(rpc, "now", ts(3), reservations=[gpu("1g.5gb")])) == [6]


def test_sigkill_and_restart_keep_every_slice(daemon):
    daemon.start()
    rpc = daemon.client()
    a100_host(rpc, "g1", 2)
    make_host(rpc, "g2", gpus=[{"model": "H100-80GB"}])
    a = create_lease(rpc, ts(1), ts(4), name="a", reservations=[gpu("1g.5gb", 3), gpu("2g.10gb")])
    b = create_lease(rpc, ts(2), ts(6), name="b", reservations=[gpu("3g.20gb", 2), gpu("1g.5gb+me")])
    c = create_lease(rpc, ts(3), ts(8), name="c", reservations=[gpu("7g.80gb", gpu_model="H100-80GB")])
    rpc.call("lease.update", {"id": a["id"], "end": ts(5)})
    rpc.call("clock.set", {"now": ts(2, minutes=30)})  # a and b active, c pending
    leases = rpc.call("lease.list", {"limit": 1000})
    cal = rpc.call("calendar.get", {"from": ts(0), "to": ts(24)})
    conflicting = lease_params(ts(3), ts(4), reservations=[gpu("3g.20gb", 2)])
    before = rpc.error("lease.create", {**conflicting, "dry_run": True}, -32002)

    assert daemon.kill() == -signal.SIGKILL
    daemon.restart(now=None)
    rpc = daemon.client()
    assert rpc.call("lease.list", {"limit": 1000}) == leases
    assert rpc.call("calendar.get", {"from": ts(0), "to": ts(24)}) == cal
    after = rpc.error("lease.create", {**conflicting, "dry_run": True}, -32002)
    assert (after.message, after.data) == (before.message, before.data)
    refused(rpc, ts(3), ts(4), [gpu("7g.80gb")])
    refused(rpc, ts(3), ts(4), [gpu("1g.5gb+me", 2)])
    check_gpu_invariants(rpc)
    # The pending lease still starts on time, on the slices it was given.
    rpc.call("clock.set", {"now": ts(3)})
    got = rpc.call("lease.get", {"id": c["id"]})
    assert got["status"] == "active" and slices(got) == slices(c)
    assert slices(rpc.call("lease.get", {"id": b["id"]})) == slices(b)
