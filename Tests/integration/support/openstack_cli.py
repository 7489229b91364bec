"""The real OpenStack command-line client, for the tests of berthd's Blazar-compatible REST API.

python-openstackclient 10.5.0 with the python-blazarclient 4.6.0 plugin (`openstack reservation
...`) runs from its own virtualenv, `<repo>/.venv-osc` (git-ignored), made by
`Tests/openstack-clients/setup-venv.sh` from `Tests/openstack-clients/requirements-clients.txt`.
CI runs that script in `.ci/run`; elsewhere the first test that needs the CLI runs it (about
40-50 s cold, then reused). Neither the CLI nor blazarclient is imported into the test process
(its venv is `.venv`): both run as subprocesses.

- `OpenStackCLI.run(env, *args)`: `.venv-osc/bin/openstack ARGS` with exactly `env` (build it with
  `Keystone.cli_env(user)` or `noauth_env(endpoint, token)`); returns a `CLIResult` (returncode,
  stdout, stderr); raises `CLIError` (with the same fields) on a non-zero exit unless `check=False`.
- `OpenStackCLI.json(env, *args)`: the same with `-f json` appended; returns the parsed output. Only
  for commands that print a table or a record (list, show, create: blazarclient prints "Created a
  new lease:" before the JSON, which is skipped); `delete` and `set` print one line ("Deleted
  lease: NAME", "Updated lease: NAME") and take no -f: use `run`.
- `OpenStackCLI.blazarclient(env, code)` (also `run_blazarclient_py(env, code)`): runs `code` in
  `.venv-osc/bin/python` with `client` = `blazarclient.client.Client(1, session=<keystoneauth
  session from env's OS_* variables>, service_type='reservation')` (and `session`, `json`,
  `os` in scope); `code` sets `result`, which comes back parsed from JSON. An exception in `code`
  is raised here as `BlazarClientCallError` (`type`, `message`, `code`: the HTTP status of a
  BlazarClientException, `traceback`). Note: blazarclient's own exception keeps that status in
  `e.kwargs["code"]`; its `e.code` is always the class attribute 500. Its message is
  "ERROR: " + the body's `error_message` (or the whole body when there is none).

python-blazarclient 4.6.0 prints `Could not load 'reservation_host_unset': module
'blazarclient.v1.shell_commands.hosts' has no attribute 'UnsetAttributeHost'` on stderr at every
`openstack` run (its entry point names a class that is spelled UnsetAttributesHost): harmless, and
left out of `CLIResult.stderr_clean` and of `CLIError`'s message. `openstack reservation host unset`
therefore does not exist in that version.

Fixture: `openstack_cli` (session scope): an `OpenStackCLI`, the venv made on first use. When the
clients cannot be installed (no PyPI, no venv module) it skips with a loud warning, unless
BERTH_REQUIRE_KEYSTONE=1 (as in CI): then it fails.

Example:

    from support.keystone_fixture import keystone  # noqa: F401
    from support.openstack_cli import openstack_cli  # noqa: F401

    def test_member_lists_leases(keystone, openstack_cli, blazar_api):
        keystone.register_reservation(blazar_api.url)            # http://127.0.0.1:PORT/v1
        env = keystone.cli_env("alice")                          # or auth="appcred"
        assert openstack_cli.json(env, "reservation", "lease", "list") == []
        with pytest.raises(CLIError) as e:
            openstack_cli.run(keystone.cli_env("carol"), "reservation", "lease", "create", ...)
        assert e.value.returncode == 1 and "403" in e.value.stderr
        leases = openstack_cli.blazarclient(env, "result = client.lease.list()")

Without Keystone (a server that takes `X-Auth-Token: USER:PROJECT` as it is): `noauth_env(url,
"admin:p1")` sets OS_AUTH_TYPE=admin_token, OS_ENDPOINT and OS_TOKEN, the same as `openstack
--os-auth-type admin_token --os-endpoint http://127.0.0.1:PORT/v1 --os-token admin:p1 ...`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.keystone_fixture import _skip_or_fail

REPO = Path(__file__).resolve().parents[3]
CLIENTS_DIR = REPO / "Tests" / "openstack-clients"
SETUP_SCRIPT = CLIENTS_DIR / "setup-venv.sh"
VENV = Path(os.environ.get("BERTH_OSC_VENV") or REPO / ".venv-osc")
OPENSTACK = VENV / "bin" / "openstack"
PYTHON = VENV / "bin" / "python"

#: What python-blazarclient 4.6.0 prints on every run (a misspelt entry point).
KNOWN_NOISE = re.compile(r"^Could not load 'reservation_host_unset': .*'UnsetAttributeHost'\s*$")


class OpenStackCLIUnavailable(RuntimeError):
    """The OpenStack clients could not be installed here (their venv could not be made)."""


def _clean(stderr: str) -> str:
    return "\n".join(line for line in stderr.splitlines() if not KNOWN_NOISE.match(line))


@dataclass
class CLIResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def stderr_clean(self) -> str:
        """stderr without python-blazarclient's known noise line."""
        return _clean(self.stderr)


class CLIError(RuntimeError):
    """An `openstack` run that exited non-zero (or printed no JSON when JSON was asked for).
    `returncode`, `stdout`, `stderr`, `stderr_clean`, `args` are those of the run."""

    def __init__(self, result: CLIResult, what: str | None = None):
        self.result = result
        self.args_ = result.args
        self.returncode = result.returncode
        self.stdout = result.stdout
        self.stderr = result.stderr
        self.stderr_clean = result.stderr_clean
        what = what or f"exited {result.returncode}"
        super().__init__(f"`openstack {' '.join(result.args)}` {what}\n--- stdout ---\n{result.stdout[-4000:]}"
                         f"\n--- stderr ---\n{self.stderr_clean[-4000:]}")


class BlazarClientCallError(RuntimeError):
    """An exception raised by the code run with python-blazarclient (`OpenStackCLI.blazarclient`):
    `type` (e.g. "BlazarClientException"), `message`, `code` (HTTP status, when the exception has
    one), `traceback`, and the run's `stdout`/`stderr`."""

    def __init__(self, error: dict, stdout: str, stderr: str):
        self.type = error.get("type")
        self.message = error.get("message")
        self.code = error.get("code")
        self.traceback = error.get("traceback", "")
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(f"{self.type} (code {self.code}): {self.message}\n{self.traceback[-3000:]}")


# ------------------------------------------------------------------------------------------------
# The virtualenv
# ------------------------------------------------------------------------------------------------

_venv_lock = threading.Lock()
_venv_state: dict[str, Any] = {}


def ensure_venv(timeout: float = 900) -> Path:
    """Runs Tests/openstack-clients/setup-venv.sh once per process; returns the venv or raises
    OpenStackCLIUnavailable."""
    with _venv_lock:
        if "error" in _venv_state:
            raise OpenStackCLIUnavailable(_venv_state["error"])
        if "venv" in _venv_state:
            return _venv_state["venv"]
        t0 = time.monotonic()
        try:
            proc = subprocess.run(["bash", str(SETUP_SCRIPT)], capture_output=True, text=True, timeout=timeout,
                                  env=dict(os.environ, BERTH_OSC_VENV=str(VENV)))
        except (OSError, subprocess.TimeoutExpired) as e:
            _venv_state["error"] = f"{SETUP_SCRIPT.name} could not run: {e}"
            raise OpenStackCLIUnavailable(_venv_state["error"]) from None
        if proc.returncode != 0:
            lines = (proc.stdout + proc.stderr).strip().splitlines() or ["(no output)"]
            _venv_state["error"] = (f"the OpenStack clients could not be installed into {VENV} "
                                    f"(Tests/openstack-clients/setup-venv.sh exited {proc.returncode}: "
                                    f"{lines[-1].strip()})\n"
                                    + "\n".join(lines[-15:]))
            raise OpenStackCLIUnavailable(_venv_state["error"])
        _venv_state["venv"] = VENV
        _venv_state["seconds"] = time.monotonic() - t0
        _venv_state["output"] = proc.stdout.strip()
        return VENV


# ------------------------------------------------------------------------------------------------
# Environments
# ------------------------------------------------------------------------------------------------

def base_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """`base` (default this process's environment) without OS_* and PYTHON* variables."""
    return {k: v for k, v in (os.environ if base is None else base).items()
            if not k.startswith(("OS_", "PYTHON"))}


def noauth_env(endpoint: str, token: str, *, base: dict[str, str] | None = None) -> dict[str, str]:
    """The `openstack` CLI against a fixed endpoint with a literal token, no Keystone: every request
    goes to `endpoint` + /leases, /os-hosts... with `X-Auth-Token: token` (e.g. "admin:p1" for a
    server that trusts USER:PROJECT). Same as `--os-auth-type admin_token --os-endpoint ENDPOINT
    --os-token TOKEN`."""
    env = base_env(base)
    env.update(OS_AUTH_TYPE="admin_token", OS_ENDPOINT=endpoint, OS_TOKEN=token)
    return env


# ------------------------------------------------------------------------------------------------
# The CLI and the library
# ------------------------------------------------------------------------------------------------

_MARKER = "@@berth-blazarclient-result@@ "

# Runs in .venv-osc's Python: argv[1] is the test's code. A keystoneauth session from the OS_*
# variables (the plugin's own option names: OS_AUTH_URL, OS_USERNAME, OS_APPLICATION_CREDENTIAL_ID...),
# or, for OS_AUTH_TYPE=admin_token / none, a fixed endpoint (OS_ENDPOINT) with OS_TOKEN.
_PRELUDE = r"""
import json, os, sys, traceback
from keystoneauth1 import loading, session as ks_session
from blazarclient import client as blazar_client
env = os.environ
auth_type = env.get("OS_AUTH_TYPE", "password")
kwargs = {"service_type": "reservation", "interface": env.get("OS_INTERFACE", "public"),
          "region_name": env.get("OS_REGION_NAME")}
if auth_type in ("admin_token", "none"):
    loader = loading.get_plugin_loader(auth_type)
    opts = {"endpoint": env["OS_ENDPOINT"]}
    if auth_type == "admin_token":
        opts["token"] = env["OS_TOKEN"]
    auth = loader.load_from_options(**opts)
    kwargs["endpoint_override"] = env["OS_ENDPOINT"]
else:
    loader = loading.get_plugin_loader(auth_type)
    opts = {}
    for o in loader.get_options():
        for name in [o.name] + [d.name for d in o.deprecated]:
            var = "OS_" + name.upper().replace("-", "_")
            if var in env:
                opts[o.dest] = env[var]
                break
    auth = loader.load_from_options(**opts)
    if env.get("OS_ENDPOINT"):
        kwargs["endpoint_override"] = env["OS_ENDPOINT"]
session = ks_session.Session(auth=auth)
client = blazar_client.Client(1, session=session, **kwargs)
ns = {"client": client, "session": session, "json": json, "os": os, "result": None}
try:
    exec(compile(sys.argv[1], "<blazarclient test code>", "exec"), ns)
    out = {"result": ns.get("result")}
except Exception as e:
    # BlazarClientException keeps the HTTP status in e.kwargs["code"]; e.code is the class's 500.
    code = (getattr(e, "kwargs", None) or {}).get("code", getattr(e, "code", None))
    out = {"error": {"type": type(e).__name__, "module": type(e).__module__, "message": str(e),
                     "code": code, "traceback": traceback.format_exc()}}
sys.stdout.flush()
sys.stdout.write("\n" + MARKER + json.dumps(out, default=str) + "\n")
""".replace("MARKER", repr(_MARKER))


class OpenStackCLI:
    """Runs `.venv-osc/bin/openstack` and `.venv-osc/bin/python` (see the module's docstring)."""

    def __init__(self, venv: Path = VENV, *, timeout: float = 120.0):
        self.venv = Path(venv)
        self.timeout = timeout
        self.history: list[CLIResult] = []

    @property
    def openstack(self) -> Path:
        return self.venv / "bin" / "openstack"

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def run(self, env: dict[str, str], *args: str, check: bool = True, timeout: float | None = None,
            input: str | None = None) -> CLIResult:
        """`openstack ARGS` with exactly `env`. Raises CLIError on a non-zero exit when `check`."""
        t0 = time.monotonic()
        try:
            proc = subprocess.run([str(self.openstack), *args], env=env, capture_output=True, text=True,
                                  timeout=timeout or self.timeout, input=input,
                                  stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            res = CLIResult(list(args), -9, _text(e.stdout), _text(e.stderr), time.monotonic() - t0)
            raise CLIError(res, f"did not finish in {timeout or self.timeout} s") from None
        res = CLIResult(list(args), proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)
        self.history.append(res)
        if check and proc.returncode != 0:
            raise CLIError(res)
        return res

    def json(self, env: dict[str, str], *args: str, **kw: Any) -> Any:
        """`openstack ARGS -f json`; the parsed output (see `parse_json_output`: blazarclient's
        create commands print a line before the JSON). Raises CLIError on a non-zero exit or when
        stdout has no JSON."""
        res = self.run(env, *args, "-f", "json", **kw)
        try:
            return parse_json_output(res.stdout)
        except ValueError:
            raise CLIError(res, "printed no JSON") from None

    __call__ = json

    def blazarclient(self, env: dict[str, str], code: str, *, timeout: float | None = None) -> Any:
        """Runs `code` with python-blazarclient's `client` (see the module's docstring); returns its
        `result`. Raises BlazarClientCallError for an exception in `code`, RuntimeError when the
        script itself failed."""
        try:
            proc = subprocess.run([str(self.python), "-c", _PRELUDE, code], env=env, capture_output=True,
                                  text=True, timeout=timeout or self.timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"blazarclient code did not finish in {timeout or self.timeout} s:\n{code}") from None
        line = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith(_MARKER)), None)
        if line is None:
            raise RuntimeError(f"blazarclient script exited {proc.returncode} without a result:\n"
                               f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}")
        out = json.loads(line[len(_MARKER):])
        if "error" in out:
            raise BlazarClientCallError(out["error"], proc.stdout, proc.stderr)
        return out["result"]


def parse_json_output(stdout: str) -> Any:
    """The JSON that `openstack ... -f json` printed. python-blazarclient's create commands print
    "Created a new lease:" (host, ...) on stdout before it, even with -f json: the text from the
    first line that starts with `{` or `[` is parsed then. Raises ValueError when there is none."""
    try:
        return json.loads(stdout)
    except ValueError:
        pass
    lines = stdout.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith(("{", "[")):
            return json.loads("\n".join(lines[i:]))
    raise ValueError(f"no JSON in {stdout[:300]!r}")


def _text(b: bytes | str | None) -> str:
    if b is None:
        return ""
    return b if isinstance(b, str) else b.decode(errors="replace")


_default_cli: OpenStackCLI | None = None


def run_blazarclient_py(env: dict[str, str], code: str, **kw: Any) -> Any:
    """`OpenStackCLI().blazarclient(env, code)`, making the venv if needed (raises
    OpenStackCLIUnavailable when it cannot be made)."""
    global _default_cli
    ensure_venv()
    if _default_cli is None:
        _default_cli = OpenStackCLI()
    return _default_cli.blazarclient(env, code, **kw)


def openstack_cli_or_skip(config: Any = None) -> OpenStackCLI:
    """An OpenStackCLI, its venv made first; "cannot be installed" becomes a loud skip (a failure
    with BERTH_REQUIRE_KEYSTONE=1)."""
    try:
        ensure_venv()
    except OpenStackCLIUnavailable as e:
        _skip_or_fail(str(e), config)
    return OpenStackCLI()


@pytest.fixture(scope="session")
def openstack_cli(request):
    """An `OpenStackCLI` (the real `openstack` with the blazarclient plugin), installed on first use."""
    return openstack_cli_or_skip(request.config)
