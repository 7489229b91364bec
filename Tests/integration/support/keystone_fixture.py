"""A real OpenStack Keystone for the integration tests.

Keystone 30.0.0 from PyPI runs from its own virtualenv, `<repo>/.venv-keystone` (git-ignored),
made by `Tests/keystone/setup-venv.sh` from `Tests/keystone/requirements-keystone.txt`. CI runs that
script in `.ci/run`; elsewhere the first test that needs Keystone runs it (about 15-20 s cold, then
reused). Keystone is never imported into the test process: it runs as subprocesses.

Each `Keystone` lives in a fresh temporary directory: keystone.conf, SQLite database, fernet token
and credential key repositories, logs. Starting one runs `keystone-manage db_sync`, `fernet_setup`
and `credential_setup` (in parallel), then `bootstrap` (admin user and project, roles
admin/manager/member/reader/service, region RegionOne, the identity endpoints), serves
`keystone.wsgi.api` with gunicorn (one worker, 8 threads, gthread) on 127.0.0.1 on a free port
(the socket is bound here and handed to gunicorn, so there is no port race), waits until `GET /v3`
answers, and then creates through the REST API, as the bootstrap admin:

- project `berth` and user `berth-svc` (domain `Default`), `admin` role on `berth` (Nova needs admin
  for aggregates and flavors);
- project `science`, for tenants;
- an application credential `berth-test` of `berth-svc` (scoped to `berth`, roles of that token).

The users of the Blazar-compatible REST API's tests are made on first use of `keystone.users()`
(once per Keystone, about 0.3 s): project `physics` (a second tenant), `rest-admin` (admin on
project admin), `alice` and `dave` (member on science), `bob` (member on physics), `carol` (reader
only, on science), and an application credential `berth-rest-test` of alice. Each is a
`KeystoneUser` (name, password, user_id, project, project_id, roles, token_roles, appcred_id,
appcred_secret). Keystone's bootstrap makes roles imply each other (admin > manager > member >
reader): a member's token carries `member` and `reader`.

Catalog: `register_compute(url)` (service `nova`, type compute) and `register_reservation(url)`
(service `blazar`, type reservation, e.g. http://127.0.0.1:PORT/v1) make public, internal and admin
endpoints in RegionOne, or update them in place; `unregister_compute()` / `unregister_reservation()`
remove them.

Clients: `clouds_yaml(path, auth=..., user=...)` writes an openstacksdk clouds.yaml;
`cli_env(user, auth="password"|"appcred")` is an environment for the `openstack` CLI with no
inherited OS_* variable (support/openstack_cli.py runs the real CLI with it).

Token lifetime: `[token] expiration` is the `expiration` option (seconds, default 3600). Tokens are
fernet tokens; their `issued_at`/`expires_at` have whole-second precision. An expired, revoked or
unknown token validates as 404 (`validate` -> None). For re-authentication tests use a second
Keystone with a short lifetime: `keystone_factory(expiration=60)` (any value >= 5 works; it is
started once per session and option set, in about 6 s).

Caching: Keystone's in-process cache is on (`oslo_cache.dict`; `cache=False` turns it off). With one
gunicorn worker it is coherent: every write goes through that process, which invalidates what it
changes, and revocations are checked on each validation (tests of revoke and password change pass
either way). Without it a token validation costs about 330 ms instead of 3 ms. bcrypt runs at its
minimum cost (4): at the default (12) each password or application-credential authentication
would take 0.2 s longer.

Fixtures (import the ones a test module uses:
`from support.keystone_fixture import keystone  # noqa: F401`; each stands alone):

- `keystone` (function scope): the session's one `Keystone` (default options, started on first
  use); after the test it restores `berth-svc`'s password if the test changed it.
- `keystone_server` (session scope): the same object, for module- or session-scoped fixtures.
- `keystone_factory` (session scope): `keystone_factory(expiration=60, cache=True)` -> another
  `Keystone` with those options, started on first use and shared by every caller with the same options.

All of them are stopped when the pytest session ends (and at exit, as a backstop).

When Keystone cannot be installed (no PyPI, no Python >= 3.11, no venv module) these fixtures skip
with a loud warning, unless BERTH_REQUIRE_KEYSTONE=1 (as in CI): then they fail. A Keystone that
is installed but does not start is always an error. BERTH_KEEP_KEYSTONE=1 keeps the temporary
directories (logs, database) after the session.

Example:

    from support.keystone_fixture import keystone  # noqa: F401

    def test_adapter_authenticates(keystone, tmp_path, nova):
        keystone.register_compute(nova.url)                  # http://127.0.0.1:NPORT/v2.1
        clouds = keystone.clouds_yaml(tmp_path / "clouds.yaml", auth="appcred")
        ...                                                  # berthd with OS_CLIENT_CONFIG_FILE=clouds
        assert keystone.validate(token_seen_by_nova)["user"]["name"] == "berth-svc"

    def test_member_lists_leases(keystone, openstack_cli):   # support/openstack_cli.py
        keystone.register_reservation(f"http://127.0.0.1:{port}/v1")
        leases = openstack_cli.json(keystone.cli_env("alice"), "reservation", "lease", "list")

Run it by hand (for developing the Swift adapter) with the test venv's Python:

    .venv/bin/python Tests/integration/support/keystone_fixture.py [--expiration 60] \
        [--compute-url http://127.0.0.1:8774/v2.1] [--reservation-url http://127.0.0.1:1234/v1] \
        [--rest-users] [--clouds-yaml /tmp/clouds.yaml]
"""

from __future__ import annotations

import argparse
import atexit
import copy
import dataclasses
import grp
import http.client
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
KEYSTONE_DIR = REPO / "Tests" / "keystone"
SETUP_SCRIPT = KEYSTONE_DIR / "setup-venv.sh"
VENV = Path(os.environ.get("BERTH_KEYSTONE_VENV") or REPO / ".venv-keystone")

DEFAULT_EXPIRATION = 3600
REGION = "RegionOne"
DOMAIN_NAME = "Default"
DOMAIN_ID = "default"
SERVICE_PROJECT = "berth"
SERVICE_USER = "berth-svc"
TENANT_PROJECT = "science"
APPCRED_NAME = "berth-test"
ADMIN_USER = "admin"
ADMIN_PROJECT = "admin"
SECOND_TENANT_PROJECT = "physics"
#: The users of the REST API tests (`Keystone.users()`): name -> (project, assigned roles).
#: Keystone's bootstrap makes admin imply manager, manager imply member and member imply reader,
#: so a token's roles are the assigned one and those below it.
REST_USERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "rest-admin": (ADMIN_PROJECT, ("admin",)),
    "alice": (TENANT_PROJECT, ("member",)),
    "dave": (TENANT_PROJECT, ("member",)),
    "bob": (SECOND_TENANT_PROJECT, ("member",)),
    "carol": (TENANT_PROJECT, ("reader",)),
}
#: The one REST user with an application credential (scoped to its project, its roles).
REST_APPCRED_USER = "alice"
REST_APPCRED_NAME = "berth-rest-test"
IMPLIED_ROLES = {"admin": ("admin", "manager", "member", "reader"), "manager": ("manager", "member", "reader"),
                 "member": ("member", "reader"), "reader": ("reader",)}


class KeystoneUnavailable(RuntimeError):
    """Keystone could not be installed here (its venv could not be made)."""


class KeystoneError(RuntimeError):
    """A Keystone request that did not answer as expected."""

    def __init__(self, message: str, status: int | None = None, body: Any = None):
        super().__init__(message)
        self.status = status
        self.body = body


@dataclass(frozen=True)
class KeystoneUser:
    """A user of the REST API tests, as `Keystone.users()` made it: password, the one project it
    has roles on, the roles assigned there (`roles`) and those its tokens carry (`token_roles`,
    with the implied ones), and its application credential if it has one."""

    name: str
    password: str
    user_id: str
    project: str
    project_id: str
    roles: tuple[str, ...]
    domain: str = DOMAIN_NAME
    appcred_id: str | None = None
    appcred_secret: str | None = None

    @property
    def token_roles(self) -> frozenset[str]:
        return frozenset(r for role in self.roles for r in IMPLIED_ROLES.get(role, (role,)))

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, text, or None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def http_request(method: str, url: str, *, headers: dict[str, str] | None = None, body: Any = None,
                 timeout: float = 15.0) -> Response:
    """One HTTP request on a new connection (thread-safe, no pooling). `body`: JSON-encoded unless bytes/str."""
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    hdrs = {"Accept": "application/json"}
    hdrs.update(headers or {})
    data = None
    if body is not None:
        if isinstance(body, (bytes, str)):
            data = body.encode() if isinstance(body, str) else body
        else:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, u.path + (f"?{u.query}" if u.query else ""), body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        out_headers = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    parsed: Any = None
    if raw:
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = raw.decode(errors="replace")
    return Response(resp.status, out_headers, parsed)


# ------------------------------------------------------------------------------------------------
# The virtualenv
# ------------------------------------------------------------------------------------------------

_venv_lock = threading.Lock()
_venv_state: dict[str, Any] = {}


def ensure_venv(timeout: float = 900) -> Path:
    """Runs Tests/keystone/setup-venv.sh once per process; returns the venv or raises KeystoneUnavailable."""
    with _venv_lock:
        if "error" in _venv_state:
            raise KeystoneUnavailable(_venv_state["error"])
        if "venv" in _venv_state:
            return _venv_state["venv"]
        t0 = time.monotonic()
        try:
            proc = subprocess.run(["bash", str(SETUP_SCRIPT)], capture_output=True, text=True, timeout=timeout,
                                  env=dict(os.environ, BERTH_KEYSTONE_VENV=str(VENV)))
        except (OSError, subprocess.TimeoutExpired) as e:
            _venv_state["error"] = f"{SETUP_SCRIPT.name} could not run: {e}"
            raise KeystoneUnavailable(_venv_state["error"]) from None
        if proc.returncode != 0:
            lines = (proc.stdout + proc.stderr).strip().splitlines() or ["(no output)"]
            _venv_state["error"] = (f"Keystone could not be installed into {VENV} (Tests/keystone/setup-venv.sh "
                                    f"exited {proc.returncode}: {lines[-1].strip()})\n" + "\n".join(lines[-15:]))
            raise KeystoneUnavailable(_venv_state["error"])
        _venv_state["venv"] = VENV
        _venv_state["seconds"] = time.monotonic() - t0
        _venv_state["output"] = proc.stdout.strip()
        return VENV


# ------------------------------------------------------------------------------------------------
# clouds.yaml
# ------------------------------------------------------------------------------------------------

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def _yaml_scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(str(v))  # a JSON string is a valid YAML double-quoted scalar


def to_yaml(obj: dict, indent: int = 0) -> str:
    """Block-style YAML for nested dicts/lists of scalars (all strings double-quoted)."""
    pad = " " * indent
    lines: list[str] = []

    def key(k: Any) -> str:
        return k if isinstance(k, str) and _PLAIN_KEY.match(k) else json.dumps(str(k))

    for k, v in obj.items():
        if isinstance(v, dict):
            if v:
                lines.append(f"{pad}{key(k)}:")
                lines.append(to_yaml(v, indent + 2))
            else:
                lines.append(f"{pad}{key(k)}: {{}}")
        elif isinstance(v, (list, tuple)):
            if not v:
                lines.append(f"{pad}{key(k)}: []")
                continue
            lines.append(f"{pad}{key(k)}:")
            for item in v:
                if isinstance(item, dict):
                    sub = to_yaml(item, indent + 4).splitlines()
                    lines.append(f"{pad}  - {sub[0].lstrip()}")
                    lines.extend(sub[1:])
                else:
                    lines.append(f"{pad}  - {_yaml_scalar(item)}")
        else:
            lines.append(f"{pad}{key(k)}: {_yaml_scalar(v)}")
    return "\n".join(lines)


def _merge(base: dict, extra: dict) -> dict:
    """Deep merge; a None value in `extra` deletes that key."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# ------------------------------------------------------------------------------------------------
# Keystone
# ------------------------------------------------------------------------------------------------

@dataclass
class Keystone:
    """One real Keystone on 127.0.0.1, bootstrapped in its own temporary directory.

    Attributes after `start()`: `url` (http://127.0.0.1:PORT), `auth_url` (url + "/v3"), `port`,
    `region`, `expiration`, `admin_password`, `domain_id` ("default"), `project_id` (berth),
    `tenant_project_id` (science), `user_id` (berth-svc), `password` (berth-svc's current one),
    `initial_password`, `appcred_id`, `appcred_secret`, `admin_role_id`, `workdir`, `timings`.
    After `register_compute` / `register_reservation`: `compute_service_id`, `reservation_service_id`.
    After `users()`: `second_tenant_project_id` (physics).
    """

    expiration: int = DEFAULT_EXPIRATION
    cache: bool = True
    region: str = REGION
    workdir: Path | None = None
    user: str = SERVICE_USER
    project: str = SERVICE_PROJECT
    tenant_project: str = TENANT_PROJECT
    domain: str = DOMAIN_NAME
    domain_id: str = DOMAIN_ID
    appcred_name: str = APPCRED_NAME
    port: int = 0
    url: str = ""
    auth_url: str = ""
    admin_password: str = field(default_factory=lambda: "adm-" + secrets.token_urlsafe(12))
    initial_password: str = field(default_factory=lambda: "svc-" + secrets.token_urlsafe(12))
    password: str = ""
    project_id: str = ""
    tenant_project_id: str = ""
    user_id: str = ""
    admin_role_id: str = ""
    appcred_id: str = ""
    appcred_secret: str = ""
    second_tenant_project: str = SECOND_TENANT_PROJECT
    second_tenant_project_id: str = ""
    compute_service_id: str | None = None
    reservation_service_id: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"Keystone({self.auth_url or 'not started'}, expiration={self.expiration}, workdir={self.workdir})"

    def __post_init__(self) -> None:
        if self.expiration < 5:
            raise ValueError("expiration must be >= 5 seconds")
        self.password = self.initial_password
        self._proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._admin: tuple[str, float] | None = None  # token, monotonic deadline to renew at
        self._own_workdir = self.workdir is None
        self._users: dict[str, KeystoneUser] | None = None
        self._users_lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def venv(self) -> Path:
        return VENV

    @property
    def conf_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "keystone.conf"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "keystone.log"

    def start(self, *, timeout: float = 90.0) -> "Keystone":
        ensure_venv()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="berth-keystone-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.auth_url = f"{self.url}/v3"
        try:
            t0 = time.monotonic()
            self._write_conf()
            self._bootstrap()
            t1 = time.monotonic()
            self._serve(sock, deadline=time.monotonic() + timeout)
            t2 = time.monotonic()
            self._provision()
            t3 = time.monotonic()
        except BaseException:
            sock.close()
            self.stop(keep=True)
            raise
        sock.close()  # gunicorn holds its own copy
        self.timings.update(bootstrap=t1 - t0, serve=t2 - t1, provision=t3 - t2, total=t3 - t0)
        if "seconds" in _venv_state:
            self.timings["venv"] = _venv_state["seconds"]
        return self

    def _write_conf(self) -> None:
        w = self.workdir
        assert w is not None
        (w / "fernet-keys").mkdir(mode=0o700, exist_ok=True)
        (w / "credential-keys").mkdir(mode=0o700, exist_ok=True)
        self.conf_path.write_text(f"""\
[DEFAULT]
log_file = {w / 'keystone.log'}
debug = false

[database]
connection = sqlite:///{w / 'keystone.db'}

[token]
provider = fernet
expiration = {self.expiration}

[fernet_tokens]
key_repository = {w / 'fernet-keys'}
max_active_keys = 3

[fernet_receipts]
key_repository = {w / 'fernet-keys'}
max_active_keys = 3

[credential]
key_repository = {w / 'credential-keys'}

[identity]
# bcrypt's minimum cost (default 12): every password or application-credential authentication
# verifies a hash; the default cost would add about 0.2 s to each.
password_hash_rounds = 4

[cache]
# An in-process cache (one gunicorn worker, so it is coherent: every write goes through that
# process and invalidates what it changes; revocations are checked on every validation). Without
# it, each token validation recomputes the token's roles from SQLite several times: about 150 ms
# per token, so 300+ ms per GET /v3/auth/tokens (two tokens), against about 3 ms with it.
enabled = {'true' if self.cache else 'false'}
backend = oslo_cache.dict
expiration_time = 600
""")

    def _manage_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "PYTHON"))}
        env["PYTHONWARNINGS"] = "ignore"
        env["OS_KEYSTONE_CONFIG_FILES"] = str(self.conf_path)
        return env

    def manage(self, *args: str, timeout: float = 120) -> str:
        """Runs `keystone-manage --config-file <conf> ARGS`; returns its output, raises on failure."""
        cmd = [str(VENV / "bin" / "keystone-manage"), "--config-file", str(self.conf_path), *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self._manage_env())
        out = proc.stdout + proc.stderr
        assert self.workdir is not None
        with self._lock, open(self.workdir / "manage.log", "a") as f:
            f.write(f"$ keystone-manage {' '.join(args)}\n{out}\n")
        if proc.returncode != 0:
            raise KeystoneError(f"keystone-manage {args[0]} exited {proc.returncode}:\n{out[-3000:]}"
                                f"\n--- keystone.log ---\n{self.log_tail()}")
        return out

    def _bootstrap(self) -> None:
        owner = ["--keystone-user", pwd.getpwuid(os.getuid()).pw_name,
                 "--keystone-group", grp.getgrgid(os.getgid()).gr_name]
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(self.manage, "db_sync"),
                       pool.submit(self.manage, "fernet_setup", *owner),
                       pool.submit(self.manage, "credential_setup", *owner)]
            for f in futures:
                f.result()
        self.manage("bootstrap", "--bootstrap-password", self.admin_password,
                    "--bootstrap-username", ADMIN_USER, "--bootstrap-project-name", ADMIN_PROJECT,
                    "--bootstrap-admin-url", self.auth_url, "--bootstrap-public-url", self.auth_url,
                    "--bootstrap-internal-url", self.auth_url, "--bootstrap-region-id", self.region)

    def _serve(self, sock: socket.socket, *, deadline: float) -> None:
        w = self.workdir
        assert w is not None
        fd = sock.fileno()
        os.set_inheritable(fd, True)
        cmd = [str(VENV / "bin" / "gunicorn"), "--bind", f"fd://{fd}",
               "--workers", "1", "--worker-class", "gthread", "--threads", "8",
               "--timeout", "60", "--graceful-timeout", "3", "--keep-alive", "5",
               "--error-logfile", str(w / "gunicorn.log"), "--access-logfile", str(w / "access.log"),
               "--pythonpath", str(KEYSTONE_DIR), "keystone_app:application"]
        self._stdout = open(w / "gunicorn.out", "ab")
        self._proc = subprocess.Popen(cmd, pass_fds=[fd], env=self._manage_env(), stdin=subprocess.DEVNULL,
                                      stdout=self._stdout, stderr=subprocess.STDOUT, start_new_session=True)
        last: Exception | str = "no answer yet"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise KeystoneError(f"gunicorn exited {self._proc.returncode} before Keystone answered:\n"
                                    f"{self.log_tail()}")
            try:
                r = http_request("GET", self.auth_url, timeout=5)
                if r.status == 200 and isinstance(r.body, dict) and "version" in r.body:
                    return
                last = f"HTTP {r.status}: {r.body!r:.300}"
            except OSError as e:
                last = e
            time.sleep(0.1)
        raise KeystoneError(f"Keystone did not answer GET {self.auth_url} in time (last: {last}):\n{self.log_tail()}")

    def _provision(self) -> None:
        d = self.request("GET", f"/domains/{self.domain_id}", expect=200).body["domain"]
        if d["name"] != self.domain:
            raise KeystoneError(f"domain {self.domain_id} is named {d['name']!r}, not {self.domain!r}")
        roles = self.request("GET", "/roles?name=admin", expect=200).body["roles"]
        self.admin_role_id = roles[0]["id"]
        self.project_id = self.request("POST", "/projects", expect=201, json={"project": {
            "name": self.project, "domain_id": self.domain_id,
            "description": "Berth's service project"}}).body["project"]["id"]
        self.tenant_project_id = self.request("POST", "/projects", expect=201, json={"project": {
            "name": self.tenant_project, "domain_id": self.domain_id,
            "description": "a tenant project"}}).body["project"]["id"]
        self.user_id = self.request("POST", "/users", expect=201, json={"user": {
            "name": self.user, "domain_id": self.domain_id, "password": self.password,
            "default_project_id": self.project_id, "description": "Berth's service user"}}).body["user"]["id"]
        self.request("PUT", f"/projects/{self.project_id}/users/{self.user_id}/roles/{self.admin_role_id}",
                     expect=204)
        cred = self.create_application_credential(self.appcred_name,
                                                  description="Berth integration tests")
        self.appcred_id, self.appcred_secret = cred["id"], cred["secret"]

    def stop(self, *, keep: bool | None = None) -> None:
        """Stops gunicorn (SIGTERM, then SIGKILL of its process group); removes the workdir unless kept."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        if proc is not None:
            try:  # the worker, should it have outlived the master
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if getattr(self, "_stdout", None) is not None:
            self._stdout.close()
            self._stdout = None
        if keep is None:
            keep = os.environ.get("BERTH_KEEP_KEYSTONE") == "1"
        if not keep and self._own_workdir and self.workdir is not None and self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of keystone.log and gunicorn's logs (for failure messages)."""
        out = []
        if self.workdir is None:
            return ""
        for name in ("keystone.log", "gunicorn.log", "gunicorn.out"):
            p = self.workdir / name
            if p.exists():
                text = p.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {name} ---\n" + "\n".join(text))
        return "\n".join(out)

    # -- REST ------------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, token: str | None = None, json: Any = None,
                headers: dict[str, str] | None = None, expect: int | tuple[int, ...] | None = None,
                admin: bool = True) -> Response:
        """A request to `auth_url + path` (or to `path` when it is a full URL), with the admin token
        unless `token` is given (or `admin=False`). `expect`: raise KeystoneError on another status."""
        url = path if path.startswith("http") else self.auth_url + path
        hdrs = dict(headers or {})
        retry = token is None and admin
        if token is not None:
            hdrs["X-Auth-Token"] = token
        elif admin:
            hdrs["X-Auth-Token"] = self.admin_token()
        r = http_request(method, url, headers=hdrs, body=json)
        if r.status == 401 and retry:  # the cached admin token expired or was revoked
            hdrs["X-Auth-Token"] = self.admin_token(renew=True)
            r = http_request(method, url, headers=hdrs, body=json)
        if expect is not None:
            want = (expect,) if isinstance(expect, int) else expect
            if r.status not in want:
                raise KeystoneError(f"{method} {url}: HTTP {r.status}, expected {want}: {r.body!r:.1000}",
                                    r.status, r.body)
        return r

    def admin_token(self, *, renew: bool = False) -> str:
        """A project-scoped token of the bootstrap admin (admin on project admin), cached and renewed
        before it expires."""
        with self._lock:
            if not renew and self._admin is not None and time.monotonic() < self._admin[1]:
                return self._admin[0]
            token, body = self.authenticate(auth="admin")
            margin = min(30.0, self.expiration / 4)
            self._admin = (token, time.monotonic() + self.expiration - margin)
            return token

    def auth_body(self, *, auth: str = "password", username: str | None = None, password: str | None = None,
                  project: str | None = None, project_id: str | None = None, scope: str = "project",
                  appcred_id: str | None = None, appcred_secret: str | None = None) -> dict:
        """The JSON body of POST /v3/auth/tokens. `auth`: "password" (berth-svc on berth), "admin"
        (bootstrap admin on project admin) or "appcred" (the application credential; unscoped by
        definition); `scope`: "project", "system" or "unscoped" (password auth only)."""
        if auth == "appcred":
            return {"auth": {"identity": {"methods": ["application_credential"], "application_credential": {
                "id": appcred_id or self.appcred_id,
                "secret": appcred_secret if appcred_secret is not None else self.appcred_secret}}}}
        if auth == "admin":
            username = username or ADMIN_USER
            password = password if password is not None else self.admin_password
            project = project or ADMIN_PROJECT
        elif auth == "password":
            username = username or self.user
            password = password if password is not None else self.password
            project = project or self.project
        else:
            raise ValueError(f"auth must be password, admin or appcred, not {auth!r}")
        body: dict = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": username, "domain": {"name": self.domain}, "password": password}}}}}
        if scope == "project":
            body["auth"]["scope"] = {"project": {"id": project_id} if project_id else
                                     {"name": project, "domain": {"name": self.domain}}}
        elif scope == "system":
            body["auth"]["scope"] = {"system": {"all": True}}
        elif scope != "unscoped":
            raise ValueError(f"scope must be project, system or unscoped, not {scope!r}")
        return body

    def authenticate(self, *, nocatalog: bool = False, **kw: Any) -> tuple[str, dict]:
        """POST /v3/auth/tokens (arguments as `auth_body`); returns (X-Subject-Token, body["token"]).
        Raises KeystoneError (with .status, e.g. 401) when Keystone refuses."""
        r = http_request("POST", self.auth_url + "/auth/tokens" + ("?nocatalog" if nocatalog else ""),
                         body=self.auth_body(**kw))
        if r.status != 201 or not r.header("X-Subject-Token"):
            raise KeystoneError(f"authentication ({kw.get('auth', 'password')}) refused: HTTP {r.status}: "
                                f"{r.body!r:.500}", r.status, r.body)
        return r.header("X-Subject-Token"), r.body["token"]

    def issue_token(self, **kw: Any) -> str:
        """A new token (arguments as `auth_body`: default berth-svc's password on project berth)."""
        return self.authenticate(nocatalog=True, **kw)[0]

    def validate(self, token: str, *, allow_expired: bool = False, nocatalog: bool = False) -> dict | None:
        """GET /v3/auth/tokens with X-Subject-Token, as admin: the token's body (user, project, roles,
        expires_at, catalog, ...) or None when Keystone says it is not valid (404: expired, revoked,
        malformed or unknown). Thread-safe: the Nova emulator may call it from its request threads."""
        q = "&".join(x for x in ("allow_expired=1" if allow_expired else "", "nocatalog" if nocatalog else "") if x)
        r = self.request("GET", "/auth/tokens" + (f"?{q}" if q else ""),
                         headers={"X-Subject-Token": token or "-"})
        if r.status == 200:
            return r.body["token"]
        if r.status in (401, 404):  # 401 here: the subject token is not even a token (e.g. empty)
            return None
        raise KeystoneError(f"validating a token: HTTP {r.status}: {r.body!r:.500}", r.status, r.body)

    def revoke(self, token: str) -> bool:
        """DELETE /v3/auth/tokens (as admin). True if revoked now, False if it was not valid anyway."""
        r = self.request("DELETE", "/auth/tokens", headers={"X-Subject-Token": token}, expect=(204, 404))
        return r.status == 204

    def change_password(self, new: str) -> None:
        """Sets berth-svc's password (as admin). Keystone revokes every token of berth-svc issued
        until now (not its application credentials). Returns once the new password yields a valid
        token: fernet timestamps are whole seconds, so a token issued in the same second as the
        revocation would count as revoked; this waits for the next second."""
        self.request("PATCH", f"/users/{self.user_id}", expect=200, json={"user": {"password": new}})
        self.password = new
        deadline = time.monotonic() + 10
        while True:
            token = self.issue_token()
            if self.validate(token, nocatalog=True) is not None:
                return
            if time.monotonic() > deadline:
                raise KeystoneError("a token issued with the new password does not validate")
            time.sleep(0.2)

    def restore(self) -> None:
        """Restores berth-svc's initial password (if it was changed)."""
        if self.password != self.initial_password:
            self.change_password(self.initial_password)

    def create_application_credential(self, name: str, *, description: str = "", expires_at: str | None = None,
                                      roles: list[str] | None = None, unrestricted: bool = False) -> dict:
        """Creates an application credential of berth-svc on project berth, authenticated as berth-svc
        (Keystone only lets the owner create them). Returns Keystone's body: id, name, secret, roles..."""
        token = self.issue_token()
        ac: dict[str, Any] = {"name": name, "description": description, "unrestricted": unrestricted}
        if expires_at is not None:
            ac["expires_at"] = expires_at
        if roles is not None:
            ac["roles"] = [{"name": r} for r in roles]
        r = self.request("POST", f"/users/{self.user_id}/application_credentials", token=token,
                         json={"application_credential": ac}, expect=201)
        return r.body["application_credential"]

    def delete_application_credential(self, cred_id: str) -> None:
        self.request("DELETE", f"/users/{self.user_id}/application_credentials/{cred_id}", expect=(204, 404))

    # -- catalog ---------------------------------------------------------------------------------

    def register_service(self, service_type: str, url: str, *, name: str, description: str = "",
                         region: str | None = None,
                         interfaces: tuple[str, ...] = ("public", "internal", "admin")) -> dict:
        """Creates, or updates, the service of type `service_type` (named `name`) with one endpoint
        per interface in `region` (default RegionOne), all at `url`. Endpoints of other interfaces of
        that region are deleted. Returns {"service_id", "endpoints": {iface: id}}."""
        region = region or self.region
        services = self.request("GET", f"/services?type={service_type}", expect=200).body["services"]
        if services:
            sid = services[0]["id"]
            if services[0].get("name") != name or not services[0].get("enabled", True):
                self.request("PATCH", f"/services/{sid}", expect=200,
                             json={"service": {"name": name, "enabled": True}})
        else:
            sid = self.request("POST", "/services", expect=201, json={"service": {
                "type": service_type, "name": name, "description": description,
                "enabled": True}}).body["service"]["id"]
        existing = self.request("GET", f"/endpoints?service_id={sid}", expect=200).body["endpoints"]
        ids: dict[str, str] = {}
        for ep in existing:
            if ep.get("region_id") != region:
                continue
            if ep["interface"] in interfaces and ep["interface"] not in ids:
                if ep["url"] != url or not ep.get("enabled", True):
                    self.request("PATCH", f"/endpoints/{ep['id']}", expect=200,
                                 json={"endpoint": {"url": url, "enabled": True}})
                ids[ep["interface"]] = ep["id"]
            else:
                self.request("DELETE", f"/endpoints/{ep['id']}", expect=(204, 404))
        for iface in interfaces:
            if iface not in ids:
                ids[iface] = self.request("POST", "/endpoints", expect=201, json={"endpoint": {
                    "service_id": sid, "interface": iface, "url": url, "region_id": region,
                    "enabled": True}}).body["endpoint"]["id"]
        return {"service_id": sid, "endpoints": ids}

    def unregister_service(self, service_type: str) -> None:
        """Deletes every service of that type and (with it) its endpoints."""
        for s in self.request("GET", f"/services?type={service_type}", expect=200).body["services"]:
            self.request("DELETE", f"/services/{s['id']}", expect=(204, 404))

    def register_compute(self, url: str, *, name: str = "nova", region: str | None = None,
                         interfaces: tuple[str, ...] = ("public", "internal", "admin")) -> dict:
        """Creates, or updates, the `compute` service (named `name`) with one endpoint per interface
        in `region` (default RegionOne), all at `url` (e.g. http://127.0.0.1:NPORT/v2.1). Endpoints
        of other interfaces of that region are deleted. Returns {"service_id", "endpoints": {iface: id}}."""
        out = self.register_service("compute", url, name=name, description="Nova (Berth's test emulator)",
                                    region=region, interfaces=interfaces)
        self.compute_service_id = out["service_id"]
        return out

    def unregister_compute(self) -> None:
        """Deletes the compute service and its endpoints (the catalog then has no compute)."""
        self.unregister_service("compute")
        self.compute_service_id = None

    def register_reservation(self, url: str, *, name: str = "blazar", region: str | None = None,
                             interfaces: tuple[str, ...] = ("public", "internal", "admin")) -> dict:
        """Creates, or updates, the `reservation` service (named `name`, as Blazar registers itself)
        with one endpoint per interface in `region`, all at `url`: berthd's Blazar-compatible API
        with its version, e.g. http://127.0.0.1:PORT/v1 (python-blazarclient appends /leases,
        /os-hosts... to the endpoint as it is). Same semantics and result as `register_compute`."""
        out = self.register_service("reservation", url, name=name,
                                    description="Blazar-compatible reservation API (berthd)",
                                    region=region, interfaces=interfaces)
        self.reservation_service_id = out["service_id"]
        return out

    def unregister_reservation(self) -> None:
        """Deletes the reservation service and its endpoints."""
        self.unregister_service("reservation")
        self.reservation_service_id = None

    # -- the REST API tests' users -----------------------------------------------------------------

    def users(self) -> dict[str, KeystoneUser]:
        """The users of the REST API tests, created on first call (once per Keystone; thread-safe).

        Project `physics` (a second tenant, besides `science`), and in domain Default, each with a
        random password and one role assignment (REST_USERS):

        | name | project | role |
        |---|---|---|
        | rest-admin | admin | admin |
        | alice, dave | science | member |
        | bob | physics | member |
        | carol | science | reader |

        alice also has an application credential `berth-rest-test` (scoped to science, role member,
        with the implied reader). Returns {name: KeystoneUser}; the dict is shared, do not change it."""
        with self._users_lock:
            if self._users is None:
                self._users = self._make_users()
            return self._users

    def rest_user(self, name: str) -> KeystoneUser:
        """One of `users()`, by name."""
        return self.users()[name]

    def _make_users(self) -> dict[str, KeystoneUser]:
        found = self.request("GET", f"/projects?name={self.second_tenant_project}", expect=200).body["projects"]
        if found:
            self.second_tenant_project_id = found[0]["id"]
        else:
            self.second_tenant_project_id = self.request("POST", "/projects", expect=201, json={"project": {
                "name": self.second_tenant_project, "domain_id": self.domain_id,
                "description": "a second tenant project"}}).body["project"]["id"]
        project_ids = {ADMIN_PROJECT: self.request("GET", f"/projects?name={ADMIN_PROJECT}",
                                                   expect=200).body["projects"][0]["id"],
                       self.tenant_project: self.tenant_project_id,
                       self.second_tenant_project: self.second_tenant_project_id}
        role_ids = {r["name"]: r["id"] for r in self.request("GET", "/roles", expect=200).body["roles"]}
        out: dict[str, KeystoneUser] = {}
        for name, (project, roles) in REST_USERS.items():
            project = {TENANT_PROJECT: self.tenant_project,
                       SECOND_TENANT_PROJECT: self.second_tenant_project}.get(project, project)
            password = f"{name}-" + secrets.token_urlsafe(12)
            uid = self.request("POST", "/users", expect=201, json={"user": {
                "name": name, "domain_id": self.domain_id, "password": password,
                "default_project_id": project_ids[project],
                "description": "a user of the REST API tests"}}).body["user"]["id"]
            for role in roles:
                self.request("PUT", f"/projects/{project_ids[project]}/users/{uid}/roles/{role_ids[role]}",
                             expect=204)
            out[name] = KeystoneUser(name=name, password=password, user_id=uid, project=project,
                                     project_id=project_ids[project], roles=tuple(roles), domain=self.domain)
        owner = out[REST_APPCRED_USER]
        token = self.issue_token(username=owner.name, password=owner.password, project_id=owner.project_id)
        cred = self.request("POST", f"/users/{owner.user_id}/application_credentials", token=token, expect=201,
                            json={"application_credential": {"name": REST_APPCRED_NAME,
                                                             "description": "Berth REST API tests"}}
                            ).body["application_credential"]
        out[REST_APPCRED_USER] = dataclasses.replace(owner, appcred_id=cred["id"], appcred_secret=cred["secret"])
        return out

    # -- client configuration --------------------------------------------------------------------

    def cloud_config(self, *, auth: str = "password", region: str | None = None, interface: str = "public",
                     extra: dict | None = None, user: KeystoneUser | str | None = None) -> dict:
        """One cloud's entry of clouds.yaml (see `clouds_yaml`). `user`: one of `users()` (or its
        name) instead of berth-svc: its password on its project, or its application credential."""
        if isinstance(user, str):
            user = self.rest_user(user)
        if auth == "password":
            cfg: dict[str, Any] = {"auth_type": "password", "auth": {
                "auth_url": self.auth_url, "username": user.name if user else self.user,
                "password": user.password if user else self.password,
                "project_name": user.project if user else self.project, "user_domain_name": self.domain,
                "project_domain_name": self.domain}}
        elif auth == "appcred":
            if user is not None and not user.appcred_id:
                raise ValueError(f"{user.name} has no application credential (only {REST_APPCRED_USER} has one)")
            cfg = {"auth_type": "v3applicationcredential", "auth": {
                "auth_url": self.auth_url, "application_credential_id": user.appcred_id if user else self.appcred_id,
                "application_credential_secret": user.appcred_secret if user else self.appcred_secret}}
        else:
            raise ValueError(f"auth must be 'password' or 'appcred', not {auth!r}")
        cfg.update({"region_name": region or self.region, "interface": interface, "identity_api_version": 3})
        return _merge(cfg, extra or {})

    def clouds_yaml(self, path: str | os.PathLike, *, auth: str = "password", cloud: str = "berth-test",
                    region: str | None = None, interface: str = "public", extra: dict | None = None,
                    secure: str | os.PathLike | None = None, user: KeystoneUser | str | None = None) -> Path:
        """Writes a clouds.yaml (openstacksdk format) with one cloud `cloud` and returns its path.

        auth="password": auth_type password, berth-svc's current password, project berth,
        user/project domain Default. auth="appcred": auth_type v3applicationcredential with the
        application credential's id and secret. `extra` is deep-merged into the cloud's entry; a None
        value deletes a key (e.g. extra={"auth": {"password": "wrong"}}, or {"auth": {"auth_url": None}}).
        `secure`: also write that secure.yaml and move the password / secret there (the overlay).
        `user`: one of `users()` (or its name) instead of berth-svc."""
        cfg = self.cloud_config(auth=auth, region=region, interface=interface, extra=extra, user=user)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if secure is not None:
            secrets_part = {k: cfg["auth"].pop(k) for k in ("password", "application_credential_secret")
                            if k in cfg.get("auth", {})}
            Path(secure).write_text("# written by keystone_fixture.py\n"
                                    + to_yaml({"clouds": {cloud: {"auth": secrets_part}}}) + "\n")
        path.write_text("# written by keystone_fixture.py\n" + to_yaml({"clouds": {cloud: cfg}}) + "\n")
        return path

    def cli_env(self, user: KeystoneUser | str | None = None, *, auth: str = "password",
                region: str | None = None, interface: str = "public", extra: dict[str, str] | None = None,
                base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment for the `openstack` CLI (or any OS_*-reading client) as `user` (one of
        `users()`, or its name; None: berth-svc): `base` (default this process's environment)
        without any OS_* variable, plus OS_AUTH_URL, OS_IDENTITY_API_VERSION=3, OS_INTERFACE,
        OS_REGION_NAME and either (auth="password") OS_AUTH_TYPE=password, OS_USERNAME,
        OS_PASSWORD, OS_PROJECT_NAME, OS_PROJECT_ID, OS_USER_DOMAIN_NAME, OS_PROJECT_DOMAIN_NAME or
        (auth="appcred") OS_AUTH_TYPE=v3applicationcredential, OS_APPLICATION_CREDENTIAL_ID,
        OS_APPLICATION_CREDENTIAL_SECRET (no project: the credential is scoped). `extra` is added
        last; a value of None there removes that variable."""
        if isinstance(user, str):
            user = self.rest_user(user)
        env = {k: v for k, v in (os.environ if base is None else base).items() if not k.startswith("OS_")}
        env.update(OS_AUTH_URL=self.auth_url, OS_IDENTITY_API_VERSION="3", OS_INTERFACE=interface,
                   OS_REGION_NAME=region or self.region)
        if auth == "password":
            env.update(OS_AUTH_TYPE="password", OS_USERNAME=user.name if user else self.user,
                       OS_PASSWORD=user.password if user else self.password,
                       OS_PROJECT_NAME=user.project if user else self.project,
                       OS_PROJECT_ID=user.project_id if user else self.project_id,
                       OS_USER_DOMAIN_NAME=self.domain, OS_PROJECT_DOMAIN_NAME=self.domain)
        elif auth == "appcred":
            if user is not None and not user.appcred_id:
                raise ValueError(f"{user.name} has no application credential (only {REST_APPCRED_USER} has one)")
            env.update(OS_AUTH_TYPE="v3applicationcredential",
                       OS_APPLICATION_CREDENTIAL_ID=user.appcred_id if user else self.appcred_id,
                       OS_APPLICATION_CREDENTIAL_SECRET=user.appcred_secret if user else self.appcred_secret)
        else:
            raise ValueError(f"auth must be 'password' or 'appcred', not {auth!r}")
        for k, v in (extra or {}).items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        return env

    def admin_credentials(self) -> dict:
        """What a separate process needs to validate tokens as the bootstrap admin."""
        return {"auth_url": self.auth_url, "username": ADMIN_USER, "password": self.admin_password,
                "project_name": ADMIN_PROJECT, "user_domain_name": self.domain,
                "project_domain_name": self.domain}

    def describe(self) -> dict:
        return {"auth_url": self.auth_url, "region": self.region, "expiration": self.expiration, "cache": self.cache,
                "domain": self.domain, "project": self.project, "project_id": self.project_id,
                "tenant_project": self.tenant_project, "tenant_project_id": self.tenant_project_id,
                "user": self.user, "user_id": self.user_id, "password": self.password,
                "appcred_id": self.appcred_id, "appcred_secret": self.appcred_secret,
                "admin": self.admin_credentials(), "workdir": str(self.workdir),
                "rest_users": {n: dataclasses.asdict(u) for n, u in (self._users or {}).items()},
                "timings": {k: round(v, 2) for k, v in self.timings.items()}}


# ------------------------------------------------------------------------------------------------
# One Keystone per option set per process, and the pytest fixtures
# ------------------------------------------------------------------------------------------------

_instances: dict[tuple, Keystone] = {}
_failures: dict[tuple, BaseException] = {}
_instances_lock = threading.Lock()


def get_keystone(*, expiration: int = DEFAULT_EXPIRATION, cache: bool = True) -> Keystone:
    """The process's Keystone with these options, started on first use (stopped at exit, or by
    `stop_all()`). Raises KeystoneUnavailable when Keystone cannot be installed here. A failed
    start is remembered, so later callers fail at once with the same error."""
    key = (int(expiration), bool(cache))
    with _instances_lock:
        if key in _instances:
            return _instances[key]
        if key in _failures:
            raise _failures[key]
        try:
            ks = Keystone(expiration=int(expiration), cache=bool(cache)).start()
        except BaseException as e:
            _failures[key] = e
            raise
        _instances[key] = ks
        return ks


def stop_all() -> None:
    with _instances_lock:
        for ks in _instances.values():
            ks.stop()
        _instances.clear()


atexit.register(stop_all)


_warned: set[str] = set()


def _print_uncaptured(config: Any, text: str) -> None:
    """Prints past pytest's output capture (fd-level capture swallows even sys.__stderr__)."""
    capman = config.pluginmanager.getplugin("capturemanager") if config is not None else None
    if capman is not None:
        with capman.global_and_fixture_disabled():
            print(text, file=sys.stderr, flush=True)
    else:
        print(text, file=sys.stderr, flush=True)


def _skip_or_fail(reason: str, config: Any = None) -> None:
    if os.environ.get("BERTH_REQUIRE_KEYSTONE") == "1":
        pytest.fail(f"BERTH_REQUIRE_KEYSTONE=1 but {reason}", pytrace=False)
    first = reason.splitlines()[0]
    if reason not in _warned:  # the banner once per session, the warning and the skip per test
        _warned.add(reason)
        banner = "!" * 78
        _print_uncaptured(config, f"\n{banner}\nWARNING: {reason}\nThe real-Keystone tests did NOT run "
                                  f"(CI sets BERTH_REQUIRE_KEYSTONE=1 to make this fatal).\n{banner}")
    warnings.warn(f"{first}: the real-Keystone tests did NOT run")
    pytest.skip(first)


_cleanup_registered: set[int] = set()


def keystone_or_skip(*, expiration: int = DEFAULT_EXPIRATION, cache: bool = True, config: Any = None) -> Keystone:
    """`get_keystone`, turning "cannot be installed" into a loud skip (or a failure, in CI).
    `config`: pytest's config (request.config): the warning banner is printed past output capture,
    and every Keystone is stopped when the session ends (otherwise at exit)."""
    if config is not None and id(config) not in _cleanup_registered:
        _cleanup_registered.add(id(config))
        config.add_cleanup(stop_all)
    try:
        return get_keystone(expiration=expiration, cache=cache)
    except KeystoneUnavailable as e:
        _skip_or_fail(str(e), config)
        raise  # not reached


# Each of these fixtures stands alone, so a module may import any one of them. A module that
# imports one gets its own copy of it, but all copies share the process's Keystone instances.

@pytest.fixture(scope="session")
def keystone_server(request):
    """The session's Keystone (default options), for module- or session-scoped fixtures."""
    return keystone_or_skip(config=request.config)


@pytest.fixture
def keystone(request):
    """The session's Keystone (the same object as `keystone_server`); after the test, berth-svc's
    password is restored if the test changed it."""
    ks = keystone_or_skip(config=request.config)
    yield ks
    if ks.running:
        ks.restore()


@pytest.fixture(scope="session")
def keystone_factory(request):
    """`keystone_factory(expiration=60, cache=True)` -> a Keystone with those options (one per option set)."""
    def make(*, expiration: int = DEFAULT_EXPIRATION, cache: bool = True) -> Keystone:
        return keystone_or_skip(expiration=expiration, cache=cache, config=request.config)
    return make


# ------------------------------------------------------------------------------------------------
# By hand
# ------------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Start a real Keystone for Berth, print its details, wait for Ctrl-C.")
    ap.add_argument("--expiration", type=int, default=DEFAULT_EXPIRATION, help="token lifetime, seconds")
    ap.add_argument("--no-cache", action="store_true", help="disable Keystone's in-process cache")
    ap.add_argument("--compute-url", help="register a compute (nova) service with this endpoint URL")
    ap.add_argument("--reservation-url", help="register a reservation (blazar) service with this endpoint URL")
    ap.add_argument("--rest-users", action="store_true",
                    help="create the REST API tests' users (alice, bob, ...; with --clouds-yaml: a cloud each)")
    ap.add_argument("--clouds-yaml", help="write a clouds.yaml here (clouds berth-test and berth-test-appcred)")
    args = ap.parse_args(argv)
    ks = Keystone(expiration=args.expiration, cache=not args.no_cache)
    try:
        ks.start()
        if args.compute_url:
            ks.register_compute(args.compute_url)
        if args.reservation_url:
            ks.register_reservation(args.reservation_url)
        if args.rest_users:
            ks.users()
        if args.clouds_yaml:
            clouds = {"berth-test": ks.cloud_config(auth="password"),
                      "berth-test-appcred": ks.cloud_config(auth="appcred")}
            for name, u in (ks._users or {}).items():
                clouds[name] = ks.cloud_config(auth="password", user=u)
                if u.appcred_id:
                    clouds[f"{name}-appcred"] = ks.cloud_config(auth="appcred", user=u)
            Path(args.clouds_yaml).write_text(to_yaml({"clouds": clouds}) + "\n")
        print(json.dumps(ks.describe(), indent=2), flush=True)
        print(f"Keystone at {ks.auth_url}; Ctrl-C stops it.", file=sys.stderr, flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        while ks.running:
            time.sleep(1)
        print("gunicorn exited:\n" + ks.log_tail(), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        ks.stop()


if __name__ == "__main__":
    sys.exit(main())
