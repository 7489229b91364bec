"""berthd's Blazar-compatible REST API, driven by Blazar's own clients against the real Keystone.

The `openstack` CLI (python-openstackclient with the python-blazarclient plugin, from
`.venv-osc`) and python-blazarclient's library run unchanged, as a user would run them, with
password and application-credential users of two projects and of the roles admin, member and
reader (`Keystone.users()`). berthd validates their tokens against that Keystone with its own
service credentials (clouds.yaml of `berth-svc`), and the leases they make are checked over
JSON-RPC too. Raw HTTP (as azimuth-schedule-operator speaks it) covers what no CLI sends:
malformed tokens and bodies, oversize bodies, a Keystone outage.
"""

from __future__ import annotations

import json
import re
import socket

import pytest

from berthtest import DEFAULT_NOW, make_host, ts, wait_until
from support.keystone_fixture import http_request, keystone_factory, keystone_server  # noqa: F401  (real Keystones)
from support.openstack_cli import CLIError, noauth_env, openstack_cli  # noqa: F401
from support.nova_emulator import NovaEmulator

LISTEN_RE = re.compile(r"url=(\S+/v1)\b.*blazar api listening")

#: The simulated cloud's compute nodes (not yet Berth hosts: `reservation host create` enrols them).
HYPERVISORS = [{"name": f"hv-0{i}", "vcpus": 32, "memory_mb": 131072, "local_gb": 500} for i in range(1, 5)]
FLAVORS = [
    {"id": "m1.small", "name": "m1.small", "vcpus": 1, "ram": 2048, "disk": 20, "extra_specs": {}},
    {"id": "g1.mig", "name": "g1.mig", "vcpus": 4, "ram": 16384, "disk": 40,
     "extra_specs": {"resources:CUSTOM_MIG_1G_5GB": "1"}},
]


def start(daemon, tmp_path, keystone, *, extra: dict | None = None, blazar: dict | None = None,
          adapter: dict | None = None) -> str:
    """berthd with the REST API on an ephemeral loopback port, Keystone auth; returns the /v1 URL."""
    clouds = tmp_path / "clouds.yaml"
    keystone.clouds_yaml(clouds, auth="password", cloud="berth-test")
    api = {"listen": "127.0.0.1:0", "auth": "keystone",
           "keystone": {"cloud": "berth-test", "clouds_file": str(clouds)}}
    api.update(blazar or {})
    config = {"blazar_api": api, "simulator": {"hypervisors": HYPERVISORS, "flavors": FLAVORS}}
    config.update(adapter or {})
    config.update(extra or {})
    daemon.start(config=config)
    url = wait_until(lambda: LISTEN_RE.search(daemon.log_text()), "the blazar api listening line").group(1)
    keystone.register_reservation(url)
    return url


@pytest.fixture
def api(daemon, tmp_path, keystone_server):
    keystone_server.users()
    url = start(daemon, tmp_path, keystone_server)
    yield url
    keystone_server.unregister_reservation()


def token(keystone, user: str) -> str:
    u = keystone.rest_user(user)
    return keystone.issue_token(username=u.name, password=u.password, project=u.project)


def rest(method: str, url: str, tok: str | None, body=None, *, raw: bytes | None = None, headers=None):
    h = dict(headers or {})
    if tok is not None:
        h["X-Auth-Token"] = tok
    if raw is not None:
        h.setdefault("Content-Type", "application/json")
    return http_request(method, url, headers=h, body=raw if raw is not None else body)


def blazar_error(resp, status: int) -> str:
    """The error_message of a Blazar-shaped error with this status."""
    assert resp.status == status, (resp.status, resp.body)
    assert resp.header("content-type") == "application/json"
    assert resp.body["error_code"] == status and resp.body["error_name"] == status, resp.body
    return resp.body["error_message"]


def enrol(cli, env, *names: str) -> list[dict]:
    return [cli.json(env, "reservation", "host", "create", n) for n in names]


# ------------------------------------------------------------------------------------------------
# The CLI, end to end
# ------------------------------------------------------------------------------------------------

def test_hosts_through_the_cli(api, daemon, keystone_server, openstack_cli):
    admin = keystone_server.cli_env("rest-admin")
    h1 = openstack_cli.json(admin, "reservation", "host", "create", "hv-01", "--extra", "rack=r1")
    # The size comes from the cloud's hypervisor, the id is a small integer as a string.
    assert h1["hypervisor_hostname"] == "hv-01" and h1["id"] == "1"
    assert (h1["vcpus"], h1["memory_mb"], h1["local_gb"]) == (32, 131072, 500) and h1["rack"] == "r1"
    h2 = openstack_cli.json(admin, "reservation", "host", "create", "hv-02")
    assert h2["id"] == "2"
    listed = openstack_cli.json(admin, "reservation", "host", "list")
    assert [(h["id"], h["hypervisor_hostname"]) for h in listed] == [("1", "hv-01"), ("2", "hv-02")]
    # By name and by id; extra capabilities are host properties, seen over JSON-RPC too.
    openstack_cli.run(admin, "reservation", "host", "set", "--extra", "gpu=True", "hv-02")
    assert openstack_cli.json(admin, "reservation", "host", "show", "2")["gpu"] == "True"
    assert daemon.client().call("host.get", {"name": "hv-02"})["properties"] == {"gpu": "True"}
    props = openstack_cli.json(admin, "reservation", "host", "property", "list", "--detail")
    assert {p["property"]: p["property_values"] for p in props} == {"gpu": ["True"], "rack": ["r1"]}
    # A private property is listed only with --all, and stays private across a restart.
    openstack_cli.run(admin, "reservation", "host", "property", "set", "--private", "rack")
    assert [p["property"] for p in openstack_cli.json(admin, "reservation", "host", "property", "list")] == ["gpu"]
    every = openstack_cli.json(admin, "reservation", "host", "property", "list", "--all", "--detail")
    assert {p["property"]: p["private"] for p in every} == {"gpu": False, "rack": True}
    e = openstack_cli.run(admin, "reservation", "host", "property", "set", "--private", "nope", check=False)
    assert e.returncode == 1 and "not found" in e.stderr_clean
    # A hypervisor the cloud does not have, and a non-admin.
    e = openstack_cli.run(admin, "reservation", "host", "create", "no-such-node", check=False)
    assert e.returncode == 1 and "Host 'no-such-node' not found!" in e.stderr_clean
    e = openstack_cli.run(keystone_server.cli_env("alice"), "reservation", "host", "list", check=False)
    assert e.returncode == 1 and "Policy doesn't allow blazar:oshosts:get" in e.stderr_clean
    # Ids are never reused, across a delete and a restart.
    openstack_cli.run(admin, "reservation", "host", "delete", "2")
    daemon.restart()
    wait_until(lambda: LISTEN_RE.search(daemon.log_text()), "the blazar api listening line after restart")
    keystone_server.register_reservation(LISTEN_RE.search(daemon.log_text()).group(1))
    h3 = openstack_cli.json(admin, "reservation", "host", "create", "hv-03")
    assert h3["id"] == "3"
    assert [p["property"] for p in openstack_cli.json(admin, "reservation", "host", "property", "list")] == []
    assert [h["id"] for h in openstack_cli.json(admin, "reservation", "host", "list")] == ["1", "3"]


def test_a_lease_through_the_cli(api, daemon, keystone_server, openstack_cli):
    admin = keystone_server.cli_env("rest-admin")
    enrol(openstack_cli, admin, "hv-01", "hv-02", "hv-03")
    alice = keystone_server.cli_env("alice")
    science = keystone_server.rest_user("alice").project_id
    created = openstack_cli.json(
        alice, "reservation", "lease", "create", "--reservation",
        'resource_type=physical:host,min=1,max=2,hypervisor_properties=[">=", "$vcpus", "16"],'
        'resource_properties=',
        "--start-date", "2030-01-01 01:00", "--end-date", "2030-01-01 03:00", "exp-1")
    assert created["status"] == "PENDING" and created["project_id"] == science
    assert created["start_date"] == "2030-01-01T01:00:00.000000"
    assert created["end_date"] == "2030-01-01T03:00:00.000000"
    lid = created["id"]
    # The same lease over JSON-RPC: same window, same project, placed on 2 hosts.
    rpc = daemon.client()
    berth = rpc.call("lease.get", {"id": lid})
    assert (berth["start"], berth["end"], berth["project_id"]) == (ts(1), ts(3), science)
    assert berth["user_id"] == keystone_server.rest_user("alice").user_id
    assert len(berth["reservations"][0]["allocations"]) == 2
    # By name, as the CLI resolves it.
    shown = openstack_cli.json(alice, "reservation", "lease", "show", "exp-1")
    assert shown["id"] == lid and shown["status"] == "PENDING"
    events = rest("GET", api + f"/leases/{lid}", token(keystone_server, "alice")).body["lease"]["events"]
    assert [(e["event_type"], e["status"]) for e in events] == [("start_lease", "UNDONE"), ("end_lease", "UNDONE")]
    assert [(x["name"], x["id"]) for x in openstack_cli.json(alice, "reservation", "lease", "list")] == [("exp-1", lid)]
    # prolong / reduce / defer are computed by the client from the dates we return.
    openstack_cli.run(alice, "reservation", "lease", "set", "--prolong-for", "1h", "exp-1")
    assert rpc.call("lease.get", {"id": lid})["end"] == ts(4)
    openstack_cli.run(alice, "reservation", "lease", "set", "--reduce-by", "30m", "exp-1")
    assert rpc.call("lease.get", {"id": lid})["end"] == ts(3.5)
    openstack_cli.run(alice, "reservation", "lease", "set", "--defer-by", "1h", "exp-1")
    assert rpc.call("lease.get", {"id": lid})["start"] == ts(2)
    # Allocations, per host, as an admin sees them.
    allocs = openstack_cli.json(admin, "reservation", "allocation", "list", "host")
    held = {a["resource_id"] for a in allocs if a["reservations"]}
    assert len(held) == 2 and all(r["lease_id"] == lid for a in allocs for r in a["reservations"])
    # It starts; Blazar's status and events follow.
    rpc.call("clock.set", {"now": ts(2)})
    wait_until(lambda: openstack_cli.json(alice, "reservation", "lease", "show", lid)["status"] == "ACTIVE",
               "the lease ACTIVE")
    events = rest("GET", api + f"/leases/{lid}", token(keystone_server, "alice")).body["lease"]["events"]
    assert [e["status"] for e in events] == ["DONE", "UNDONE"]
    openstack_cli.run(alice, "reservation", "lease", "delete", "exp-1")
    assert openstack_cli.json(alice, "reservation", "lease", "list") == []
    e = openstack_cli.run(alice, "reservation", "lease", "show", lid, check=False)
    assert e.returncode == 1 and f"Object with {{'lease_id': '{lid}'}} not found" in e.stderr_clean
    assert rpc.call("lease.get", {"id": lid})["status"] == "deleted"


def test_instance_and_flavor_reservations(api, daemon, keystone_server, openstack_cli):
    rpc = daemon.client()
    make_host(rpc, "gpu-a", vcpus=64, memory_mb=262144, disk_gb=1000, gpus=[{"model": "A100-40GB"}])
    for n in ("cpu-a", "cpu-b"):
        make_host(rpc, n)
    bob = keystone_server.cli_env("bob")
    virtual = openstack_cli.json(
        bob, "reservation", "lease", "create", "--reservation",
        "resource_type=virtual:instance,vcpus=2,memory_mb=1024,disk_gb=10,amount=3,affinity=False",
        "--start-date", "2030-01-01 01:00", "--end-date", "2030-01-01 02:00", "vms")
    # The CLI prints reservations as text; their fields, as a client library reads them:
    tok = token(keystone_server, "bob")
    r = rest("GET", api + f"/leases/{virtual['id']}", tok).body["lease"]["reservations"][0]
    assert r["resource_type"] == "virtual:instance" and r["amount"] == 3 and r["affinity"] is False
    assert r["flavor_id"] == r["id"]
    flavored = openstack_cli.json(
        bob, "reservation", "lease", "create", "--reservation",
        "resource_type=flavor:instance,flavor_id=g1.mig,amount=2",
        "--start-date", "2030-01-01 01:00", "--end-date", "2030-01-01 02:00", "gpus")
    r = rest("GET", api + f"/leases/{flavored['id']}", tok).body["lease"]["reservations"][0]
    assert r["resource_type"] == "flavor:instance" and r["flavor_id"] == r["id"]
    assert (r["vcpus"], r["memory_mb"], r["disk_gb"]) == (4, 16384, 40)
    assert json.loads(r["resource_properties"])["id"] == "g1.mig"
    # Berth reserved one MIG slice per instance, as the flavor's extra spec asks.
    berth = rpc.call("lease.get", {"id": flavored["id"]})["reservations"][0]
    assert berth["gpu_profile"] == "1g.5gb" and berth["source_flavor"]["id"] == "g1.mig"
    assert sum(1 for a in berth["allocations"] if "gpu" in a) == 2
    # A flavor the cloud does not have: refused, nothing stored.
    e = openstack_cli.run(bob, "reservation", "lease", "create", "--reservation",
                          "resource_type=flavor:instance,flavor_id=nope,amount=1", "--end-date",
                          "2030-01-01 02:00", "bad", check=False)
    assert e.returncode == 1 and "the cloud has no flavor 'nope'" in e.stderr_clean
    assert sorted(x["name"] for x in openstack_cli.json(bob, "reservation", "lease", "list")) == ["gpus", "vms"]


def test_projects_and_roles(api, daemon, keystone_server, openstack_cli):
    rpc = daemon.client()
    for n in ("n1", "n2"):
        make_host(rpc, n)
    alice, carol, bob = (keystone_server.cli_env(u) for u in ("alice", "carol", "bob"))
    appcred = keystone_server.cli_env("alice", auth="appcred")
    lease = openstack_cli.json(appcred, "reservation", "lease", "create", "--reservation",
                               "resource_type=physical:host,min=1,max=1", "--start-date", "2030-01-01 01:00",
                               "--end-date", "2030-01-01 02:00", "shared")
    # carol reads science's leases but may not change them.
    assert [x["id"] for x in openstack_cli.json(carol, "reservation", "lease", "list")] == [lease["id"]]
    assert openstack_cli.json(carol, "reservation", "lease", "show", lease["id"])["name"] == "shared"
    e = openstack_cli.run(carol, "reservation", "lease", "delete", lease["id"], check=False)
    assert e.returncode == 1 and "Policy doesn't allow" in e.stderr_clean
    e = openstack_cli.run(carol, "reservation", "lease", "create", "--reservation",
                          "resource_type=physical:host,min=1,max=1", "--end-date", "2030-01-01 02:00", "x",
                          check=False)
    assert e.returncode == 1 and "Policy doesn't allow blazar:leases:post" in e.stderr_clean
    # bob (physics) does not see it at all.
    assert openstack_cli.json(bob, "reservation", "lease", "list") == []
    e = openstack_cli.run(bob, "reservation", "lease", "show", lease["id"], check=False)
    assert e.returncode == 1 and "not found" in e.stderr_clean
    e = openstack_cli.run(bob, "reservation", "lease", "delete", lease["id"], check=False)
    assert e.returncode == 1 and "not found" in e.stderr_clean
    # The admin sees every project's.
    admin = keystone_server.cli_env("rest-admin")
    assert [x["id"] for x in openstack_cli.json(admin, "reservation", "lease", "list")] == [lease["id"]]
    assert rpc.call("lease.get", {"id": lease["id"]})["status"] == "pending"
    # Capacity: Blazar's 500 and text, which clients match.
    e = openstack_cli.run(alice, "reservation", "lease", "create", "--reservation",
                          "resource_type=physical:host,min=2,max=2", "--start-date", "2030-01-01 01:00",
                          "--end-date", "2030-01-01 02:00", "toomany", check=False)
    assert e.returncode == 1 and "ERROR: Not enough hosts available" in e.stderr_clean


def test_blazarclient_library(api, daemon, keystone_server, openstack_cli):
    """python-blazarclient's library calls, as blazar-dashboard and python-chi make them."""
    make_host(daemon.client(), "lib-1")
    env = keystone_server.cli_env("dave")
    out = openstack_cli.blazarclient(env, """
lease = client.lease.create(name="chi-lease", start="2030-01-01 01:00", end="2030-01-01 02:00",
    reservations=[{"resource_type": "physical:host", "min": 1, "max": 1,
                   "hypervisor_properties": "", "resource_properties": ""}], events=[])
listed = client.lease.list()
shown = client.lease.get(lease["id"])
updated = client.lease.update(lease["id"], prolong_for="30m")
client.lease.delete(lease["id"])
result = {"lease": lease, "listed": listed, "shown": shown, "updated": updated, "after": client.lease.list()}
""")
    assert out["lease"]["name"] == "chi-lease" and out["lease"]["status"] == "PENDING"
    assert [x["id"] for x in out["listed"]] == [out["lease"]["id"]] and out["shown"]["id"] == out["lease"]["id"]
    assert out["updated"]["end_date"] == "2030-01-01T02:30:00.000000"
    assert out["after"] == []


# ------------------------------------------------------------------------------------------------
# Tokens, bodies and outages: raw HTTP
# ------------------------------------------------------------------------------------------------

def test_versions_and_unknown_routes(api, keystone_server):
    tok = token(keystone_server, "alice")
    r = rest("GET", api.removesuffix("/v1") + "/", tok)
    assert r.status == 300 and r.body["versions"][0]["id"] == "v1.0"
    assert r.body["versions"][0]["links"][0]["href"].endswith("/v1")
    assert blazar_error(rest("GET", api + "/nothing-here", tok), 404)
    assert "Floating IP" in blazar_error(rest("GET", api + "/floatingips", tok), 501)


def test_tokens(api, daemon, keystone_server):
    make_host(daemon.client(), "t1")
    assert blazar_error(rest("GET", api + "/leases", None), 401)
    assert blazar_error(rest("GET", api + "/leases", "not-a-token"), 401)
    assert blazar_error(rest("GET", api + "/leases", "x" * 9000), 401)
    fresh = token(keystone_server, "alice")
    assert rest("GET", api + "/leases", fresh).status == 200
    # A token revoked before Berth ever saw it is refused (Berth asks Keystone, it does not guess).
    revoked = token(keystone_server, "alice")
    assert keystone_server.revoke(revoked)
    r = rest("GET", api + "/leases", revoked)
    assert blazar_error(r, 401) and r.header("www-authenticate")


def test_a_cached_token_is_refused_once_it_expires(daemon, tmp_path, keystone_factory):
    """Tokens that live 5 s: the first request validates and caches it (cache_s 300); once Keystone's
    expiry has passed, the cache does not answer for it any more and the token is refused."""
    short = keystone_factory(expiration=5)
    short.users()
    url = start(daemon, tmp_path, short)
    make_host(daemon.client(), "x1")
    tok = token(short, "alice")
    assert short.validate(tok) is not None
    assert rest("GET", url + "/leases", tok).status == 200
    r = wait_until(lambda: (x := rest("GET", url + "/leases", tok)).status != 200 and x,
                   "the expired token refused", timeout=30, interval=0.5)
    assert blazar_error(r, 401)
    short.unregister_reservation()


def test_bad_bodies_store_nothing(api, daemon, keystone_server):
    rpc = daemon.client()
    make_host(rpc, "b1")
    tok = token(keystone_server, "alice")
    url = api + "/leases"
    good = {"name": "ok", "start_date": "2030-01-01 01:00", "end_date": "2030-01-01 02:00", "events": [],
            "reservations": [{"resource_type": "physical:host", "min": 1, "max": 1,
                              "hypervisor_properties": "", "resource_properties": ""}]}

    def bad(change: dict, status: int = 400) -> str:
        return blazar_error(rest("POST", url, tok, {**good, **change}), status)

    assert bad({"name": None}) == "Missing parameter name"
    assert bad({"start_date": "2030-01-01T01:00:00"}) == \
        "2030-01-01T01:00:00 is an invalid date. Required format: %Y-%m-%d %H:%M"
    assert bad({"end_date": "2030-01-01 00:30"}) == "End date must be later than start date."
    assert bad({"start_date": "2029-12-31 23:00"}) == "Start date must be later than current date"
    assert bad({"reservations": [{"resource_type": "physical:host", "min": "x", "max": 1}]}) == \
        "Malformed parameter min"
    assert bad({"reservations": [{"resource_type": "physical:host", "min": 3, "max": 1}]}).startswith(
        "Invalid values for min/max of hosts")
    assert bad({"reservations": [{"resource_type": "physical:host"}]}) == "Missing parameter min, max"
    assert bad({"reservations": [{"resource_type": "network:segment"}]}) == \
        "The network:segment resource type is not supported"
    assert bad({"reservations": [{"resource_type": "physical:host", "min": 1, "max": 1,
                                  "resource_properties": "[\"==\", "}]}).startswith(
        "Malformed parameter resource_properties")
    assert blazar_error(rest("POST", url, tok, raw=b'{"name": '), 400).startswith("The request body is not valid JSON")
    assert blazar_error(rest("POST", url, tok, raw=b"[1, 2]"), 400)
    assert blazar_error(rest("POST", url, tok, raw=b"x" * (2 << 20)), 413)
    assert blazar_error(rest("POST", url, tok, raw=b"name=x", headers={"Content-Type": "text/plain"}), 400)
    # Capacity: Blazar's 500, with Berth's facts beside it.
    r = rest("POST", url, tok, {**good, "reservations": [{**good["reservations"][0], "min": 2, "max": 2}]})
    assert blazar_error(r, 500) == "Not enough hosts available" and r.body["reason"] == "no_capacity"
    assert rpc.call("lease.list", {})["items"] == []
    assert daemon.running
    assert rest("POST", url, tok, good).status == 201


def test_azimuth_schedule_operator_flow(daemon, tmp_path, keystone_server):
    """What azimuth-schedule-operator does, over real Nova's API shapes (the emulator) and the
    openstack adapter: a flavor:instance lease starting now, polled by name until ACTIVE, its
    reservation's flavor found in Nova's flavor list, then deleted and re-listed until gone."""
    keystone_server.users()
    nova = NovaEmulator(hosts=("c1", "c2"), token_validator=keystone_server.validate, build_delay=0.1,
                        delete_delay=0.1)
    nova.start()
    try:
        keystone_server.register_compute(nova.url)
        clouds = tmp_path / "clouds.yaml"
        keystone_server.clouds_yaml(clouds, auth="password", cloud="berth-test")
        adapter = {"adapter": "openstack", "openstack": {"cloud": "berth-test", "clouds_file": str(clouds),
                                                         "reconcile_interval_s": 0}}
        url = start(daemon, tmp_path, keystone_server, adapter=adapter)
        rpc = daemon.client()
        for h in ("c1", "c2"):
            make_host(rpc, h)
        admin_tok = keystone_server.admin_token()
        r = http_request("POST", nova.url + "/flavors", headers={"X-Auth-Token": admin_tok,
                         "OpenStack-API-Version": "compute 2.79"},
                         body={"flavor": {"name": "az.small", "id": "az-small", "vcpus": 2, "ram": 4096, "disk": 20}})
        assert r.status == 200, r.body
        u = keystone_server.rest_user("alice")
        tok = keystone_server.issue_token(username=u.name, password=u.password, project=u.project)
        body = {"name": "az-cluster", "start_date": "now", "end_date": "2030-01-01 06:00", "events": [],
                "before_end_date": None,
                "reservations": [{"amount": 2, "flavor_id": "az-small", "resource_type": "flavor:instance",
                                  "affinity": "None"}]}
        r = rest("POST", url + "/leases", tok, body)
        assert r.status == 201 and r.header("content-type") == "application/json", r.body

        def by_name():
            leases = rest("GET", url + "/leases", tok).body["leases"]
            return next((x for x in leases if x["name"] == "az-cluster"), None)

        lease = wait_until(lambda: (x := by_name()) and x["status"] == "ACTIVE" and x, "the lease ACTIVE")
        res = lease["reservations"][0]
        assert json.loads(res["resource_properties"])["id"] == "az-small"
        # The reserved flavor (id = reservation id) is in the project's flavor list.
        flavors = http_request("GET", nova.url + "/flavors", headers={"X-Auth-Token": tok}).body["flavors"]
        assert res["id"] in {f["id"] for f in flavors}
        assert rest("DELETE", url + f"/leases/{lease['id']}", tok).status == 204
        wait_until(lambda: by_name() is None, "the lease gone from the list")
    finally:
        keystone_server.unregister_compute()
        nova.stop()


def test_keystone_outage_is_503_and_in_health(daemon, tmp_path, keystone_server):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  dead:\n    auth:\n      auth_url: http://127.0.0.1:%d/v3\n      username: x\n"
        "      password: y\n      project_name: p\n      user_domain_name: Default\n"
        "      project_domain_name: Default\n" % dead)
    daemon.start(config={"blazar_api": {"listen": "127.0.0.1:0", "auth": "keystone",
                                        "keystone": {"cloud": "dead", "clouds_file": str(clouds)}}})
    url = wait_until(lambda: LISTEN_RE.search(daemon.log_text()), "the blazar api listening line").group(1)
    r = rest("GET", url + "/leases", "some-token")
    assert blazar_error(r, 503) == "The Keystone service is temporarily unavailable."
    health = daemon.client().call("system.health")
    assert health["keystone"] == "unreachable" and "keystone_problem" in health


# ------------------------------------------------------------------------------------------------
# noauth (make run)
# ------------------------------------------------------------------------------------------------

def test_noauth_as_make_run_prints_it(daemon, openstack_cli):
    daemon.start(args=["--demo", "--blazar-listen", "127.0.0.1:0", "--blazar-auth", "noauth"])
    url = wait_until(lambda: LISTEN_RE.search(daemon.log_text()), "the blazar api listening line").group(1)
    env = noauth_env(url, "admin:p1")
    assert openstack_cli.json(env, "reservation", "lease", "list") == []
    lease = openstack_cli.json(env, "reservation", "lease", "create", "--reservation",
                               "resource_type=flavor:instance,flavor_id=m1.small,amount=2",
                               "--end-date", "2030-01-02 00:00", "demo")
    assert lease["project_id"] == "p1" and lease["status"] in ("ACTIVE", "STARTING")
    assert [h["hypervisor_hostname"] for h in openstack_cli.json(env, "reservation", "host", "list")][:2] == \
        ["compute-01", "compute-02"]
    # Another user's token is another project; not admin.
    other = noauth_env(url, "eve:p2")
    assert openstack_cli.json(other, "reservation", "lease", "list") == []
    e = openstack_cli.run(other, "reservation", "host", "list", check=False)
    assert e.returncode == 1 and "Policy doesn't allow" in e.stderr_clean


def test_noauth_only_on_loopback(daemon):
    daemon.start(args=["--blazar-listen", "0.0.0.0:0", "--blazar-auth", "noauth"], wait_ready=False)
    assert daemon.wait_exit() == 1
    assert "is not a loopback address" in daemon.log_text() and "noauth" in daemon.log_text()


def test_tls(daemon, tmp_path, openstack_cli):
    """With `tls.cert` and `tls.key` the listener speaks HTTPS only; the CLI trusts it with --os-cacert."""
    import shutil
    import ssl
    import subprocess
    import urllib.request

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "api.pem", tmp_path / "api.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    daemon.start(args=["--demo"], config={"blazar_api": {"listen": "127.0.0.1:0", "auth": "noauth",
                                                         "tls": {"cert": str(cert), "key": str(key)}}})
    url = wait_until(lambda: LISTEN_RE.search(daemon.log_text()), "the blazar api listening line").group(1)
    assert url.startswith("https://127.0.0.1:")
    ctx = ssl.create_default_context(cafile=str(cert))
    req = urllib.request.Request(url + "/leases", headers={"X-Auth-Token": "admin:p1"})
    with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
        assert r.status == 200 and json.loads(r.read()) == {"leases": []}
    # Plain HTTP on the same port gets no Blazar answer.
    with pytest.raises(Exception):
        http_request("GET", url.replace("https://", "http://") + "/leases", headers={"X-Auth-Token": "admin:p1"},
                     timeout=5)
    env = noauth_env(url, "admin:p1")
    env["OS_CACERT"] = str(cert)
    assert len(openstack_cli.json(env, "reservation", "host", "list")) == 8
    # A certificate that cannot be read stops berthd at start, naming the problem.
    daemon.terminate()
    daemon.start(config={"blazar_api": {"listen": "127.0.0.1:0", "auth": "noauth",
                                        "tls": {"cert": str(tmp_path / "missing.pem"), "key": str(key)}}},
                 wait_ready=False)
    assert daemon.wait_exit() == 1
    assert "cannot read the TLS certificate or key" in daemon.log_text()
