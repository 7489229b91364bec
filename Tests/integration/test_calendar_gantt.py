"""`berthctl calendar`: the terminal Gantt chart drawn from calendar.get, checked character for character
on a small known calendar (manual clock), plus --table, --json and the width from $COLUMNS."""

from __future__ import annotations

import json

from berthtest import ts
from test_berthctl import ctl, ok

FROM, TO = ts(0), ts(24)  # one day: at 64 characters with 15-character labels, 48 columns of 30 minutes


def host(rpc, name, lane=None, gpus=0):
    params = {"name": name, "vcpus": 16, "memory_mb": 65536, "disk_gb": 100, "properties": {"lane": lane or name}}
    if gpus:
        params["gpus"] = [{"model": "A100-40GB"}] * gpus
    rpc.call("host.create", params)


def lease(rpc, name, project, start, end, reservation):
    return rpc.call("lease.create", {"name": name, "project_id": project, "start": start, "end": end,
                                     "reservations": [reservation]})


def cells(*spans, width=48):
    """A lane of `width` cells: '.' except each (letter, first, last) span."""
    row = ["."] * width
    for letter, first, last in spans:
        for i in range(first, last + 1):
            row[i] = letter
    return "".join(row)


def test_gantt_rows_for_a_known_calendar(berthd, rpc):
    host(rpc, "compute-node-01", lane="a")
    host(rpc, "compute-node-02", lane="b")
    host(rpc, "gpu-node-01", lane="g", gpus=2)
    # Letters go by start time: A 00:00, B 01:00, C 02:00, D 06:00, E 07:00.
    a = lease(rpc, "inst-1", "p1", ts(0), ts(12),
              {"kind": "instance", "vcpus": 4, "memory_mb": 4096, "disk_gb": 10, "count": 1, "properties": {"lane": "b"}})
    b = lease(rpc, "slice", "p2", ts(1), ts(3), {"kind": "gpu", "profile": "1g.5gb", "count": 1})
    c = lease(rpc, "alpha", "p1", ts(2), ts(6), {"kind": "host", "count": 1, "properties": {"lane": "a"}})
    d = lease(rpc, "beta", "p3", ts(6), ts(9), {"kind": "host", "count": 1, "properties": {"lane": "a"}})
    e = lease(rpc, "inst-2", "p1", ts(7), ts(18),
              {"kind": "instance", "vcpus": 4, "memory_mb": 4096, "disk_gb": 10, "count": 1, "properties": {"lane": "b"}})
    (slice_alloc,) = b["reservations"][0]["allocations"]
    gpu, slot = slice_alloc["gpu"], slice_alloc["slot"]

    out = ok(ctl(berthd.socket_path, "calendar", "--from", FROM, "--to", TO, "--width", "64")).stdout
    lines = out.split("\n")
    pad = " " * 16
    gpu_rows = []
    for g in range(2):
        if g == gpu:
            gpu_rows.append(f"  gpu{g} s{slot}".ljust(15) + " " + cells(("B", 2, 5)))
        else:
            gpu_rows.append(f"  gpu{g}".ljust(15) + " " + cells())
    expected = [
        "2030-01-01T00:00:00Z .. 2030-01-02T00:00:00Z, one column = 30m",
        pad + "01-01 03:00 06:00 09:00 12:00 15:00 18:00 21:00",
        pad + "|-----" * 8,
        # Whole-host leases meeting at 06:00 share the lane: C ends in cell 11, D starts in cell 12.
        "compute-node-01 " + cells(("C", 4, 11), ("D", 12, 17)),
        # Two instance leases overlapping on one host: the later one gets a second lane.
        "compute-node-02 " + cells(("A", 0, 23)),
        pad + cells(("E", 14, 35)),
        "gpu-node-01     " + cells(),
        *gpu_rows,
        "",
    ]
    assert lines[:len(expected)] == expected, "\n" + out
    legend = [l.split() for l in lines[len(expected):] if l.strip()]
    assert legend[0] == ["KEY", "LEASE", "ID", "PROJECT", "KIND", "START", "END"]
    assert legend[1:] == [
        ["A", "inst-1", a["id"], "p1", "instance", ts(0), ts(12)],
        ["B", "slice", b["id"], "p2", "gpu", ts(1), ts(3)],
        ["C", "alpha", c["id"], "p1", "host", ts(2), ts(6)],
        ["D", "beta", d["id"], "p3", "host", ts(6), ts(9)],
        ["E", "inst-2", e["id"], "p1", "instance", ts(7), ts(18)],
    ], out

    # Without --width, $COLUMNS decides (stdout is a pipe here, not a terminal).
    assert ok(ctl(berthd.socket_path, "calendar", "--from", FROM, "--to", TO, env={"COLUMNS": "64"})).stdout == out
    # A narrower window clips allocations to it; letters are given to what is in view, in order.
    narrow = ok(ctl(berthd.socket_path, "calendar", "--from", ts(4), "--to", ts(8), "--host", "compute-node-01",
                    "--width", "40")).stdout.split("\n")
    # 40 - 15 - 1 = 24 columns of 10 minutes; ticks every hour (6 columns).
    assert narrow[:4] == [
        f"{ts(4)} .. {ts(8)}, one column = 10m",
        pad + "04:00 05:00 06:00 07:00",
        pad + "|-----" * 4,
        "compute-node-01 " + "A" * 12 + "B" * 12,
    ], "\n".join(narrow)
    # A host whose state is not up says so; labels are at most 28 characters, the name is cut, not the state.
    host(rpc, "spare-node-with-a-long-name")
    rpc.call("host.update", {"name": "spare-node-with-a-long-name", "state": "maintenance"})
    spare = ok(ctl(berthd.socket_path, "calendar", "--from", FROM, "--to", TO, "--host", "spare-node-with-a-long-name",
                   "--width", "77")).stdout.split("\n")
    assert spare[3] == "spare-node-wi~ [maintenance] " + "." * 48


def test_table_and_json_outputs(berthd, rpc):
    host(rpc, "h1")
    l1 = lease(rpc, "one", "p1", ts(1), ts(2), {"kind": "host", "count": 1})
    raw = json.loads(ok(ctl(berthd.socket_path, "calendar", "--from", FROM, "--to", TO, "--json")).stdout)
    assert raw == rpc.call("calendar.get", {"from": FROM, "to": TO})
    table = ok(ctl(berthd.socket_path, "calendar", "--from", FROM, "--to", TO, "--table")).stdout.splitlines()
    assert table[0].split() == ["HOST", "LEASE", "KIND", "START", "END"]
    assert table[1].split() == ["h1", l1["id"], "host", ts(1), ts(2)]


def test_empty_calendar(berthd, rpc):
    host(rpc, "h1")
    out = ok(ctl(berthd.socket_path, "calendar", "--from", FROM, "--to", TO, "--width", "40")).stdout.splitlines()
    assert out[3] == "h1 " + "." * 37
    assert out[-1] == f"no allocations between {FROM} and {TO}"
    # Too narrow to draw is refused up front.
    p = ctl(berthd.socket_path, "calendar", "--from", FROM, "--to", TO, "--width", "5")
    assert p.returncode != 0 and "--width must be at least 20" in p.stderr
