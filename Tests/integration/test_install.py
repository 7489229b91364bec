"""`make install` into a temporary DESTDIR, then the installed files put to use the way a package's
post-install would: systemd-sysusers and systemd-tmpfiles with --root=DESTDIR create the accounts and
directories from the installed sysusers.d/tmpfiles.d files, and the installed binaries run.

BUILD=debug with BUILD_DIR=<the binaries under test> installs what was already built, so this costs no
second (release) build.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from berthtest import BERTHCTL, BERTHD, REPO


def make_install(destdir: Path, prefix: str) -> subprocess.CompletedProcess:
    build_dir = os.path.dirname(BERTHD)
    assert os.path.dirname(BERTHCTL) == build_dir, "berthd and berthctl must come from one build directory"
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(REPO), "install", "BUILD=debug", f"BUILD_DIR={build_dir}",
         f"DESTDIR={destdir}", f"PREFIX={prefix}"],
        capture_output=True, text=True, timeout=120)


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.mark.parametrize("prefix,libdir", [("/usr/local", "usr/local/lib"), ("/usr", "usr/lib")])
def test_make_install_into_destdir(tmp_path, prefix, libdir):
    dest = tmp_path / "root"
    p = make_install(dest, prefix)
    assert p.returncode == 0, p.stdout + p.stderr
    bindir = dest / prefix.lstrip("/") / "bin"
    expected = {
        f"{prefix.lstrip('/')}/bin/berthd": 0o755,
        f"{prefix.lstrip('/')}/bin/berthctl": 0o755,
        f"{libdir}/systemd/system/berthd.service": 0o644,
        f"{libdir}/systemd/system/berthd.socket": 0o644,
        f"{libdir}/sysusers.d/berth.conf": 0o644,
        f"{libdir}/tmpfiles.d/berth.conf": 0o644,
        "etc/berth/berthd.json.example": 0o640,
        f"{prefix.lstrip('/')}/share/doc/berth/operations.md": 0o644,
        f"{prefix.lstrip('/')}/libexec/berth/berth-slurm-hook": 0o755,
    }
    for rel, m in expected.items():
        f = dest / rel
        assert f.is_file(), f"{rel} not installed; tree: {sorted(str(x.relative_to(dest)) for x in dest.rglob('*'))}"
        assert mode(f) == m, f"{rel}: mode {oct(mode(f))}, expected {oct(m)}"
    # Nothing lands outside DESTDIR's prefix dirs and /etc/berth.
    top = {x.relative_to(dest).parts[0] for x in dest.rglob("*")}
    assert top == {"usr", "etc"}, top

    # The unit starts the installed binary; everything else is the repository's unit, unchanged.
    unit = (dest / libdir / "systemd/system/berthd.service").read_text()
    source = (REPO / "systemd/berthd.service").read_text()
    assert f"ExecStart={prefix}/bin/berthd --socket /run/berth/berth.sock" in unit
    assert unit == source.replace("/usr/local/bin/berthd", f"{prefix}/bin/berthd")
    assert (dest / libdir / "systemd/system/berthd.socket").read_text() == (REPO / "systemd/berthd.socket").read_text()
    assert (dest / "etc/berth/berthd.json.example").read_text() == (REPO / "docs/berthd.example.json").read_text()

    # The installed binaries run.
    for exe, arg, want in (("berthd", "--version", "0."), ("berthctl", "--help", "calendar")):
        out = subprocess.run([str(bindir / exe), arg], capture_output=True, text=True, timeout=30)
        assert out.returncode == 0 and want in out.stdout, out


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("systemd-sysusers") or not shutil.which("systemd-tmpfiles"),
                    reason="needs root and systemd-sysusers/systemd-tmpfiles (Debian package systemd)")
def test_installed_sysusers_and_tmpfiles_apply(tmp_path):
    dest = tmp_path / "root"
    p = make_install(dest, "/usr")
    assert p.returncode == 0, p.stdout + p.stderr
    # As a package's post-install: users first, then the directories they own.
    for cmd in (["systemd-sysusers", f"--root={dest}"], ["systemd-tmpfiles", f"--root={dest}", "--create"]):
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"{cmd}: {out.stdout}{out.stderr}"
    users = {l.split(":")[0]: l.split(":") for l in (dest / "etc/passwd").read_text().splitlines()}
    groups = {l.split(":")[0]: l.split(":") for l in (dest / "etc/group").read_text().splitlines()}
    assert set(groups) >= {"berth", "berth-portal", "berth-hook"}, groups
    berth_uid, berth_gid = int(users["berth"][2]), int(users["berth"][3])
    assert users["berth"][5] == "/var/lib/berth" and users["berth"][6].endswith("nologin")
    assert berth_gid == int(groups["berth"][2])
    for rel, m, uid, gid in [("run/berth", 0o755, berth_uid, berth_gid),
                             ("var/lib/berth", 0o750, berth_uid, berth_gid),
                             ("etc/berth", 0o750, 0, berth_gid)]:
        st = (dest / rel).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (m, uid, gid), rel
