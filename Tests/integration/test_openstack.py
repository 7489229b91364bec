"""The openstack adapter against a real Keystone (from PyPI) and the strict Nova emulator: the
whole lease lifecycle (password and application credential), a Nova outage during which leases
start and end, Retry-After, a SIGKILL of berthd mid-delivery, revoked tokens and bad settings."""

from __future__ import annotations

import signal

import pytest

from berthtest import create_lease, hosts_of, make_host, ts, wait_until
from support.keystone_fixture import keystone, keystone_factory  # noqa: F401  (real Keystones)
from support.nova_emulator import NovaEmulator

HOSTS = ["h1", "h2", "h3", "h4"]
PROJECT = "science"  # the tenant's project id is filled in by the fixture


@pytest.fixture
def nova(keystone):
    emu = NovaEmulator(hosts=HOSTS, token_validator=keystone.validate, build_delay=0.1, delete_delay=0.3,
                       host_resources={"h1": {"CUSTOM_MIG_1G_5GB": 7}, "h2": {"CUSTOM_MIG_1G_5GB": 7}})
    emu.start()
    keystone.register_compute(emu.url)
    yield emu
    emu.stop()


def start_berthd(daemon, tmp_path, keystone, *, auth="password", cloud="berth-test", extra=None, write=True,
                 openstack=None):
    clouds = tmp_path / "clouds.yaml"
    if write:
        keystone.clouds_yaml(clouds, auth=auth, cloud=cloud)
    settings = {"cloud": cloud, "clouds_file": str(clouds), "delete_wait_s": 20, "reconcile_interval_s": 0}
    settings.update(openstack or {})
    config = {"adapter": "openstack", "openstack": settings}
    config.update(extra or {})
    daemon.start(config=config)
    rpc = daemon.client()
    return rpc


def make_inventory(rpc):
    for h in HOSTS:
        gpus = [{"model": "A100-40GB"}] if h in ("h1", "h2") else []
        make_host(rpc, h, vcpus=32, memory_mb=65536, disk_gb=500, gpus=gpus)


def actions(rpc, **params):
    return rpc.call("actions.list", {"limit": 1000, **params})["items"]


def all_delivered(rpc):
    items = actions(rpc)
    return items if items and all(a["status"] == "done" for a in items) else None


def deliver(rpc, what="every action delivered", step=600, rounds=40):
    """Moves the manual clock past retry backoffs until every action is done."""
    def check():
        if all_delivered(rpc):
            return True
        if any(a["status"] == "pending" and a["attempts"] > 0 for a in actions(rpc)):
            rpc.call("clock.advance", {"seconds": step})
        return False
    return wait_until(check, what, timeout=90, interval=0.2)


def aggregate(nova, reservation_id):
    found = [a for a in nova.aggregates() if a["name"] == f"berth-{reservation_id}"]
    return found[0] if found else None


def test_host_lease_lifecycle_with_a_password(daemon, tmp_path, keystone, nova):
    rpc = start_berthd(daemon, tmp_path, keystone, auth="password")
    wait_until(lambda: rpc.call("system.health")["adapter"] == "ok", "adapter connected")
    make_inventory(rpc)
    project = keystone.tenant_project_id
    lease = create_lease(rpc, ts(1), ts(2), count=2, project=project,
                         reservations=[{"kind": "host", "count": 2, "properties": ["not", ["in", "$name", ["h1", "h2"]]]}])
    rid = lease["reservations"][0]["id"]
    rpc.call("clock.set", {"now": ts(1)})
    deliver(rpc, "lease.start delivered")
    agg = aggregate(nova, rid)
    assert agg is not None and sorted(agg["hosts"]) == sorted(hosts_of(lease))
    assert agg["metadata"]["filter_tenant_id"] == project
    assert agg["metadata"]["reservation"] == rid and agg["metadata"]["berth_lease_id"] == lease["id"]
    # The tenant boots on its hosts; someone else's server elsewhere is not touched.
    flavor = tenant_flavor(nova, keystone)
    mine = nova.boot(project, flavor, hosts_of(lease)[0], name="mine")
    other = nova.boot("someone-else", flavor, "h1", name="other")
    rpc.call("clock.set", {"now": ts(2)})
    deliver(rpc, "lease.end delivered")
    assert aggregate(nova, rid) is None
    ids = {s["id"] for s in nova.servers()}
    assert mine not in ids and other in ids
    # Every request carried the pinned microversion.
    assert {r.version for r in nova.requests if r.path.startswith("/v2.1/") and r.path != "/v2.1/"} == {"2.79"}
    assert rpc.call("lease.get", {"id": lease["id"]})["degraded"] is False


def nova_admin(nova, keystone, method, path, body=None):
    """A call to the emulator as the cloud's admin (what an operator would do by hand)."""
    import json
    import urllib.request
    req = urllib.request.Request(nova.url + path, method=method, data=None if body is None else json.dumps(body).encode(),
                                 headers={"X-Auth-Token": keystone.issue_token(), "Content-Type": "application/json",
                                          "OpenStack-API-Version": "compute 2.79"})
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read()
        return json.loads(text) if text else None


def test_reconciliation_reports_drift(daemon, tmp_path, keystone, nova):
    rpc = start_berthd(daemon, tmp_path, keystone, openstack={"reconcile_interval_s": 1})
    make_inventory(rpc)
    lease = create_lease(rpc, ts(0, minutes=1), ts(2), count=2, project=keystone.tenant_project_id,
                         reservations=[{"kind": "host", "count": 2, "properties": ["in", "$name", ["h3", "h4"]]}])
    rpc.call("clock.set", {"now": ts(0, minutes=1)})
    deliver(rpc)
    rid = lease["reservations"][0]["id"]
    assert rpc.call("system.health")["cloud_drift"] == []
    # An operator takes a host out of the reservation's aggregate by hand.
    nova_admin(nova, keystone, "POST", f"/os-aggregates/{aggregate(nova, rid)['id']}/action", {"remove_host": {"host": "h4"}})
    drift = wait_until(lambda: rpc.call("system.health")["cloud_drift"], "drift reported")
    assert f"berth-{rid}" in drift[0] and "h4" in drift[0]
    assert "cloud drift" in daemon.log_text()


def tenant_flavor(nova, keystone):
    """A public flavor for the tenant servers the tests boot directly, made through the API."""
    import json
    import urllib.request
    req = urllib.request.Request(nova.url + "/flavors", method="POST", data=json.dumps(
        {"flavor": {"name": "tenant.small", "vcpus": 1, "ram": 512, "disk": 1, "id": "tenant-small"}}).encode(),
        headers={"X-Auth-Token": keystone.issue_token(), "Content-Type": "application/json",
                 "OpenStack-API-Version": "compute 2.79"})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200
    return "tenant-small"


def test_instance_and_gpu_leases_with_an_application_credential(daemon, tmp_path, keystone, nova):
    rpc = start_berthd(daemon, tmp_path, keystone, auth="appcred")
    make_inventory(rpc)
    project = keystone.tenant_project_id
    lease = create_lease(rpc, ts(1), ts(3), project=project, reservations=[
        {"kind": "instance", "vcpus": 4, "memory_mb": 8192, "disk_gb": 20, "count": 2},
        {"kind": "gpu", "profile": "1g.5gb", "count": 1},
    ])
    inst, gpu = lease["reservations"]
    assert inst["flavor_id"] == inst["id"] and gpu["flavor_id"] == gpu["id"]
    rpc.call("clock.set", {"now": ts(1)})
    deliver(rpc, "lease.start delivered")
    flavors = {f["id"]: f for f in nova.flavors()}
    f = flavors[inst["id"]]
    assert (f["vcpus"], f["ram"], f["disk"], f["is_public"]) == (4, 8192, 20, False)
    assert f["extra_specs"]["aggregate_instance_extra_specs:reservation"] == inst["id"]
    assert project in f["projects"]
    g = flavors[gpu["id"]]
    assert g["extra_specs"]["resources:CUSTOM_MIG_1G_5GB"] == "1"
    assert sorted(aggregate(nova, gpu["id"])["hosts"]) == sorted({a["host"] for a in gpu["allocations"]})
    # Servers booted with the reservation's flavor go at the end.
    s1 = nova.boot(project, inst["id"], inst["allocations"][0]["host"], name="worker-1")
    rpc.call("clock.set", {"now": ts(3)})
    deliver(rpc, "lease.end delivered")
    assert s1 not in {s["id"] for s in nova.servers()}
    assert inst["id"] not in {f["id"] for f in nova.flavors()} and gpu["id"] not in {f["id"] for f in nova.flavors()}
    assert aggregate(nova, inst["id"]) is None and aggregate(nova, gpu["id"]) is None


def test_a_nova_outage_loses_nothing(daemon, tmp_path, keystone, nova):
    rpc = start_berthd(daemon, tmp_path, keystone)
    make_inventory(rpc)
    project = keystone.tenant_project_id
    a = create_lease(rpc, ts(0, minutes=10), ts(0, minutes=14), project=project, name="a",
                     reservations=[{"kind": "host", "count": 1, "properties": {"name": "h3"}}])
    b = create_lease(rpc, ts(0, minutes=12), ts(5), project=project, name="b",
                     reservations=[{"kind": "host", "count": 1, "properties": {"name": "h4"}}])
    nova.set_outage(True)
    # Five minutes of outage (manual clock): a starts and ends, b starts.
    rpc.call("clock.set", {"now": ts(0, minutes=15)})
    wait_until(lambda: any(x["attempts"] >= 1 and x["last_error"] for x in actions(rpc)), "a failed attempt recorded")
    failed = [x for x in actions(rpc) if x["last_error"]]
    assert "unreachable" in failed[0]["last_error"]
    wait_until(lambda: rpc.call("system.health")["adapter"] == "degraded", "adapter degraded")
    assert rpc.call("lease.get", {"id": a["id"]})["status"] == "ended"
    nova.set_outage(False)
    deliver(rpc, "everything delivered after the outage")
    assert rpc.call("system.health")["adapter"] == "ok"
    # a's aggregate was created and removed (its end waited for its start); b's is there, once.
    assert aggregate(nova, a["reservations"][0]["id"]) is None
    bagg = aggregate(nova, b["reservations"][0]["id"])
    assert bagg is not None and bagg["hosts"] == ["h4"]
    creates = [r for r in nova.find_requests("POST", r"/os-aggregates$") if r.status == 200]
    assert len(creates) == 2
    kinds = [x["kind"] for x in actions(rpc, lease_id=a["id"])]
    assert kinds == ["lease.start", "lease.end"]


def test_retry_after_is_honoured(daemon, tmp_path, keystone, nova):
    rpc = start_berthd(daemon, tmp_path, keystone)
    make_inventory(rpc)
    nova.fail("POST", r"/os-aggregates$", status=503, times=1, retry_after=900)
    lease = create_lease(rpc, ts(0, minutes=1), ts(2), project=keystone.tenant_project_id,
                         reservations=[{"kind": "host", "count": 1, "properties": {"name": "h3"}}])
    rpc.call("clock.set", {"now": ts(0, minutes=1)})
    act = wait_until(lambda: next((x for x in actions(rpc) if x["attempts"] == 1 and x["status"] == "pending"), None),
                     "the 503 recorded")
    assert "503" in act["last_error"] and "retry after 900" in act["last_error"]
    assert act["due_at"] >= ts(0, minutes=16)
    rpc.call("clock.set", {"now": ts(0, minutes=16)})
    deliver(rpc, "delivered after Retry-After")
    assert aggregate(nova, lease["reservations"][0]["id"])["hosts"] == ["h3"]


def test_sigkill_mid_delivery_then_restart_completes(daemon, tmp_path, keystone, nova):
    rpc = start_berthd(daemon, tmp_path, keystone)
    make_inventory(rpc)
    lease = create_lease(rpc, ts(0, minutes=1), ts(2), count=2, project=keystone.tenant_project_id,
                         reservations=[{"kind": "host", "count": 2, "properties": ["in", "$name", ["h3", "h4"]]}])
    # The second add_host is applied by Nova but its answer never comes back.
    nova.hang("POST", r"/os-aggregates/\d+/action", times=1, apply=True)
    rpc.call("clock.set", {"now": ts(0, minutes=1)})
    wait_until(lambda: nova.stats()["faults"]["hang"] >= 1, "berthd blocked mid-delivery")
    assert [x["status"] for x in actions(rpc)] == ["running"]
    assert daemon.kill() == -signal.SIGKILL
    nova.release_hangs()
    daemon.restart(now=None)
    rpc = daemon.client()
    deliver(rpc, "the interrupted action completed after restart")
    agg = aggregate(nova, lease["reservations"][0]["id"])
    assert sorted(agg["hosts"]) == ["h3", "h4"]
    assert len([a for a in nova.aggregates() if a["name"].startswith("berth-")]) == 1


def test_a_revoked_token_is_replaced(daemon, tmp_path, keystone, nova):
    rpc = start_berthd(daemon, tmp_path, keystone)
    make_inventory(rpc)
    create_lease(rpc, ts(0, minutes=1), ts(0, minutes=2), project=keystone.tenant_project_id,
                 reservations=[{"kind": "host", "count": 1, "properties": {"name": "h3"}}])
    rpc.call("clock.set", {"now": ts(0, minutes=1)})
    deliver(rpc)
    token = [r.token for r in nova.requests if r.token][-1]
    keystone.revoke(token)
    rpc.call("clock.set", {"now": ts(0, minutes=2)})
    deliver(rpc, "delivered with a fresh token")
    assert any(r.status == 401 for r in nova.requests)
    assert [r.token for r in nova.requests if r.token][-1] != token


@pytest.mark.parametrize("case", ["missing_file", "unknown_cloud", "wrong_password", "unreachable"])
def test_bad_settings_degrade_and_recover_after_reload(daemon, tmp_path, keystone, nova, case):
    clouds = tmp_path / "clouds.yaml"
    settings = {}
    if case == "missing_file":
        settings = {"clouds_file": str(tmp_path / "nope.yaml")}
        keystone.clouds_yaml(clouds, cloud="berth-test")
        expect = "does not exist"
    elif case == "unknown_cloud":
        keystone.clouds_yaml(clouds, cloud="berth-test")
        settings = {"cloud": "prod"}
        expect = "no cloud named 'prod'"
    elif case == "wrong_password":
        keystone.clouds_yaml(clouds, cloud="berth-test", extra={"auth": {"password": "not-the-password"}})
        expect = "authentication"
    else:
        keystone.clouds_yaml(clouds, cloud="berth-test", extra={"auth": {"auth_url": "http://127.0.0.1:9/v3"}})
        expect = "unreachable"
    rpc = start_berthd(daemon, tmp_path, keystone, write=False, openstack=settings)
    # "not connected yet" until the start-up check has run.
    health = wait_until(lambda: (lambda h: h if h["adapter"] == "degraded" and h.get("adapter_problem") not in
                                 (None, "not connected yet") else None)(rpc.call("system.health")), "adapter degraded")
    assert expect in health["adapter_problem"], health
    assert health["status"] == "degraded"
    assert expect in daemon.log_text()
    # berthd keeps serving, and queues what the cloud is owed.
    make_inventory(rpc)
    lease = create_lease(rpc, ts(0, minutes=1), ts(2), project=keystone.tenant_project_id,
                         reservations=[{"kind": "host", "count": 1, "properties": {"name": "h3"}}])
    rpc.call("clock.set", {"now": ts(0, minutes=1)})
    wait_until(lambda: any(x["attempts"] >= 1 and x["last_error"] for x in actions(rpc)), "a failed attempt")
    # Fixed settings + SIGHUP: delivered.
    keystone.clouds_yaml(clouds, cloud="berth-test")
    daemon.config_path.write_text(daemon.config_path.read_text().replace(str(tmp_path / "nope.yaml"), str(clouds))
                                  .replace('"prod"', '"berth-test"'))
    daemon.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: rpc.call("system.health")["adapter"] == "ok", "adapter healthy after reload")
    deliver(rpc, "delivered after the fix")
    assert aggregate(nova, lease["reservations"][0]["id"])["hosts"] == ["h3"]


@pytest.mark.parametrize("mode", ["delete", "shelve"])
def test_preemptible_boots_on_the_chosen_host_and_is_preempted(daemon, tmp_path, keystone, nova, mode):
    rpc = start_berthd(daemon, tmp_path, keystone, extra={"preemption": {"action": mode, "notice_s": 0}})
    make_inventory(rpc)
    flavor = tenant_flavor(nova, keystone)
    p = rpc.call("preemptible.create", {"project_id": keystone.tenant_project_id, "vcpus": 1, "memory_mb": 512,
                                        "disk_gb": 1, "min_lifetime_s": 600, "slurm_node": "node-1",
                                        "server": {"name": "slurm-node-1", "flavorRef": flavor,
                                                   "imageRef": "6f2a4a54-5d1c-4bd4-8d55-0d1b1d0e4c11"}})
    deliver(rpc, "preemptible.start delivered")
    booted = wait_until(lambda: [x for x in nova.servers() if x["name"] == "slurm-node-1" and x["status"] == "ACTIVE"],
                        "server active")
    assert booted[0]["host"] == p["host"]
    assert booted[0]["metadata"]["berth_preemptible_id"] == p["id"]
    # A reservation of every host an hour later takes its capacity.
    create_lease(rpc, ts(1), ts(2), count=4, project=keystone.tenant_project_id)
    assert rpc.call("preemptible.get", {"id": p["id"]})["preempt_at"] == ts(1)
    rpc.call("clock.set", {"now": ts(1)})
    deliver(rpc, "preempt delivered")
    left = [x for x in nova.servers() if x["name"] == "slurm-node-1"]
    if mode == "delete":
        assert left == []
    else:
        wait_until(lambda: [x for x in nova.servers() if x["name"] == "slurm-node-1"
                            and x["status"] == "SHELVED_OFFLOADED"], "server shelved")
    # The boot happened once, however often the action was delivered.
    assert len([r for r in nova.find_requests("POST", r"/servers$") if r.status == 202]) == 1


def test_a_request_nova_rejects_fails_at_once(daemon, tmp_path, keystone, nova):
    rpc = start_berthd(daemon, tmp_path, keystone)
    make_inventory(rpc)
    p = rpc.call("preemptible.create", {"project_id": keystone.tenant_project_id, "vcpus": 1, "memory_mb": 512,
                                        "disk_gb": 1, "server": {"name": "bad", "flavorRef": "nope", "imageRef": "not-a-uuid"}})
    failed = wait_until(lambda: [a for a in actions(rpc) if a["status"] == "failed"], "the action failed")
    assert failed[0]["attempts"] == 1 and "HTTP 400" in failed[0]["last_error"]
    ev = [e for e in rpc.call("events.list", {"types": ["action.failed"]})["items"]]
    assert ev and ev[0]["action_id"] == failed[0]["id"]
    assert rpc.call("preemptible.get", {"id": p["id"]})["status"] == "running"


def test_a_token_near_its_expiry_is_renewed(daemon, tmp_path, keystone_factory):
    # Tokens that live 60 s are always within berthd's 120 s renewal margin: every delivery
    # authenticates again rather than using a token about to expire.
    short = keystone_factory(expiration=60)
    emu = NovaEmulator(hosts=HOSTS, token_validator=short.validate)
    emu.start()
    try:
        short.register_compute(emu.url)
        rpc = start_berthd(daemon, tmp_path, short)
        make_inventory(rpc)
        create_lease(rpc, ts(0, minutes=1), ts(0, minutes=2), project=short.tenant_project_id,
                     reservations=[{"kind": "host", "count": 1, "properties": {"name": "h3"}}])
        rpc.call("clock.set", {"now": ts(0, minutes=1)})
        deliver(rpc)
        first = {r.token for r in emu.requests if r.token}
        rpc.call("clock.set", {"now": ts(0, minutes=2)})
        deliver(rpc)
        later = {r.token for r in emu.requests if r.token} - first
        assert later, "the second delivery reused a token inside the renewal margin"
        assert not any(r.status == 401 for r in emu.requests)
    finally:
        emu.stop()


def test_reservation_usage_from_nova(daemon, tmp_path, keystone, nova):
    """Efficiency metrics from Nova: hosts of a host reservation running a server of the project,
    and servers booted with an instance reservation's flavor, measured at each reconciliation."""
    from test_metrics import LISTEN_RE, Scrape, http_get
    rpc = start_berthd(daemon, tmp_path, keystone, openstack={"reconcile_interval_s": 1},
                       extra={"metrics": {"listen": "127.0.0.1:0"}})
    m = wait_until(lambda: LISTEN_RE.search(daemon.log_text()), "the metrics listening line in the log")
    url = "http://" + (m.group(1) or m.group(2)) + "/metrics"
    make_inventory(rpc)
    project = keystone.tenant_project_id
    lease = create_lease(rpc, ts(0, minutes=1), ts(3), project=project, reservations=[
        {"kind": "host", "count": 2, "properties": ["in", "$name", ["h3", "h4"]]},
        {"kind": "instance", "vcpus": 4, "memory_mb": 8192, "disk_gb": 20, "count": 3},
    ])
    rpc.call("clock.set", {"now": ts(0, minutes=1)})
    deliver(rpc)
    host_res, inst = lease["reservations"]
    nova.boot(project, tenant_flavor(nova, keystone), host_res["allocations"][0]["host"], name="on-host")
    for n in ("w1", "w2"):
        nova.boot(project, inst["id"], inst["allocations"][0]["host"], name=n)
    labels = {"lease_id": lease["id"], "project_id": project}

    def measured():
        s = Scrape(http_get(url)[1])
        used = (s.get("berth_reservation_used_units", reservation_id=host_res["id"], kind="host", **labels),
                s.get("berth_reservation_used_units", reservation_id=inst["id"], kind="instance", **labels))
        return s if used == (1, 2) else None
    s = wait_until(measured, "Nova's servers counted on the reservations")
    assert s.get("berth_usage_reported") == 1
    assert s.get("berth_reservation_reserved_units", reservation_id=inst["id"], kind="instance", **labels) == 3
    assert s.get("berth_reservation_efficiency_ratio", reservation_id=host_res["id"], kind="host", **labels) == 0.5
