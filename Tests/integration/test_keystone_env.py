"""The real Keystone of the integration tests (support/keystone_fixture.py): what the OpenStack
adapter's tests rely on. Password and application-credential authentication, the catalog with the
compute endpoint registered by the tests, token validation and revocation as the Nova emulator does
them, password changes, the clouds.yaml files, a short token lifetime, concurrent requests.

Skipped with a loud warning when Keystone cannot be installed, unless BERTH_REQUIRE_KEYSTONE=1."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from berthtest import wait_until
from support.keystone_fixture import (VENV, KeystoneError, http_request, keystone,  # noqa: F401
                                      keystone_factory)

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
