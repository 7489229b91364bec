"""Tests of the Nova emulator itself (no berthd): every endpoint's happy path and documented
errors, microversion and auth handling, asynchronous server states, the scheduler filters it
models, fault injection (5xx with Retry-After, outage, hang, latency) and concurrency."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.parse

import pytest

from support.nova_emulator import NovaEmulator

IMAGE = "6b6e2a4e-0000-4000-8000-000000000001"
NET = "0d1f8a7c-1111-4222-8333-444455556666"
ADMIN = "admin-token"
P1 = "p1-token"
P2 = "p2-token"


class Reply:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.body = json.loads(raw) if raw else None
        except ValueError:
            self.body = raw.decode("utf-8", "replace")

    def __repr__(self):
        return "Reply(%s, %r)" % (self.status, self.body)


def call(emu, method, path, body=None, token=ADMIN, version="2.79", headers=None, timeout=5.0,
         raw_body=None, url=None):
    """One request over a fresh connection. `path` is relative to the compute endpoint unless it
    starts with '//' (then relative to the root)."""
    target = urllib.parse.urlsplit(url or emu.url)
    full = path[1:] if path.startswith("//") else target.path + path
    conn = http.client.HTTPConnection(target.hostname, target.port, timeout=timeout)
    h = {"Accept": "application/json"}
    if token is not None:
        h["X-Auth-Token"] = token
    if version is not None:
        h["OpenStack-API-Version"] = "compute " + version
    data = raw_body
    if body is not None:
        data = json.dumps(body).encode()
    if data is not None:
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    try:
        conn.request(method, full, body=data, headers=h)
        r = conn.getresponse()
        return Reply(r.status, r.headers, r.read())
    finally:
        conn.close()


def fault(reply, name, code):
    assert reply.status == code, reply
    assert set(reply.body) == {name}, reply.body
    assert reply.body[name]["code"] == code
    return reply.body[name]["message"]


@pytest.fixture
def emu():
    e = NovaEmulator(hosts=["h1", "h2", "h3"], build_delay=0.2, delete_delay=0.3)
    e.add_token(ADMIN, project_id="admin", roles=["admin", "member"], user_id="u-admin")
    e.add_token(P1, project_id="p1", roles=["member"], user_id="u1")
    e.add_token(P2, project_id="p2", roles=["member", "reader"], user_id="u2")
    e.start()
    yield e
    e.stop()


def make_flavor(emu, fid="f1", name=None, public=True, extra=None, disk=10, **kw):
    flavor = {"name": name or "flavor-" + fid, "ram": 1024, "vcpus": 2, "disk": disk, "id": fid,
              "os-flavor-access:is_public": public}
    flavor.update(kw)
    r = call(emu, "POST", "/flavors", {"flavor": flavor})
    assert r.status == 200, r
    if extra:
        assert call(emu, "POST", "/flavors/%s/os-extra_specs" % fid, {"extra_specs": extra}).status == 200
    return r.body["flavor"]


def server_body(name="vm", flavor="f1", **kw):
    s = {"name": name, "flavorRef": flavor, "imageRef": IMAGE, "networks": [{"uuid": NET}]}
    s.update(kw)
    return {"server": s}


def wait_status(emu, sid, status, token=ADMIN, timeout=5.0):
    def check():
        r = call(emu, "GET", "/servers/" + sid, token=token)
        return r if r.status == 200 and r.body["server"]["status"] == status else None
    return emu.wait_for(check, timeout=timeout)


def wait_gone(emu, sid, timeout=5.0):
    return emu.wait_for(lambda: call(emu, "GET", "/servers/" + sid).status == 404, timeout=timeout)


# ------------------------------------------------------------------------------------------
# Versions, microversions, auth
# ------------------------------------------------------------------------------------------


def test_version_documents_need_no_token(emu):
    r = call(emu, "GET", "//", token=None, version=None)
    assert r.status == 200
    v21 = [v for v in r.body["versions"] if v["id"] == "v2.1"][0]
    assert (v21["status"], v21["min_version"], v21["version"]) == ("CURRENT", "2.1", "2.96")
    for path in ("//v2.1", "//v2.1/"):
        r = call(emu, "GET", path, token=None, version=None)
        assert r.status == 200
        doc = r.body["version"]
        assert doc["id"] == "v2.1" and doc["version"] == "2.96" and doc["min_version"] == "2.1"
        assert doc["media-types"][0]["type"] == "application/vnd.openstack.compute+json;version=2.1"


def test_microversion_negotiation_and_headers(emu):
    call(emu, "POST", "/os-aggregates", {"aggregate": {"name": "a"}})
    r = call(emu, "GET", "/os-aggregates", version=None)          # no header: 2.1
    assert r.headers["OpenStack-API-Version"] == "compute 2.1"
    assert r.headers["X-OpenStack-Nova-API-Version"] == "2.1"
    assert "OpenStack-API-Version" in r.headers["Vary"]
    assert "uuid" not in r.body["aggregates"][0]                  # uuid needs 2.41
    r = call(emu, "GET", "/os-aggregates", version=None,
             headers={"X-OpenStack-Nova-API-Version": "2.79"})    # legacy header
    assert r.headers["OpenStack-API-Version"] == "compute 2.79"
    assert "uuid" in r.body["aggregates"][0]
    r = call(emu, "GET", "/os-aggregates", version=None,
             headers={"OpenStack-API-Version": "volume 3.5, compute 2.79"})
    assert r.headers["OpenStack-API-Version"] == "compute 2.79"
    r = call(emu, "GET", "/os-aggregates", version="latest")
    assert r.headers["OpenStack-API-Version"] == "compute 2.96"
    assert emu.requests[-1].version == "2.96"


def test_unsupported_and_malformed_versions(emu):
    for v in ("3.0", "2.97", "1.9"):
        r = call(emu, "GET", "/os-aggregates", version=v)
        msg = fault(r, "computeFault", 406)
        assert msg == "Version %s is not supported by the API. Minimum is 2.1 and maximum is 2.96." % v
    for v in ("2.x", "2.01", "two"):
        r = call(emu, "GET", "/os-aggregates", version=v)
        msg = fault(r, "badRequest", 400)
        assert msg == ("API Version String %s is of invalid format. Must be of format "
                       "MajorNum.MinorNum." % v)
    narrow = NovaEmulator(hosts=["h1"], min_version="2.1", max_version="2.79").start()
    try:
        narrow.valid_tokens.add("t")
        assert call(narrow, "GET", "/os-aggregates", token="t", version="2.80").status == 406
        assert call(narrow, "GET", "/os-aggregates", token="t", version="2.79").status == 200
    finally:
        narrow.stop()


def test_missing_or_invalid_token_is_401(emu):
    r = call(emu, "GET", "/os-aggregates", token=None)
    assert r.status == 401
    assert r.body == {"error": {"code": 401, "title": "Unauthorized",
                                "message": "The request you have made requires authentication."}}
    assert call(emu, "GET", "/servers/detail", token="forged").status == 401
    emu.valid_tokens.add("plain")                                 # the set: admin of "admin"
    assert call(emu, "GET", "/os-aggregates", token="plain").status == 200
    assert [r.status for r in emu.requests[-3:]] == [401, 401, 200]


def test_token_validator_decides(emu):
    seen = []

    def validator(token):
        seen.append(token)
        if token == "kadmin":   # a Keystone token body
            return {"token": {"project": {"id": "admin"}, "user": {"id": "u"},
                              "roles": [{"name": "admin"}, {"name": "member"}]}}
        if token == "kuser":
            return {"project_id": "p9", "roles": ["member"], "user_id": "u9"}
        if token == "boom":
            raise ConnectionError("keystone down")
        return None

    e = NovaEmulator(hosts=["h1"], token_validator=validator).start()
    try:
        e.valid_tokens.add("ignored")   # the validator wins over the set
        assert call(e, "GET", "/os-aggregates", token="kadmin").status == 200
        fault(call(e, "GET", "/os-aggregates", token="kuser"), "forbidden", 403)
        assert call(e, "GET", "/os-aggregates", token="ignored").status == 401
        r = call(e, "GET", "/os-aggregates", token="boom")
        assert r.status == 503 and r.body["error"]["code"] == 503
        assert seen == ["kadmin", "kuser", "ignored", "boom"]
    finally:
        e.stop()


def test_admin_only_operations_are_403_for_members(emu):
    checks = [
        ("GET", "/os-aggregates", None, "os_compute_api:os-aggregates:index"),
        ("POST", "/os-aggregates", {"aggregate": {"name": "x"}}, "os_compute_api:os-aggregates:create"),
        ("POST", "/flavors", {"flavor": {"name": "x", "ram": 1, "vcpus": 1, "disk": 1}},
         "os_compute_api:os-flavor-manage:create"),
        ("GET", "/os-services", None, "os_compute_api:os-services:list"),
        ("GET", "/servers/detail?all_tenants=1", None, "os_compute_api:servers:detail:get_all_tenants"),
        ("POST", "/servers", server_body(host="h1"), "compute:servers:create:requested_destination"),
    ]
    make_flavor(emu)
    for method, path, body, rule in checks:
        msg = fault(call(emu, method, path, body, token=P1), "forbidden", 403)
        assert msg == "Policy doesn't allow %s to be performed." % rule
    # schema validation comes before the policy check, as in Nova
    r = call(emu, "POST", "/os-aggregates", {"aggregate": {"name": "x", "bogus": 1}}, token=P1)
    assert r.status == 400


def test_unknown_route_and_project_id_in_url(emu):
    fault(call(emu, "GET", "/os-nothing"), "itemNotFound", 404)
    assert call(emu, "PUT", "/os-aggregates").status == 404
    assert call(emu, "GET", "/admin/os-aggregates").status == 200
    msg = fault(call(emu, "GET", "/someone-else/os-aggregates"), "badRequest", 400)
    assert "doesn't match Context's project_id 'admin'" in msg


# ------------------------------------------------------------------------------------------
# Aggregates
# ------------------------------------------------------------------------------------------


def test_aggregate_lifecycle(emu):
    r = call(emu, "POST", "/os-aggregates", {"aggregate": {"name": "res-1"}})
    assert r.status == 200
    agg = r.body["aggregate"]
    assert "hosts" not in agg and "metadata" not in agg            # as Nova's create answer
    assert isinstance(agg["id"], int) and agg["uuid"] and agg["availability_zone"] is None
    aid = agg["id"]
    r = call(emu, "POST", "/os-aggregates/%d/action" % aid, {"add_host": {"host": "h1"}})
    assert r.status == 200 and r.body["aggregate"]["hosts"] == ["h1"]
    call(emu, "POST", "/os-aggregates/%d/action" % aid, {"add_host": {"host": "h2"}})
    r = call(emu, "POST", "/os-aggregates/%d/action" % aid,
             {"set_metadata": {"metadata": {"reservation": "r1", "filter_tenant_id": "p1",
                                            "scratch": "x"}}})
    assert r.body["aggregate"]["metadata"] == {"reservation": "r1", "filter_tenant_id": "p1",
                                               "scratch": "x"}
    r = call(emu, "POST", "/os-aggregates/%d/action" % aid,
             {"set_metadata": {"metadata": {"scratch": None, "missing": None}}})
    assert r.body["aggregate"]["metadata"] == {"reservation": "r1", "filter_tenant_id": "p1"}
    r = call(emu, "GET", "/os-aggregates/%d" % aid)
    assert r.body["aggregate"]["hosts"] == ["h1", "h2"]
    assert [a["name"] for a in call(emu, "GET", "/os-aggregates").body["aggregates"]] == ["res-1"]
    for h in ("h1", "h2"):
        r = call(emu, "POST", "/os-aggregates/%d/action" % aid, {"remove_host": {"host": h}})
        assert r.status == 200
    r = call(emu, "DELETE", "/os-aggregates/%d" % aid)
    assert r.status == 200 and r.raw == b""
    assert emu.aggregates() == []


def test_aggregate_errors(emu):
    aid = call(emu, "POST", "/os-aggregates", {"aggregate": {"name": "a"}}).body["aggregate"]["id"]
    act = "/os-aggregates/%d/action" % aid
    assert fault(call(emu, "POST", "/os-aggregates", {"aggregate": {"name": "a"}}),
                 "conflictingRequest", 409) == "Aggregate a already exists."
    assert fault(call(emu, "POST", act, {"add_host": {"host": "nope"}}),
                 "itemNotFound", 404) == "Compute host nope could not be found."
    call(emu, "POST", act, {"add_host": {"host": "h1"}})
    assert fault(call(emu, "POST", act, {"add_host": {"host": "h1"}}),
                 "conflictingRequest", 409) == "Aggregate %d already has host h1." % aid
    assert fault(call(emu, "POST", act, {"remove_host": {"host": "h2"}}),
                 "itemNotFound", 404) == "Cannot remove host h2 in aggregate %d" % aid
    assert fault(call(emu, "DELETE", "/os-aggregates/%d" % aid), "badRequest", 400) == (
        "Cannot remove host from aggregate %d. Reason: Host aggregate is not empty." % aid)
    assert fault(call(emu, "DELETE", "/os-aggregates/999"), "itemNotFound", 404) == \
        "Aggregate 999 could not be found."
    assert fault(call(emu, "GET", "/os-aggregates/999"), "itemNotFound", 404) == \
        "Aggregate 999 could not be found."
    assert fault(call(emu, "POST", "/os-aggregates/999/action", {"add_host": {"host": "h1"}}),
                 "itemNotFound", 404) == "Aggregate 999 could not be found."
    assert fault(call(emu, "GET", "/os-aggregates/abc"), "badRequest", 400) == \
        "Invalid input received: id must be an integer"
    assert fault(call(emu, "POST", act, {"explode": {}}), "badRequest", 400) == \
        "There is no such action: explode"
    assert fault(call(emu, "POST", act, {"add_host": {"host": "h2"}, "remove_host": {"host": "h1"}}),
                 "badRequest", 400) == "Malformed request body"
    assert fault(call(emu, "POST", act, raw_body=b"{not json"), "badRequest", 400) == \
        "Malformed request body"
    msg = fault(call(emu, "POST", act, {"add_host": {"host": "h2", "zone": "x"}}), "badRequest", 400)
    assert msg.endswith("Additional properties are not allowed ('zone' was unexpected)")
    msg = fault(call(emu, "POST", "/os-aggregates", {"aggregate": {"name": " padded"}}),
                "badRequest", 400)
    assert msg.startswith("An invalid 'name' value was provided.")
    msg = fault(call(emu, "POST", act, {"set_metadata": {"metadata": {"bad key!": "v"}}}),
                "badRequest", 400)
    assert "bad key!" in msg
    assert fault(call(emu, "POST", "/os-aggregates", {"aggregate": {}}), "badRequest", 400) == \
        "Invalid input for field/attribute aggregate. Value: {}. 'name' is a required property"
    assert call(emu, "POST", "/os-aggregates", None).status == 400   # empty body
    assert emu.aggregates()[0]["hosts"] == ["h1"]                     # nothing changed


def test_aggregate_availability_zone_conflict(emu):
    a = call(emu, "POST", "/os-aggregates", {"aggregate": {"name": "a", "availability_zone": "az1"}})
    assert a.body["aggregate"]["availability_zone"] == "az1"
    b = call(emu, "POST", "/os-aggregates", {"aggregate": {"name": "b", "availability_zone": "az2"}})
    a_id, b_id = a.body["aggregate"]["id"], b.body["aggregate"]["id"]
    call(emu, "POST", "/os-aggregates/%d/action" % a_id, {"add_host": {"host": "h1"}})
    msg = fault(call(emu, "POST", "/os-aggregates/%d/action" % b_id, {"add_host": {"host": "h1"}}),
                "conflictingRequest", 409)
    assert msg == ("Cannot add host to aggregate %d. Reason: One or more hosts already in "
                   "availability zone(s) ['az1']." % b_id)
    r = call(emu, "GET", "/os-aggregates/%d" % a_id)
    assert r.body["aggregate"]["metadata"] == {"availability_zone": "az1"}


# ------------------------------------------------------------------------------------------
# Flavors
# ------------------------------------------------------------------------------------------


def test_flavor_lifecycle(emu):
    r = call(emu, "POST", "/flavors", {"flavor": {
        "name": "res-r1", "ram": "2048", "vcpus": 4, "disk": 0, "id": "res-r1",
        "os-flavor-access:is_public": False, "description": "reservation r1", "swap": 0,
        "OS-FLV-EXT-DATA:ephemeral": 0, "rxtx_factor": 1.0}})
    assert r.status == 200
    f = r.body["flavor"]
    assert (f["id"], f["ram"], f["vcpus"], f["os-flavor-access:is_public"]) == ("res-r1", 2048, 4, False)
    assert f["description"] == "reservation r1" and f["extra_specs"] == {} and f["swap"] == 0
    assert call(emu, "GET", "/flavors/res-r1").body["flavor"]["name"] == "res-r1"
    # the admin's default listing shows public flavors (and those its project can use)
    ids = [x["id"] for x in call(emu, "GET", "/flavors/detail").body["flavors"]]
    assert "res-r1" not in ids
    ids = [x["id"] for x in call(emu, "GET", "/flavors/detail?is_public=None").body["flavors"]]
    assert ids == ["res-r1"]
    spec = {"aggregate_instance_extra_specs:reservation": "r1", "resources:CUSTOM_MIG_1G": 1}
    r = call(emu, "POST", "/flavors/res-r1/os-extra_specs", {"extra_specs": spec})
    assert r.status == 200 and r.body == {"extra_specs": spec}
    r = call(emu, "GET", "/flavors/res-r1/os-extra_specs")
    assert r.body == {"extra_specs": {"aggregate_instance_extra_specs:reservation": "r1",
                                      "resources:CUSTOM_MIG_1G": "1"}}
    r = call(emu, "GET", "/flavors/res-r1/os-extra_specs/resources:CUSTOM_MIG_1G")
    assert r.body == {"resources:CUSTOM_MIG_1G": "1"}
    assert call(emu, "DELETE", "/flavors/res-r1/os-extra_specs/resources:CUSTOM_MIG_1G").status == 200
    r = call(emu, "POST", "/flavors/res-r1/action", {"addTenantAccess": {"tenant": "p1"}})
    assert r.status == 200 and r.body == {"flavor_access": [{"flavor_id": "res-r1", "tenant_id": "p1"}]}
    r = call(emu, "GET", "/flavors/res-r1/os-flavor-access")
    assert r.body == {"flavor_access": [{"flavor_id": "res-r1", "tenant_id": "p1"}]}
    r = call(emu, "POST", "/flavors/res-r1/action", {"removeTenantAccess": {"tenant": "p1"}})
    assert r.status == 200 and r.body == {"flavor_access": []}
    r = call(emu, "DELETE", "/flavors/res-r1")
    assert r.status == 202 and r.raw == b""
    assert fault(call(emu, "GET", "/flavors/res-r1"), "itemNotFound", 404) == \
        "Flavor res-r1 could not be found."


def test_flavor_errors(emu):
    make_flavor(emu, "f1", name="small")
    make_flavor(emu, "priv", public=False)
    assert fault(call(emu, "POST", "/flavors", {"flavor": {"name": "small", "ram": 1, "vcpus": 1,
                                                            "disk": 1}}),
                 "conflictingRequest", 409) == "Flavor with name small already exists."
    assert fault(call(emu, "POST", "/flavors", {"flavor": {"name": "other", "ram": 1, "vcpus": 1,
                                                            "disk": 1, "id": "f1"}}),
                 "conflictingRequest", 409) == "Flavor with ID f1 already exists."
    msg = fault(call(emu, "POST", "/flavors", {"flavor": {"name": "x", "ram": 1, "vcpus": 1,
                                                           "disk": 1, "color": "red"}}),
                "badRequest", 400)
    assert msg.endswith("Additional properties are not allowed ('color' was unexpected)")
    msg = fault(call(emu, "POST", "/flavors", {"flavor": {"name": "x", "ram": 0, "vcpus": 1,
                                                           "disk": 1}}), "badRequest", 400)
    assert msg.startswith("Invalid input for field/attribute ram. Value: 0.")
    # description arrives with 2.55
    r = call(emu, "POST", "/flavors", {"flavor": {"name": "x", "ram": 1, "vcpus": 1, "disk": 1,
                                                  "description": "d"}}, version="2.54")
    assert r.status == 400 and "'description' was unexpected" in r.body["badRequest"]["message"]
    assert fault(call(emu, "GET", "/flavors/f1/os-flavor-access"), "itemNotFound", 404) == \
        "Access list not available for public flavors."
    assert fault(call(emu, "POST", "/flavors/f1/action", {"addTenantAccess": {"tenant": "p1"}}),
                 "conflictingRequest", 409) == "Can not add access to a public flavor."
    call(emu, "POST", "/flavors/priv/action", {"addTenantAccess": {"tenant": "p1"}})
    assert fault(call(emu, "POST", "/flavors/priv/action", {"addTenantAccess": {"tenant": "p1"}}),
                 "conflictingRequest", 409) == (
        "Flavor access already exists for flavor priv and project p1 combination.")
    assert fault(call(emu, "POST", "/flavors/priv/action", {"removeTenantAccess": {"tenant": "p2"}}),
                 "itemNotFound", 404) == "Flavor access not found for priv / p2 combination."
    assert fault(call(emu, "POST", "/flavors/nope/action", {"addTenantAccess": {"tenant": "p1"}}),
                 "itemNotFound", 404) == "Flavor nope could not be found."
    assert fault(call(emu, "DELETE", "/flavors/priv/os-extra_specs/missing"), "itemNotFound", 404) == \
        "Flavor priv has no extra specs with key missing."
    assert fault(call(emu, "DELETE", "/flavors/nope"), "itemNotFound", 404) == \
        "Flavor nope could not be found."
    assert fault(call(emu, "GET", "/flavors/detail?is_public=maybe"), "badRequest", 400) == \
        "Invalid is_public filter [maybe]"
    assert fault(call(emu, "POST", "/flavors/f1/os-extra_specs", {"extra_specs": {"k": ["list"]}}),
                 "badRequest", 400)


def test_private_flavor_visibility_follows_access(emu):
    make_flavor(emu, "priv", public=False)
    make_flavor(emu, "pub")
    fault(call(emu, "GET", "/flavors/priv", token=P1), "itemNotFound", 404)
    assert [f["id"] for f in call(emu, "GET", "/flavors/detail?is_public=None",
                                  token=P1).body["flavors"]] == ["pub"]
    assert fault(call(emu, "POST", "/servers", server_body(flavor="priv"), token=P1),
                 "badRequest", 400) == "Invalid flavorRef provided."
    call(emu, "POST", "/flavors/priv/action", {"addTenantAccess": {"tenant": "p1"}})
    assert call(emu, "GET", "/flavors/priv", token=P1).status == 200
    assert [f["id"] for f in call(emu, "GET", "/flavors/detail", token=P1).body["flavors"]] == \
        ["priv", "pub"]
    assert call(emu, "POST", "/servers", server_body(flavor="priv"), token=P1).status == 202
    fault(call(emu, "GET", "/flavors/priv", token=P2), "itemNotFound", 404)


# ------------------------------------------------------------------------------------------
# Servers
# ------------------------------------------------------------------------------------------


def test_server_builds_then_becomes_active_on_the_requested_host(emu):
    make_flavor(emu)
    r = call(emu, "POST", "/servers", server_body(host="h2", metadata={"berth": "pre-1"}))
    assert r.status == 202
    sid = r.body["server"]["id"]
    assert r.headers["Location"].endswith("/v2.1/servers/" + sid)
    assert r.body["server"]["adminPass"] and r.body["server"]["OS-DCF:diskConfig"] == "MANUAL"
    s = call(emu, "GET", "/servers/" + sid).body["server"]
    assert s["status"] == "BUILD" and s["OS-EXT-STS:vm_state"] == "building"
    assert s["OS-EXT-STS:task_state"] in ("scheduling", "spawning")
    s = wait_status(emu, sid, "ACTIVE").body["server"]
    assert s["OS-EXT-SRV-ATTR:host"] == "h2" and s["OS-EXT-STS:task_state"] is None
    assert s["flavor"] == {"vcpus": 2, "ram": 1024, "disk": 10, "ephemeral": 0, "swap": 0,
                           "original_name": "flavor-f1", "extra_specs": {}}
    assert s["tenant_id"] == "admin" and s["metadata"] == {"berth": "pre-1"}
    assert s["hostId"] and s["addresses"]["private"][0]["version"] == 4
    assert emu.server(sid)["host"] == "h2"


def test_server_create_validation(emu):
    make_flavor(emu)
    msg = fault(call(emu, "POST", "/servers", server_body(host="h1"), version="2.73"), "badRequest", 400)
    assert msg.endswith("Additional properties are not allowed ('host' was unexpected)")
    assert fault(call(emu, "POST", "/servers", server_body(host="h9")), "badRequest", 400) == \
        "Compute host h9 could not be found."
    body = server_body()
    del body["server"]["networks"]
    assert fault(call(emu, "POST", "/servers", body), "badRequest", 400) == (
        "Invalid input for field/attribute server. Value: %s. 'networks' is a required property"
        % body["server"])
    assert call(emu, "POST", "/servers", body, version="2.36").status == 202   # optional before 2.37
    msg = fault(call(emu, "POST", "/servers", server_body(colour="red")), "badRequest", 400)
    assert "'colour' was unexpected" in msg
    assert fault(call(emu, "POST", "/servers", server_body(flavor="nope")), "badRequest", 400) == \
        "Invalid flavorRef provided."
    assert fault(call(emu, "POST", "/servers", server_body(imageRef="")), "badRequest", 400) == \
        "Missing imageRef attribute"
    msg = fault(call(emu, "POST", "/servers", server_body(imageRef="not-a-uuid")), "badRequest", 400)
    assert msg.startswith("Invalid input for field/attribute imageRef.")
    body = server_body()
    body["extra"] = 1
    assert fault(call(emu, "POST", "/servers", body),
                 "badRequest", 400) == "Additional properties are not allowed ('extra' was unexpected)"
    make_flavor(emu, "zero", disk=0)
    assert fault(call(emu, "POST", "/servers", server_body(flavor="zero"), token=P1),
                 "forbidden", 403) == "Only volume-backed servers are allowed for flavors with zero disk."
    assert call(emu, "POST", "/servers", server_body(flavor="zero", networks="none")).status == 202


def test_server_delete_takes_time_and_repeats_are_accepted(emu):
    make_flavor(emu)
    sid = emu.boot("p1", "f1", "h1", "user-vm")
    assert call(emu, "DELETE", "/servers/" + sid).status == 204
    s = call(emu, "GET", "/servers/" + sid).body["server"]
    assert (s["status"], s["OS-EXT-STS:task_state"]) == ("ACTIVE", "deleting")
    r = call(emu, "DELETE", "/servers/" + sid)
    assert r.status == 204 and r.raw == b""
    wait_gone(emu, sid)
    assert fault(call(emu, "DELETE", "/servers/" + sid), "itemNotFound", 404) == \
        "Instance %s could not be found." % sid
    assert emu.server(sid) is None


def test_server_visibility_and_list_filters(emu):
    make_flavor(emu, "f1")
    make_flavor(emu, "f2")
    a = emu.boot("p1", "f1", "h1", "alpha-1")
    b = emu.boot("p1", "f2", "h2", "beta-1")
    c = emu.boot("p2", "f1", "h1", "alpha-2")
    mine = emu.boot("admin", "f1", "h3", "admin-vm")

    def ids(path, token=ADMIN, version="2.79"):
        r = call(emu, "GET", path, token=token, version=version)
        assert r.status == 200, r
        return {s["id"] for s in r.body["servers"]}

    assert ids("/servers/detail") == {mine}                        # own project only
    assert ids("/servers/detail?all_tenants=1") == {a, b, c, mine}
    assert ids("/servers/detail?all_tenants=1&host=h1") == {a, c}
    assert ids("/servers/detail?all_tenants=1&project_id=p1") == {a, b}
    assert ids("/servers/detail?all_tenants=True&tenant_id=p2") == {c}
    assert ids("/servers/detail?project_id=p1") == {mine}          # ignored without all_tenants
    assert ids("/servers/detail?all_tenants=1&flavor=f2") == {b}
    assert ids("/servers/detail?all_tenants=1&name=^alpha") == {a, c}
    assert ids("/servers/detail?all_tenants=1&status=active") == {a, b, c, mine}
    assert ids("/servers/detail?all_tenants=1&flavor=nope") == set()
    assert ids("/servers", token=P1) == {a, b}
    assert ids("/servers/detail?host=h2", token=P1) == {a, b}      # admin-only filter dropped
    fault(call(emu, "GET", "/servers/" + c, token=P1), "itemNotFound", 404)
    assert fault(call(emu, "GET", "/servers/detail?status=SLEEPY"), "badRequest", 400) == \
        "Invalid status value"
    assert fault(call(emu, "GET", "/servers/detail?colour=red"), "badRequest", 400) == \
        "Additional properties are not allowed ('colour' was unexpected)"
    assert ids("/servers/detail?colour=red", version="2.74") == {mine}   # ignored before 2.75
    page = call(emu, "GET", "/servers/detail?all_tenants=1&limit=2").body
    listed = page["servers"]
    assert len(listed) == 2 and listed[0]["id"] == mine               # newest first
    assert page["servers_links"][0]["rel"] == "next"
    assert "marker=" + listed[1]["id"] in page["servers_links"][0]["href"]
    rest = call(emu, "GET", "/servers/detail?all_tenants=1&marker=" + listed[1]["id"]).body["servers"]
    assert {s["id"] for s in listed + rest} == {a, b, c, mine}
    s = call(emu, "GET", "/servers/" + a, token=P1).body["server"]
    assert "OS-EXT-SRV-ATTR:host" not in s                          # admin-only attribute
    s = call(emu, "GET", "/servers/" + a, version="2.46").body["server"]
    assert s["flavor"]["id"] == "f1" and "original_name" not in s["flavor"]


def test_shelve_offloads_and_wrong_states_are_409(emu):
    make_flavor(emu)
    sid = emu.boot("p1", "f1", "h1", "pre")
    r = call(emu, "POST", "/servers/%s/action" % sid, {"shelve": None}, token=P1)
    assert r.status == 202 and r.raw == b""
    assert emu.server(sid)["task_state"] == "shelving"
    assert fault(call(emu, "POST", "/servers/%s/action" % sid, {"shelve": None}),
                 "conflictingRequest", 409) == (
        "Cannot 'shelve' instance %s while it is in task_state shelving" % sid)
    s = wait_status(emu, sid, "SHELVED_OFFLOADED").body["server"]
    assert s["OS-EXT-SRV-ATTR:host"] is None and s["OS-EXT-STS:task_state"] is None
    assert fault(call(emu, "POST", "/servers/%s/action" % sid, {"shelve": None}),
                 "conflictingRequest", 409) == (
        "Cannot 'shelve' instance %s while it is in vm_state shelved_offloaded" % sid)
    # an offloaded server has no host: deleting it is immediate
    assert call(emu, "DELETE", "/servers/" + sid).status == 204
    assert call(emu, "GET", "/servers/" + sid).status == 404
    building = call(emu, "POST", "/servers", server_body()).body["server"]["id"]
    assert fault(call(emu, "POST", "/servers/%s/action" % building, {"shelve": None}),
                 "conflictingRequest", 409) == (
        "Cannot 'shelve' instance %s while it is in vm_state building" % building)
    wait_status(emu, building, "ACTIVE")
    call(emu, "DELETE", "/servers/" + building)
    assert fault(call(emu, "POST", "/servers/%s/action" % building, {"shelve": None}),
                 "conflictingRequest", 409) == (
        "Cannot 'shelve' instance %s while it is in task_state deleting" % building)
    assert fault(call(emu, "POST", "/servers/%s/action" % building, {"pirouette": None}),
                 "badRequest", 400) == "There is no such action: pirouette"
    assert fault(call(emu, "POST", "/servers/nope/action", {"shelve": None}), "itemNotFound", 404)


def test_unshelve_stop_start(emu):
    make_flavor(emu)
    sid = emu.boot("p1", "f1", "h1", "vm")
    assert call(emu, "POST", "/servers/%s/action" % sid, {"os-stop": None}).status == 202
    wait_status(emu, sid, "SHUTOFF")
    call(emu, "POST", "/servers/%s/action" % sid, {"shelve": None})
    wait_status(emu, sid, "SHELVED_OFFLOADED")
    assert fault(call(emu, "POST", "/servers/%s/action" % sid, {"unshelve": {}}),
                 "badRequest", 400)                                  # 2.77 schema
    assert call(emu, "POST", "/servers/%s/action" % sid, {"unshelve": None}).status == 202
    s = wait_status(emu, sid, "ACTIVE").body["server"]
    assert s["OS-EXT-SRV-ATTR:host"] in ("h1", "h2", "h3")


def test_scheduler_honours_aggregates_tenants_and_resources():
    e = NovaEmulator(hosts=["h1", "h2", "h3"], build_delay=0.1, delete_delay=0.1,
                     host_resources={"h3": {"CUSTOM_MIG_1G": 1}}).start()
    try:
        e.valid_tokens.add(ADMIN)
        aid = call(e, "POST", "/os-aggregates", {"aggregate": {"name": "res-r1"}}).body["aggregate"]["id"]
        call(e, "POST", "/os-aggregates/%d/action" % aid, {"add_host": {"host": "h2"}})
        call(e, "POST", "/os-aggregates/%d/action" % aid,
             {"set_metadata": {"metadata": {"reservation": "r1", "filter_tenant_id": "admin"}}})
        make_flavor(e, "res", public=False,
                    extra={"aggregate_instance_extra_specs:reservation": "r1"})
        ok = call(e, "POST", "/servers", server_body(flavor="res")).body["server"]["id"]
        assert wait_status(e, ok, "ACTIVE").body["server"]["OS-EXT-SRV-ATTR:host"] == "h2"
        bad = call(e, "POST", "/servers", server_body(flavor="res", host="h1")).body["server"]["id"]
        s = wait_status(e, bad, "ERROR").body["server"]
        assert s["fault"]["message"].startswith("No valid host was found.")
        assert s["OS-EXT-SRV-ATTR:host"] is None
        # an unscoped extra spec trips ComputeCapabilitiesFilter, as in a real cloud
        make_flavor(e, "unscoped", extra={"reservation": "r1"})
        u = call(e, "POST", "/servers", server_body(flavor="unscoped")).body["server"]["id"]
        wait_status(e, u, "ERROR")
        # the isolated host refuses other tenants
        make_flavor(e, "plain")
        e.add_token("p5", project_id="p5", roles=["member"])
        for _ in range(3):
            sid = call(e, "POST", "/servers", server_body(flavor="plain"), token="p5").body["server"]["id"]
            assert wait_status(e, sid, "ACTIVE", token="p5")
            assert e.server(sid)["host"] != "h2"
        # custom resource classes need free inventory
        make_flavor(e, "mig", extra={"resources:CUSTOM_MIG_1G": "1"})
        m1 = call(e, "POST", "/servers", server_body(flavor="mig")).body["server"]["id"]
        assert wait_status(e, m1, "ACTIVE").body["server"]["OS-EXT-SRV-ATTR:host"] == "h3"
        m2 = call(e, "POST", "/servers", server_body(flavor="mig")).body["server"]["id"]
        wait_status(e, m2, "ERROR")
    finally:
        e.stop()


def test_services_list_compute_hosts(emu):
    r = call(emu, "GET", "/os-services?binary=nova-compute")
    svcs = r.body["services"]
    assert sorted(s["host"] for s in svcs) == ["h1", "h2", "h3"]
    assert all(s["binary"] == "nova-compute" and s["state"] == "up" and s["status"] == "enabled"
               and s["zone"] == "nova" and isinstance(s["id"], str) for s in svcs)
    assert isinstance(call(emu, "GET", "/os-services", version="2.52").body["services"][0]["id"], int)
    emu.add_host("h4")
    assert "h4" in [s["host"] for s in call(emu, "GET", "/os-services?binary=nova-compute").body["services"]]
    assert call(emu, "POST", "/os-aggregates", {"aggregate": {"name": "x"}}).status == 200
    assert call(emu, "POST", "/os-aggregates/1/action", {"add_host": {"host": "h4"}}).status == 200


def test_requests_are_recorded(emu):
    call(emu, "POST", "/os-aggregates", {"aggregate": {"name": "rec"}})
    call(emu, "GET", "/servers/detail?all_tenants=1&host=h1", version=None)
    post, get = emu.requests[-2:]
    assert (post.method, post.path, post.version, post.status) == ("POST", "/v2.1/os-aggregates", "2.79", 200)
    assert post.body == {"aggregate": {"name": "rec"}} and post.route == "POST /os-aggregates"
    assert (get.query, get.version, get.status) == ({"all_tenants": ["1"], "host": ["h1"]}, "2.1", 200)
    assert emu.find_requests("POST", r"os-aggregates$") == [post]
    st = emu.stats()
    assert st["by_route"]["POST /os-aggregates"] == 1 and st["aggregates"] == 1


# ------------------------------------------------------------------------------------------
# Faults
# ------------------------------------------------------------------------------------------


def test_fail_injects_503_with_retry_after_then_recovers(emu):
    f = emu.fail("POST", r"/os-aggregates$", status=503, times=2, retry_after=7)
    for _ in range(2):
        r = call(emu, "POST", "/os-aggregates", {"aggregate": {"name": "a"}})
        assert r.status == 503 and r.headers["Retry-After"] == "7"
        assert r.body["serviceUnavailable"]["code"] == 503
    assert call(emu, "GET", "/os-aggregates").status == 200          # not matched
    assert call(emu, "POST", "/os-aggregates", {"aggregate": {"name": "a"}}).status == 200
    assert f.hits == 2 and f.remaining == 0
    assert emu.aggregates()[0]["name"] == "a"                       # failed ones did nothing
    assert [r.fault for r in emu.find_requests("POST")] == ["fail", "fail", None]
    emu.fail(status=500, times=1)
    r = call(emu, "GET", "/servers/detail")
    assert r.body["computeFault"]["code"] == 500
    emu.fail(path_regex="flavors", status=502, body="<html>bad gateway</html>")
    r = call(emu, "GET", "/flavors/detail")
    assert r.status == 502 and r.raw == b"<html>bad gateway</html>"
    assert emu.stats()["faults"]["fail"] == 4


def test_fail_after_applying_loses_only_the_answer(emu):
    aid = call(emu, "POST", "/os-aggregates", {"aggregate": {"name": "a"}}).body["aggregate"]["id"]
    emu.fail("POST", "/action", status=504, apply=True)
    assert call(emu, "POST", "/os-aggregates/%d/action" % aid, {"add_host": {"host": "h1"}}).status == 504
    assert emu.aggregates()[0]["hosts"] == ["h1"]                   # it happened
    assert (emu.requests[-1].status, emu.requests[-1].applied_status) == (504, 200)
    assert call(emu, "POST", "/os-aggregates/%d/action" % aid,
                {"add_host": {"host": "h1"}}).status == 409           # the retry sees it done


def test_outage_refuses_connections_then_serves_on_the_same_port(emu):
    port = emu.port
    assert call(emu, "GET", "/os-aggregates").status == 200
    keep = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    keep.request("GET", "/v2.1/os-aggregates", headers={"X-Auth-Token": ADMIN})
    keep.getresponse().read()
    emu.set_outage(True)
    with pytest.raises(ConnectionRefusedError):
        call(emu, "GET", "/os-aggregates")
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        keep.request("GET", "/v2.1/os-aggregates", headers={"X-Auth-Token": ADMIN})
        keep.getresponse().read()
    keep.close()
    assert emu.stats()["in_outage"] is True
    emu.set_outage(False)
    assert emu.port == port
    assert call(emu, "GET", "/os-aggregates").status == 200
    assert emu.stats()["faults"]["outage"] == 1


def test_hang_makes_the_client_time_out(emu):
    emu.hang("GET", r"/servers/detail", times=1)
    started = time.monotonic()
    with pytest.raises((socket.timeout, TimeoutError)):
        call(emu, "GET", "/servers/detail", timeout=0.5)
    assert 0.4 < time.monotonic() - started < 3
    assert call(emu, "GET", "/servers/detail", timeout=2).status == 200   # only once
    hung = emu.find_requests("GET", "detail")[0]
    assert (hung.fault, hung.status) == ("hang", None)
    assert emu.stats()["faults"]["hang"] == 1
    # a hung request that is released is closed without an answer
    emu.hang("GET", "os-aggregates")
    result = {}

    def waiter():
        try:
            call(emu, "GET", "/os-aggregates", timeout=5)
        except Exception as exc:  # noqa: BLE001
            result["error"] = exc

    t = threading.Thread(target=waiter)
    t.start()
    emu.wait_for(lambda: emu.stats()["faults"]["hang"] == 2)
    emu.release_hangs()
    t.join(5)
    assert isinstance(result.get("error"), (http.client.HTTPException, ConnectionError, OSError))


def test_latency_delays_answers(emu):
    emu.set_latency(0.3)
    started = time.monotonic()
    assert call(emu, "GET", "/os-aggregates").status == 200
    assert time.monotonic() - started >= 0.3
    emu.set_latency(0)


def test_concurrent_clients(emu):
    make_flavor(emu)
    errors = []
    created = []
    lock = threading.Lock()

    def worker(n):
        try:
            for i in range(5):
                r = call(emu, "POST", "/os-aggregates", {"aggregate": {"name": "agg-%d-%d" % (n, i)}})
                assert r.status == 200, r
                aid = r.body["aggregate"]["id"]
                r = call(emu, "POST", "/os-aggregates/%d/action" % aid,
                         {"add_host": {"host": "h%d" % (1 + (n + i) % 3)}})
                assert r.status == 200, r
                r = call(emu, "POST", "/servers", server_body(name="vm-%d-%d" % (n, i)))
                assert r.status == 202, r
                with lock:
                    created.append(r.body["server"]["id"])
            # everyone races for the same name: exactly one wins
            r = call(emu, "POST", "/os-aggregates", {"aggregate": {"name": "contested"}})
            with lock:
                created.append(r.status)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert not errors, errors
    statuses = [x for x in created if isinstance(x, int)]
    assert sorted(statuses) == [200] + [409] * 5
    ids = [x for x in created if isinstance(x, str)]
    assert len(set(ids)) == 30
    aggs = emu.aggregates()
    assert len(aggs) == 31 and len({a["id"] for a in aggs}) == 31
    emu.wait_for(lambda: all(s["status"] == "ACTIVE" for s in emu.servers()))
    assert len(emu.servers()) == 30


def test_helpers_boot_and_forced_states(emu):
    make_flavor(emu)
    sid = emu.boot("p2", "f1", "h3", "slow", active=False)
    assert emu.server(sid)["status"] == "BUILD"
    emu.wait_for(lambda: emu.server(sid)["status"] == "ACTIVE")
    assert emu.server(sid)["host"] == "h3" and emu.server(sid)["project_id"] == "p2"
    emu.set_server_state(sid, vm_state="error", task_state=None)
    assert call(emu, "GET", "/servers/" + sid, token=P2).body["server"]["status"] == "ERROR"
    assert fault(call(emu, "POST", "/servers/%s/action" % sid, {"shelve": None}, token=P2),
                 "conflictingRequest", 409) == (
        "Cannot 'shelve' instance %s while it is in vm_state error" % sid)
    with pytest.raises(ValueError):
        emu.boot("p2", "nope", "h1")
    with pytest.raises(ValueError):
        emu.boot("p2", "f1", "h9")
    assert [f["id"] for f in emu.flavors()] == ["f1"]


def test_stop_releases_hung_requests():
    e = NovaEmulator(hosts=["h1"]).start()
    e.valid_tokens.add(ADMIN)
    e.hang(times=None)
    errors = []

    def waiter():
        try:
            call(e, "GET", "/os-aggregates", timeout=10)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    t = threading.Thread(target=waiter)
    t.start()
    e.wait_for(lambda: e.stats()["faults"]["hang"] == 1)
    started = time.monotonic()
    e.stop()
    t.join(5)
    assert not t.is_alive() and errors and time.monotonic() - started < 3
