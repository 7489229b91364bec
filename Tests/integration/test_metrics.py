"""Prometheus metrics and the calendar page against the real berthd.

berthd runs with `--clock manual` and `metrics.listen` on an ephemeral loopback port (the bound
address is read from its log). `/metrics` is parsed with prometheus_client's own text-format
parser, and values are checked exactly: lease counts, capacity, RPC counts by method and code,
reservation efficiency from the simulator's usage file, and reserved/used unit-hours after
`clock.advance`.

The calendar page is loaded in headless Chromium (Debian's `chromium`): the rendered DOM must hold
the hosts, GPU lanes and leases, a lease named `<script>…` must come out as text, and a screenshot
is saved. Without Chromium those tests are skipped with a loud warning, unless
BERTH_REQUIRE_CHROMIUM=1 (as in CI), which turns that into a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import warnings

import pytest
from prometheus_client.parser import text_string_to_metric_families

from berthtest import DEFAULT_NOW, create_lease, make_host, ts, wait_until

LISTEN_RE = re.compile(r"metrics listening.*?address=(\S+?:\d+)|address=(\S+?:\d+).*?metrics listening")


def start_with_metrics(daemon, tmp_path, usage: dict | None = None, **config):
    usage_file = tmp_path / "usage.json"
    usage_file.write_text(json.dumps(usage or {}))
    cfg = {"metrics": {"listen": "127.0.0.1:0"}, "simulator": {"usage_file": str(usage_file)}, **config}
    daemon.start(config=cfg)
    m = wait_until(lambda: LISTEN_RE.search(daemon.log_text()), "the metrics listening line in the log")
    daemon.metrics_url = "http://" + (m.group(1) or m.group(2))
    daemon.usage_file = usage_file
    return daemon


def http_get(url: str) -> tuple[int, str, dict]:
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


class Scrape:
    """One /metrics scrape parsed by prometheus_client: samples by name and labels."""

    def __init__(self, text: str):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples: dict[tuple[str, frozenset], float] = {}
        for f in self.families.values():
            for s in f.samples:
                self.samples[(s.name, frozenset(s.labels.items()))] = s.value

    def get(self, name: str, **labels) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def series(self, name: str) -> list[dict]:
        return [dict(k[1]) for k in self.samples if k[0] == name]


def scrape(daemon) -> Scrape:
    status, text, headers = http_get(daemon.metrics_url + "/metrics")
    assert status == 200, text
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return Scrape(text)


def test_metrics_values_on_the_manual_clock(daemon, tmp_path):
    d = start_with_metrics(daemon, tmp_path)
    rpc = d.client()
    for n in ("h1", "h2", "h3"):
        make_host(rpc, n, vcpus=32)
    make_host(rpc, "g1", vcpus=16, gpus=[{"model": "A100-40GB"}])

    m = scrape(d)
    assert m.get("berth_capacity_total", kind="hosts") == 4
    assert m.get("berth_capacity_total", kind="vcpus") == 112
    assert m.get("berth_capacity_total", kind="gpu_slices") == 8
    assert m.get("berth_capacity_reserved", kind="hosts") == 0
    assert m.get("berth_capacity_free", kind="vcpus") == 112
    assert m.get("berth_usage_reported") == 1
    assert m.series("berth_reservation_reserved_units") == []

    a = create_lease(rpc, ts(1), ts(4), name="alpha", project="proj-a", count=2)
    b = create_lease(rpc, ts(1), ts(3), name="beta", project="proj-b",
                     reservations=[{"kind": "gpu", "profile": "1g.5gb", "count": 2}])
    c = create_lease(rpc, ts(10), ts(12), name="gamma", project="proj-a", count=1)
    res_a, res_b = a["reservations"][0]["id"], b["reservations"][0]["id"]
    # The simulator's stand-in for servers running on each reservation.
    d.usage_file.write_text(json.dumps({res_a: 1, res_b: 2}))
    rpc.call("credits.grant", {"project_id": "proj-a", "resource_class": "host_hours", "amount": 100})

    m = scrape(d)
    assert m.get("berth_leases", status="pending") == 3
    assert m.get("berth_leases", status="active") == 0
    assert m.get("berth_capacity_reserved", kind="hosts") == 0  # nothing holds capacity yet at 00:00

    rpc.call("clock.advance", {"seconds": 3600})  # 01:00: alpha and beta start
    m = scrape(d)
    assert m.get("berth_leases", status="active") == 2
    assert m.get("berth_leases", status="pending") == 1
    assert m.get("berth_capacity_reserved", kind="hosts") == 3  # two whole hosts and the GPU host
    assert m.get("berth_capacity_free", kind="hosts") == 1
    assert m.get("berth_capacity_reserved", kind="gpu_slices") == 2
    assert m.get("berth_capacity_free", kind="gpu_slices") == 6
    assert m.get("berth_capacity_reserved", kind="vcpus") == 64
    assert m.get("berth_capacity_free", kind="vcpus") == 48
    assert m.get("berth_reservation_reserved_units", lease_id=a["id"], reservation_id=res_a, project_id="proj-a",
                 kind="host") == 2
    assert m.get("berth_reservation_used_units", lease_id=a["id"], reservation_id=res_a, project_id="proj-a",
                 kind="host") == 1
    assert m.get("berth_reservation_efficiency_ratio", lease_id=a["id"], reservation_id=res_a,
                 project_id="proj-a", kind="host") == 0.5
    assert m.get("berth_reservation_used_units", lease_id=b["id"], reservation_id=res_b, project_id="proj-b",
                 kind="gpu") == 2
    assert m.get("berth_project_reserved_units", project_id="proj-b", kind="gpu") == 2
    # Started exactly now: nothing accrued yet.
    assert m.get("berth_reserved_unit_hours_total", project_id="proj-a", kind="host") in (None, 0)

    rpc.call("clock.advance", {"seconds": 7200})  # 03:00: beta ends
    m = scrape(d)
    assert m.get("berth_reserved_unit_hours_total", project_id="proj-a", kind="host") == 4  # 2 hosts × 2 h
    assert m.get("berth_used_unit_hours_total", project_id="proj-a", kind="host") == 2  # 1 host × 2 h
    assert m.get("berth_reserved_unit_hours_total", project_id="proj-b", kind="gpu") == 4  # 2 slices × 2 h
    assert m.get("berth_used_unit_hours_total", project_id="proj-b", kind="gpu") == 4
    assert m.get("berth_leases", status="ended") == 1
    # Per-reservation series exist only while the lease is active.
    assert [s["lease_id"] for s in m.series("berth_reservation_reserved_units")] == [a["id"]]
    assert m.series("berth_project_reserved_units") == [{"project_id": "proj-a", "kind": "host"}]

    # Half an hour more with the usage changed: 2 × 0.5 reserved, 2 × 0.5 used.
    d.usage_file.write_text(json.dumps({res_a: 2}))
    rpc.call("clock.advance", {"seconds": 1800})
    m = scrape(d)
    assert m.get("berth_reserved_unit_hours_total", project_id="proj-a", kind="host") == 5
    assert m.get("berth_used_unit_hours_total", project_id="proj-a", kind="host") == 3
    assert m.get("berth_reservation_efficiency_ratio", lease_id=a["id"], reservation_id=res_a,
                 project_id="proj-a", kind="host") == 1
    # Scraping again at the same instant adds nothing.
    assert scrape(d).get("berth_reserved_unit_hours_total", project_id="proj-a", kind="host") == 5

    # Credits come from the ledger: the same numbers credits.balance shows.
    bal = rpc.call("credits.balance", {"project_id": "proj-a"})["host_hours"]
    assert m.get("berth_credits_granted", project_id="proj-a", resource_class="host_hours") == float(bal["granted"]) == 100
    assert m.get("berth_credits_spent", project_id="proj-a", resource_class="host_hours") == float(bal["spent"])

    # Preemptibles live and preemptions executed.
    rpc.call("preemptible.create", {"project_id": "proj-c", "vcpus": 4, "memory_mb": 4096, "disk_gb": 10})
    m = scrape(d)
    assert m.get("berth_preemptibles_live") == 1
    assert m.get("berth_preemptions_executed_total") == 0

    # Outbox: every action the simulator got is counted as done once delivered.
    def delivered():
        s = scrape(d)
        return s if s.get("berth_outbox_actions", status="pending") == 0 and \
            s.get("berth_outbox_actions", status="running") == 0 else None
    m = wait_until(delivered, "the outbox to drain")
    done = [x for x in rpc.call("actions.list", {"limit": 1000})["items"] if x["status"] == "done"]
    assert m.get("berth_outbox_actions", status="done") == len(done) > 0
    assert m.get("berth_outbox_failed_total") == 0
    assert m.get("berth_outbox_retries_total") == 0

    # RPC requests by method and code, provoked errors included.
    for _ in range(2):
        rpc.error("lease.get", {"id": "00000000-0000-0000-0000-000000000000"}, -32001)
    rpc.error("host.create", {"name": "bad", "vcpus": "many"}, -32602)
    rpc.error("no.such.method", {}, -32601)
    rpc.error("lease.create", {"name": "x", "project_id": "p", "start": ts(20), "end": ts(21),
                               "reservations": [{"kind": "host", "count": 10}]}, -32002)
    m = scrape(d)
    assert m.get("berth_rpc_requests_total", method="lease.get", code="-32001") == 2
    assert m.get("berth_rpc_requests_total", method="host.create", code="0") == 4
    assert m.get("berth_rpc_requests_total", method="host.create", code="-32602") == 1
    assert m.get("berth_rpc_requests_total", method="other", code="-32601") == 1
    assert m.get("berth_rpc_requests_total", method="lease.create", code="-32002") == 1
    assert m.get("berth_rpc_requests_total", method="lease.create", code="0") == 3
    assert m.get("berth_rpc_requests_total", method="clock.advance", code="0") == 3
    assert m.families["berth_rpc_request_duration_seconds"].type == "histogram"
    assert m.get("berth_rpc_request_duration_seconds_count", method="lease.get", code="-32001") == 2
    assert m.get("berth_rpc_request_duration_seconds_bucket", method="lease.get", code="-32001", le="+Inf") == 2

    # Every family has HELP text and a type the parser knows.
    for name, f in m.families.items():
        assert f.type in ("counter", "gauge", "histogram"), name
        if name.startswith("berth_") and not name.startswith("berth_rpc_"):
            assert f.documentation, name

    # gamma is still pending; delete it and it is counted as deleted.
    rpc.call("lease.delete", {"id": c["id"]})
    assert scrape(d).get("berth_leases", status="deleted") == 1

    # Other paths.
    assert http_get(d.metrics_url + "/nothing")[0] == 404
    req = urllib.request.Request(d.metrics_url + "/metrics", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=60)
    assert e.value.code == 405


def test_metrics_off_by_default(berthd):
    assert "metrics listening" not in berthd.log_text()


def test_graceful_stop_with_metrics(daemon, tmp_path):
    d = start_with_metrics(daemon, tmp_path)
    assert scrape(d).get("berth_leases", status="active") == 0
    assert d.terminate() == 0
    assert "Error" not in d.log_text()


def test_metrics_listen_flag(daemon):
    daemon.start(args=["--metrics-listen", "127.0.0.1:0"])
    m = wait_until(lambda: LISTEN_RE.search(daemon.log_text()), "the metrics listening line in the log")
    daemon.metrics_url = "http://" + (m.group(1) or m.group(2))
    assert scrape(daemon).get("berth_capacity_total", kind="hosts") == 0


def failed_start(daemon, **kw) -> str:
    daemon.start(wait_ready=False, **kw)
    assert daemon.wait_exit() != 0
    return daemon.log_text()


def test_non_loopback_refused(daemon, tmp_path):
    log = failed_start(daemon, config={"metrics": {"listen": "0.0.0.0:9464"}})
    assert "metrics.listen" in log and "not a loopback address" in log and "allow_non_loopback" in log
    log = failed_start(daemon, args=["--metrics-listen", "10.1.2.3:9464"])
    assert "--metrics-listen" in log and "not a loopback address" in log
    log = failed_start(daemon, config={"metrics": {"listen": "localhost"}})
    assert "metrics.listen" in log and "host:port" in log


def test_port_in_use_is_a_clear_error(daemon):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        log = failed_start(daemon, config={"metrics": {"listen": f"127.0.0.1:{port}"}})
    assert f"cannot listen for metrics on 127.0.0.1:{port}" in log
    assert "in use" in log


# ------------------------------------------------------------------------------------------------
# The calendar page in headless Chromium
# ------------------------------------------------------------------------------------------------

EVIL = "<script>alert('x')</script> & \"quotes\""


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    reason = ("Chromium is not installed: the calendar page was NOT checked in a browser. Install it with "
              "`apt-get install -y chromium` (CI does, and sets BERTH_REQUIRE_CHROMIUM=1).")
    if os.environ.get("BERTH_REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"BERTH_REQUIRE_CHROMIUM=1 but {reason}", pytrace=False)
    banner = "!" * 78
    print(f"\n{banner}\nWARNING: {reason}\n{banner}", file=sys.__stderr__, flush=True)
    warnings.warn(reason)
    pytest.skip(reason)


def run_chromium(browser: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=180, env={**os.environ, "HOME": str(tmp_path)})


def test_calendar_page_in_chromium(daemon, tmp_path):
    browser = chromium()
    d = start_with_metrics(daemon, tmp_path)
    rpc = d.client()
    make_host(rpc, "compute-1")
    make_host(rpc, "compute-2")
    make_host(rpc, "gpu-1", gpus=[{"model": "A100-40GB"}, {"model": "A100-40GB"}])
    evil = create_lease(rpc, ts(2), ts(30), name=EVIL, project="proj-a", count=1)
    wide = create_lease(rpc, ts(0, days=2), ts(0, days=4), name="two-days", project="proj-b", count=2)
    g = create_lease(rpc, ts(1), ts(50), name="mig-small", project="proj-c",
                     reservations=[{"kind": "gpu", "profile": "1g.5gb", "count": 3}])
    g3 = create_lease(rpc, ts(6), ts(90), name="mig-big", project="proj-c",
                      reservations=[{"kind": "gpu", "profile": "3g.20gb", "count": 2}])
    rpc.call("clock.advance", {"seconds": 3 * 3600})

    url = d.metrics_url + "/calendar"
    status, html, headers = http_get(url)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;quotes&quot;" in html
    # Self-contained: no external asset, no script (the SVG namespace is a name, not a fetch).
    assert "https://" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "<link" not in html and "@import" not in html and "url(" not in html

    # Explicit window, and a bad one.
    status, small, _ = http_get(url + f"?from={ts(0)}&to={ts(5)}")
    assert status == 200 and "two-days" not in small and "mig-small" in small
    status, text, _ = http_get(url + f"?from={ts(5)}&to={ts(1)}")
    assert status == 400 and "to" in text
    assert http_get(url + "?from=yesterday")[0] == 400

    dom = run_chromium(browser, tmp_path, "--dump-dom", url)
    assert dom.returncode == 0, dom.stderr
    out = dom.stdout
    assert '<svg' in out and 'id="gantt"' in out
    for host in ("compute-1", "compute-2", "gpu-1"):
        assert f'class="host-row" data-host="{host}"' in out
    assert 'class="gpu-lane" data-host="gpu-1" data-gpu="0"' in out
    assert 'class="gpu-lane" data-host="gpu-1" data-gpu="1"' in out
    for lease in (evil, wide, g, g3):
        assert f'data-lease-id="{lease["id"]}"' in out
    # Three 1g.5gb and two 3g.20gb instances, one bar each; the evil name is text, not a script.
    assert out.count(f'data-lease-id="{g["id"]}"') == 3
    assert out.count(f'data-lease-id="{g3["id"]}"') == 2
    assert "<script" not in out.lower()
    assert "&lt;script&gt;" in out
    assert 'data-status="active"' in out and 'data-status="pending"' in out

    shot = tmp_path / "calendar.png"
    r = run_chromium(browser, tmp_path, f"--screenshot={shot}", "--window-size=1280,720", "--hide-scrollbars", url)
    assert r.returncode == 0 and shot.exists(), r.stderr
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep = os.environ.get("BERTH_CALENDAR_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
