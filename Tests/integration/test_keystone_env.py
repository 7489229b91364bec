"""The real Keystone of the integration tests (support/keystone_fixture.py): what the OpenStack
adapter's tests rely on. Password and application-credential authentication, the catalog with the
compute endpoint registered by the tests, token validation and revocation as the Nova emulator does
them, password changes, the clouds.yaml files, a short token lifetime, concurrent requests; and for
the Blazar-compatible REST API's tests: their users and roles, the reservation endpoint, the real
`openstack` CLI (support/openstack_cli.py) authenticating with them and reaching that endpoint.

Skipped with a loud warning when Keystone cannot be installed, unless BERTH_REQUIRE_KEYSTONE=1."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from berthtest import wait_until
from support.keystone_fixture import (REST_USERS, VENV, KeystoneError, http_request, keystone,  # noqa: F401
                                      keystone_factory)
from support.openstack_cli import SETUP_SCRIPT as CLI_SETUP_SCRIPT
from support.openstack_cli import (BlazarClientCallError, CLIError, base_env, noauth_env,  # noqa: F401
                                   openstack_cli, parse_json_output, run_blazarclient_py)

NOVA_URL = "http://127.0.0.1:9/v2.1"  # never contacted: only stored in the catalog


def parse_ts(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


def endpoints(catalog: list[dict], service_type: str) -> dict[tuple[str, str], str]:
    """{(interface, region_id): url} of the catalog entries of one service type."""
    out = {}
    for svc in catalog:
        if svc["type"] == service_type:
            for ep in svc["endpoints"]:
                out[(ep["interface"], ep["region_id"])] = ep["url"]
    return out


def test_bootstrap_and_provisioning(keystone):
    print(f"\nKeystone {keystone.auth_url} timings: {keystone.describe()['timings']}")
    r = keystone.request("GET", "/domains/default", expect=200)
    assert r.body["domain"]["name"] == "Default"
    projects = {p["name"]: p for p in keystone.request("GET", "/projects", expect=200).body["projects"]}
    assert {"admin", "berth", "science"} <= set(projects)
    assert projects["berth"]["id"] == keystone.project_id
    assert projects["science"]["id"] == keystone.tenant_project_id
    assignments = keystone.request(
        "GET", f"/role_assignments?user.id={keystone.user_id}&scope.project.id={keystone.project_id}"
               "&include_names", expect=200).body["role_assignments"]
    assert [a["role"]["name"] for a in assignments] == ["admin"]
    # GET /v3 is the version document, unauthenticated.
    r = keystone.request("GET", "", admin=False, expect=200)
    assert r.body["version"]["id"].startswith("v3.")


def test_password_auth_token_header_and_catalog(keystone):
    keystone.register_compute(NOVA_URL)
    token, body = keystone.authenticate(auth="password")
    assert token.startswith("gAAAAA")  # a fernet token, from the X-Subject-Token header
    assert body["methods"] == ["password"]
    assert body["user"]["name"] == "berth-svc" and body["user"]["domain"]["name"] == "Default"
    assert body["project"]["id"] == keystone.project_id
    assert "admin" in {r["name"] for r in body["roles"]}
    issued, expires = parse_ts(body["issued_at"]), parse_ts(body["expires_at"])
    assert (expires - issued).total_seconds() == keystone.expiration
    compute = endpoints(body["catalog"], "compute")
    assert compute == {(i, "RegionOne"): NOVA_URL for i in ("public", "internal", "admin")}
    assert [s["name"] for s in body["catalog"] if s["type"] == "compute"] == ["nova"]
    assert endpoints(body["catalog"], "identity")[("public", "RegionOne")] == keystone.auth_url
    # The raw exchange, as the Swift adapter will do it: 201, token in the header, JSON body.
    r = http_request("POST", keystone.auth_url + "/auth/tokens", body=keystone.auth_body())
    assert r.status == 201 and r.header("X-Subject-Token") and r.header("Content-Type") == "application/json"


def test_register_compute_updates_in_place(keystone):
    first = keystone.register_compute("http://127.0.0.1:1/v2.1")
    second = keystone.register_compute(NOVA_URL)
    assert first == second  # same service and endpoint ids, URL updated
    services = keystone.request("GET", "/services?type=compute", expect=200).body["services"]
    assert len(services) == 1
    only_public = keystone.register_compute(NOVA_URL, interfaces=("public",))
    assert set(only_public["endpoints"]) == {"public"}
    _, body = keystone.authenticate()
    assert endpoints(body["catalog"], "compute") == {("public", "RegionOne"): NOVA_URL}
    keystone.unregister_compute()
    _, body = keystone.authenticate()
    assert endpoints(body["catalog"], "compute") == {}
    keystone.register_compute(NOVA_URL)
    _, body = keystone.authenticate()
    assert len(endpoints(body["catalog"], "compute")) == 3


def test_application_credential_auth(keystone):
    keystone.register_compute(NOVA_URL)
    token, body = keystone.authenticate(auth="appcred")
    assert body["methods"] == ["application_credential"]
    assert body["application_credential"]["id"] == keystone.appcred_id
    assert body["user"]["id"] == keystone.user_id
    assert body["project"]["id"] == keystone.project_id
    assert "admin" in {r["name"] for r in body["roles"]}
    assert endpoints(body["catalog"], "compute")[("public", "RegionOne")] == NOVA_URL
    assert keystone.validate(token)["application_credential"]["id"] == keystone.appcred_id


def test_wrong_secrets_are_refused(keystone):
    for kw in ({"auth": "password", "password": "wrong"}, {"auth": "appcred", "appcred_secret": "wrong"},
               {"auth": "password", "username": "nobody"}):
        with pytest.raises(KeystoneError) as e:
            keystone.authenticate(**kw)
        assert e.value.status == 401, kw
        assert e.value.body["error"]["code"] == 401
    # Worth knowing for the adapter: an unknown application credential id is a 404, not a 401.
    with pytest.raises(KeystoneError) as e:
        keystone.authenticate(auth="appcred", appcred_id="0" * 32)
    assert e.value.status == 404
    assert "Application Credential" in e.value.body["error"]["message"]


def test_validate_and_revoke(keystone):
    a, b = keystone.issue_token(), keystone.issue_token(auth="appcred")
    info = keystone.validate(a)
    assert info["user"]["name"] == "berth-svc" and info["project"]["name"] == "berth"
    assert "catalog" in info and "catalog" not in keystone.validate(a, nocatalog=True)
    assert keystone.revoke(a) is True
    assert keystone.validate(a) is None
    assert keystone.revoke(a) is False
    assert keystone.validate(b) is not None  # revocation is per token (audit id)
    with pytest.raises(KeystoneError) as e:  # a revoked token authenticates nothing
        keystone.request("GET", f"/users/{keystone.user_id}", token=a, expect=200)
    assert e.value.status == 401
    for bogus in ("garbage", "gAAAAA" + "x" * 100, ""):
        assert keystone.validate(bogus) is None


def test_change_password_revokes_tokens_and_restore(keystone):
    old_token = keystone.issue_token()
    appcred_token = keystone.issue_token(auth="appcred")
    old_password = keystone.password
    keystone.change_password("a-new-password-1")
    assert keystone.validate(old_token) is None
    with pytest.raises(KeystoneError) as e:
        keystone.issue_token(password=old_password)
    assert e.value.status == 401
    assert keystone.validate(keystone.issue_token()) is not None  # the new password works
    # Application credentials survive a password change (their earlier tokens are revoked too).
    assert keystone.validate(appcred_token) is None
    assert keystone.validate(keystone.issue_token(auth="appcred")) is not None
    keystone.restore()
    assert keystone.password == keystone.initial_password
    assert keystone.validate(keystone.issue_token()) is not None


def _load_with_keystoneauth(path, cloud: str, secure=None) -> dict:
    """Reads clouds.yaml with PyYAML and authenticates with keystoneauth1 (both in the Keystone
    venv), the way an OpenStack client does; returns the compute endpoint and token facts."""
    script = r"""
import json, sys, yaml
from keystoneauth1 import loading, session
clouds = yaml.safe_load(open(sys.argv[1]))
if len(sys.argv) > 3:
    secure = yaml.safe_load(open(sys.argv[3]))
    for k, v in secure["clouds"][sys.argv[2]]["auth"].items():
        clouds["clouds"][sys.argv[2]]["auth"][k] = v
c = clouds["clouds"][sys.argv[2]]
auth = loading.get_plugin_loader(c["auth_type"]).load_from_options(**c["auth"])
s = session.Session(auth=auth)
print(json.dumps({
    "endpoint": s.get_endpoint(service_type="compute", interface=c["interface"], region_name=c["region_name"]),
    "project_id": s.get_project_id(), "user_id": s.get_user_id(), "token": s.get_token()}))
"""
    args = [str(path), cloud] + ([str(secure)] if secure else [])
    out = subprocess.run([str(VENV / "bin" / "python"), "-c", script, *args],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@pytest.mark.parametrize("auth", ["password", "appcred"])
def test_clouds_yaml_works_with_keystoneauth(keystone, tmp_path, auth):
    keystone.register_compute(NOVA_URL)
    path = keystone.clouds_yaml(tmp_path / "clouds.yaml", auth=auth, cloud="berth-test")
    text = path.read_text()
    assert f'auth_url: "{keystone.auth_url}"' in text
    assert ('auth_type: "password"' if auth == "password" else 'auth_type: "v3applicationcredential"') in text
    got = _load_with_keystoneauth(path, "berth-test")
    assert got["endpoint"] == NOVA_URL
    assert got["project_id"] == keystone.project_id and got["user_id"] == keystone.user_id
    assert keystone.validate(got["token"])["user"]["name"] == "berth-svc"


def test_clouds_yaml_secure_overlay_and_extra(keystone, tmp_path):
    keystone.register_compute(NOVA_URL)
    path = keystone.clouds_yaml(tmp_path / "clouds.yaml", auth="password", cloud="c1",
                                secure=tmp_path / "secure.yaml",
                                extra={"auth": {"project_name": None, "project_id": keystone.project_id}})
    assert keystone.password not in path.read_text()
    assert keystone.password in (tmp_path / "secure.yaml").read_text()
    assert "project_name" not in path.read_text()
    got = _load_with_keystoneauth(path, "c1", secure=tmp_path / "secure.yaml")
    assert got["project_id"] == keystone.project_id and got["endpoint"] == NOVA_URL
    bad = keystone.clouds_yaml(tmp_path / "bad.yaml", extra={"auth": {"password": "wrong"}})
    assert 'password: "wrong"' in bad.read_text()


def test_concurrent_requests(keystone):
    tokens = [keystone.issue_token(), keystone.issue_token(auth="appcred")]

    def work(i: int) -> bool:
        if i % 4 == 0:
            return keystone.validate(keystone.issue_token(auth="appcred")) is not None
        return keystone.validate(tokens[i % 2], nocatalog=True) is not None

    t0 = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(work, range(64)))
    assert all(results)
    assert time.monotonic() - t0 < 60


def test_short_token_lifetime(keystone_factory):
    ks = keystone_factory(expiration=5)
    assert ks is keystone_factory(expiration=5)  # one per option set
    token, body = ks.authenticate(auth="appcred")
    assert (parse_ts(body["expires_at"]) - parse_ts(body["issued_at"])).total_seconds() == 5
    assert ks.validate(token) is not None
    wait_until(lambda: ks.validate(token) is None, "the token to expire", timeout=15, interval=0.5)
    assert ks.validate(token, allow_expired=True)["expires_at"] == body["expires_at"]
    assert ks.validate(ks.issue_token()) is not None  # re-authentication gives a fresh token
    assert ks.admin_token() and ks.request("GET", "/projects", expect=200)  # admin token renewal


# ------------------------------------------------------------------------------------------------
# The REST API tests' users, the reservation endpoint, and the real OpenStack CLI with them
# ------------------------------------------------------------------------------------------------

RESERVATION_URL = "http://127.0.0.1:9/v1"  # port 9 (discard): nothing listens, connections are refused


def test_rest_users_authenticate_with_their_roles(keystone):
    users = keystone.users()
    assert keystone.users() is users  # made once per Keystone
    assert set(users) == set(REST_USERS)
    projects = {p["name"]: p["id"] for p in keystone.request("GET", "/projects", expect=200).body["projects"]}
    assert projects["physics"] == keystone.second_tenant_project_id
    assert users["alice"].project_id == users["carol"].project_id == keystone.tenant_project_id
    assert users["bob"].project_id == projects["physics"] and users["rest-admin"].project_id == projects["admin"]
    for name, u in users.items():
        token, body = keystone.authenticate(username=u.name, password=u.password, project_id=u.project_id)
        assert body["user"]["id"] == u.user_id and body["project"]["name"] == u.project, name
        assert {r["name"] for r in body["roles"]} == u.token_roles, name
        assigned = keystone.request("GET", f"/role_assignments?user.id={u.user_id}&include_names",
                                    expect=200).body["role_assignments"]
        assert [(a["role"]["name"], a["scope"]["project"]["id"]) for a in assigned] == \
            [(r, u.project_id) for r in u.roles], name
        assert (u.appcred_id is not None) == (name == "alice")
        # A user has no role on the other tenant project.
        other = keystone.second_tenant_project_id if u.project != "physics" else keystone.tenant_project_id
        with pytest.raises(KeystoneError) as e:
            keystone.authenticate(username=u.name, password=u.password, project_id=other)
        assert e.value.status == 401, name
    assert users["carol"].token_roles == {"reader"} and users["alice"].token_roles == {"member", "reader"}
    assert users["rest-admin"].is_admin and not users["alice"].is_admin
    alice = users["alice"]
    _, body = keystone.authenticate(auth="appcred", appcred_id=alice.appcred_id, appcred_secret=alice.appcred_secret)
    assert body["user"]["id"] == alice.user_id and body["project"]["id"] == alice.project_id
    assert {r["name"] for r in body["roles"]} == {"member", "reader"}


def test_register_reservation_in_the_catalog(keystone):
    first = keystone.register_reservation("http://127.0.0.1:1/v1")
    second = keystone.register_reservation(RESERVATION_URL)
    assert first == second and keystone.reservation_service_id == first["service_id"]
    alice = keystone.rest_user("alice")
    _, body = keystone.authenticate(username=alice.name, password=alice.password, project_id=alice.project_id)
    assert endpoints(body["catalog"], "reservation") == {(i, "RegionOne"): RESERVATION_URL
                                                          for i in ("public", "internal", "admin")}
    assert [s["name"] for s in body["catalog"] if s["type"] == "reservation"] == ["blazar"]
    keystone.register_compute(NOVA_URL)  # the two services live side by side
    keystone.unregister_reservation()
    _, body = keystone.authenticate()
    assert endpoints(body["catalog"], "reservation") == {} and len(endpoints(body["catalog"], "compute")) == 3
    keystone.register_reservation(RESERVATION_URL)
    _, body = keystone.authenticate(auth="appcred")
    assert endpoints(body["catalog"], "reservation")[("public", "RegionOne")] == RESERVATION_URL


def test_cli_env_has_no_inherited_os_variables(keystone, monkeypatch):
    monkeypatch.setenv("OS_CLOUD", "somewhere-else")
    monkeypatch.setenv("OS_TOKEN", "stale")
    env = keystone.cli_env("bob")
    assert "OS_CLOUD" not in env and "OS_TOKEN" not in env
    assert env["PATH"] == os.environ["PATH"]
    bob = keystone.rest_user("bob")
    assert {k: v for k, v in env.items() if k.startswith("OS_")} == {
        "OS_AUTH_URL": keystone.auth_url, "OS_IDENTITY_API_VERSION": "3", "OS_INTERFACE": "public",
        "OS_REGION_NAME": "RegionOne", "OS_AUTH_TYPE": "password", "OS_USERNAME": "bob",
        "OS_PASSWORD": bob.password, "OS_PROJECT_NAME": "physics", "OS_PROJECT_ID": bob.project_id,
        "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default"}
    ac = keystone.cli_env("alice", auth="appcred", extra={"OS_INTERFACE": "internal", "OS_REGION_NAME": None})
    assert ac["OS_AUTH_TYPE"] == "v3applicationcredential" and "OS_USERNAME" not in ac
    assert ac["OS_APPLICATION_CREDENTIAL_ID"] == keystone.rest_user("alice").appcred_id
    assert ac["OS_INTERFACE"] == "internal" and "OS_REGION_NAME" not in ac
    with pytest.raises(ValueError):
        keystone.cli_env("bob", auth="appcred")  # bob has no application credential


class RecordingBlazar:
    """A stand-in for the reservation endpoint: records each request (method, path, headers, body)
    and answers 200 with an empty lease/host list, or `status` with a Blazar-style error body, or
    what `answers[(method, path)]` says: (status, body)."""

    def __init__(self):
        import http.server
        outer = self
        self.requests: list[dict] = []
        self.status = 200
        self.answers: dict[tuple[str, str], tuple[int, Any]] = {}

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                outer.requests.append({"method": self.command, "path": self.path,
                                       "headers": {k.lower(): v for k, v in self.headers.items()},
                                       "body": json.loads(body) if body else None})
                status = outer.status
                if (self.command, self.path) in outer.answers:
                    status, out = outer.answers[(self.command, self.path)]
                elif status == 200:
                    out = {"leases": [], "hosts": []}
                else:
                    out = {"error_code": status, "error_message": "policy does not allow this",
                           "error_name": "PolicyNotAuthorized"}
                data = json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _answer

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recording_blazar():
    srv = RecordingBlazar()
    yield srv
    srv.close()


@pytest.mark.parametrize("auth", ["password", "appcred"])
def test_openstack_cli_sends_a_keystone_token_to_the_reservation_endpoint(keystone, openstack_cli,
                                                                          recording_blazar, auth):
    keystone.register_reservation(recording_blazar.url)
    alice = keystone.rest_user("alice")
    assert openstack_cli.json(keystone.cli_env(alice, auth=auth), "reservation", "lease", "list") == []
    [req] = recording_blazar.requests
    assert (req["method"], req["path"]) == ("GET", "/v1/leases")
    assert req["headers"]["user-agent"] == "python-blazarclient"
    info = keystone.validate(req["headers"]["x-auth-token"])
    assert info["user"]["id"] == alice.user_id and info["project"]["id"] == alice.project_id
    assert {r["name"] for r in info["roles"]} == {"member", "reader"}


def test_openstack_cli_errors_keep_exit_code_and_stderr(keystone, openstack_cli, recording_blazar):
    keystone.register_reservation(recording_blazar.url)
    recording_blazar.status = 403
    with pytest.raises(CLIError) as e:
        openstack_cli.json(keystone.cli_env("carol"), "reservation", "host", "list")
    assert e.value.returncode == 1
    assert "policy does not allow this" in e.value.stderr_clean
    assert "UnsetAttributeHost" not in e.value.stderr_clean and "UnsetAttributeHost" not in str(e.value)
    res = openstack_cli.run(keystone.cli_env("carol"), "reservation", "host", "list", check=False)
    assert res.returncode == 1 and recording_blazar.requests[-1]["path"] == "/v1/os-hosts"
    # Nothing listening at the registered endpoint: the CLI got a token and then failed to connect.
    keystone.register_reservation(RESERVATION_URL)
    res = openstack_cli.run(keystone.cli_env("alice"), "--debug", "reservation", "lease", "list", check=False)
    assert res.returncode == 1
    assert f"{keystone.auth_url}/auth/tokens" in res.stderr  # the token request, in --debug's log
    assert "Unable to establish connection to http://127.0.0.1:9/v1/leases" in res.stderr


def test_blazarclient_library_with_a_keystone_session(keystone, openstack_cli, recording_blazar):
    keystone.register_reservation(recording_blazar.url)
    bob = keystone.rest_user("bob")
    got = openstack_cli.blazarclient(keystone.cli_env(bob), "result = {'leases': client.lease.list(), "
                                     "'project': session.get_project_id()}")
    assert got == {"leases": [], "project": bob.project_id}
    token = recording_blazar.requests[-1]["headers"]["x-auth-token"]
    assert keystone.validate(token)["user"]["id"] == bob.user_id
    recording_blazar.status = 403
    with pytest.raises(BlazarClientCallError) as e:
        run_blazarclient_py(keystone.cli_env("alice", auth="appcred"), "result = client.host.list()")
    assert e.value.type == "BlazarClientException" and e.value.code == 403
    assert "policy does not allow this" in e.value.message


def test_noauth_cli_and_library_send_the_literal_token(openstack_cli, recording_blazar):
    env = noauth_env(recording_blazar.url, "admin:p1")
    assert openstack_cli.json(env, "reservation", "lease", "list") == []
    assert openstack_cli.blazarclient(env, "result = client.host.list()") == []
    assert [(r["method"], r["path"], r["headers"]["x-auth-token"]) for r in recording_blazar.requests] == [
        ("GET", "/v1/leases", "admin:p1"), ("GET", "/v1/os-hosts", "admin:p1")]
    # The same with command-line options instead of the environment.
    openstack_cli.json(base_env(), "--os-auth-type", "admin_token", "--os-endpoint", recording_blazar.url,
                       "--os-token", "alice:science", "reservation", "lease", "list")
    assert recording_blazar.requests[-1]["headers"]["x-auth-token"] == "alice:science"


def test_openstack_clients_venv_is_reused(openstack_cli):
    out = subprocess.run(["bash", str(CLI_SETUP_SCRIPT)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and "up to date" in out.stdout, out.stdout + out.stderr
    res = openstack_cli.run(base_env(), "reservation", "lease", "list", "--help")
    assert "--sort-by" in res.stdout


def test_openstack_cli_create_show_delete_requests(openstack_cli, recording_blazar):
    """What the CLI sends for the write commands and name look-ups, and that `json` copes with
    blazarclient's "Created a new lease:" line before the JSON."""
    lease = {"id": "6a1f8a46-7d5c-4b8e-9c37-0d7d3f1c2b10", "name": "l1", "status": "PENDING",
             "start_date": "2030-01-01T10:00:00.000000", "end_date": "2030-01-01T12:00:00.000000",
             "reservations": [], "events": [], "project_id": "p1", "user_id": "admin"}
    recording_blazar.answers = {
        ("POST", "/v1/leases"): (201, {"lease": lease}), ("GET", "/v1/leases"): (200, {"leases": [lease]}),
        ("GET", f"/v1/leases/{lease['id']}"): (200, {"lease": lease}),
        ("DELETE", f"/v1/leases/{lease['id']}"): (204, None)}
    env = noauth_env(recording_blazar.url, "admin:p1")
    res = openstack_cli.run(env, "reservation", "lease", "create", "--reservation",
                            "resource_type=physical:host,min=1,max=2", "--start-date", "2030-01-01 10:00",
                            "--end-date", "2030-01-01 12:00", "l1", "-f", "json")
    assert res.stdout.startswith("Created a new lease:\n")
    assert parse_json_output(res.stdout)["id"] == lease["id"]
    assert recording_blazar.requests[-1]["body"] == {
        "name": "l1", "start_date": "2030-01-01 10:00", "end_date": "2030-01-01 12:00",
        "reservations": [{"resource_type": "physical:host", "min": 1, "max": 2, "hypervisor_properties": "",
                          "resource_properties": ""}], "events": [], "before_end_date": None}
    recording_blazar.requests.clear()
    assert openstack_cli.json(env, "reservation", "lease", "show", "l1")["name"] == "l1"
    res = openstack_cli.run(env, "reservation", "lease", "delete", "l1")
    assert res.stdout.strip() == "Deleted lease: l1"
    # A name is resolved through the list; an id is used as it is.
    assert [(r["method"], r["path"]) for r in recording_blazar.requests] == [
        ("GET", "/v1/leases"), ("GET", f"/v1/leases/{lease['id']}"),
        ("GET", "/v1/leases"), ("DELETE", f"/v1/leases/{lease['id']}")]
