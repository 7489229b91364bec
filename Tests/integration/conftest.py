"""Fixtures for Berth's integration tests.

- `daemon`: a `berthtest.Berthd` controller, not yet started: `daemon.start(args=[], config=None,
  uid=None, gid=None)`, `daemon.restart()`, `daemon.kill()` (SIGKILL), `daemon.terminate()`
  (SIGTERM, returns the exit code), `daemon.client()`. Each test gets its own socket, state
  directory (under tmp_path) and NOTIFY_SOCKET, so tests can run in parallel.
- `berthd`: `daemon` already started with the defaults (`--clock manual --now 2030-01-01T00:00:00Z`).
- `rpc`: an admin (root) client connected to `berthd`.
- `make_group`: `make_group(role)` creates a throwaway system group for a role test and returns
  (name, gid); every group it made is removed after the test (root only).
- `nofile_limit`: a raised RLIMIT_NOFILE for tests that open many connections.

Helpers for driving berthd (client, daemon controller, polling, calls from other uids) live in
`berthtest.py`; emulated services and C shims in the `support` package.

The Python client package (clients/python/src) is put first on sys.path, so its tests import the
working tree's `berth_client` whether or not the package is installed in the venv.

When a test fails, every berthd log it produced is printed with the failure.
"""

from __future__ import annotations

import grp
import os
import resource
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "clients" / "python" / "src"))

from berthtest import Berthd, wait_until  # noqa: E402


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def daemon(request, tmp_path):
    d = Berthd(tmp_path)
    yield d
    d.cleanup()
    failed = any(getattr(request.node, "rep_" + w, None) is not None and getattr(request.node, "rep_" + w).failed
                 for w in ("setup", "call"))
    if failed:
        # Shown under "Captured stdout teardown" of the failing test.
        print(d.all_logs())


@pytest.fixture
def berthd(daemon):
    return daemon.start()


@pytest.fixture
def rpc(berthd):
    return berthd.client()


@pytest.fixture
def make_group():
    """Creates throwaway system groups (removed afterwards); `make_group(role)` returns (name, gid)."""
    made = []

    def make(role: str) -> tuple[str, int]:
        name = f"bt{role[:4]}{os.getpid() % 100000}{secrets.token_hex(2)}"

        def added() -> bool:
            p = subprocess.run(["groupadd", "--system", name], capture_output=True, text=True)
            # 10: another test holds the /etc/group lock for a moment; try again.
            if p.returncode not in (0, 10):
                raise AssertionError(f"groupadd {name} failed: {p.stderr}")
            return p.returncode == 0

        wait_until(added, f"groupadd {name} (/etc/group stayed locked)", timeout=10, interval=0.1)
        made.append(name)
        return name, grp.getgrnam(name).gr_gid

    yield make
    for name in made:
        subprocess.run(["groupdel", name], capture_output=True)


@pytest.fixture
def nofile_limit():
    """Raises this process's soft RLIMIT_NOFILE for tests that open many connections."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 4096 if hard == resource.RLIM_INFINITY else min(hard, 4096)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    yield want
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

