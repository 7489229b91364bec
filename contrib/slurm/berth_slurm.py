"""Berth <-> Slurm glue: the preemption hook, and Slurm's ResumeProgram/SuspendProgram.

Python 3 standard library only. The three executables next to this file (berth-slurm-hook,
berth-resume, berth-suspend) import it; see docs/slurm.md for how they fit together.

Settings come from the environment, else from a KEY=VALUE file (BERTH_SLURM_CONFIG, else
berth-slurm.conf next to $SLURM_CONF, else /etc/berth/berth-slurm.conf); the environment wins.
Slurm runs ResumeProgram/SuspendProgram with an almost empty environment (SLURM_CONF and little
else), so the file is how they learn the socket and project.

Times: berthd speaks RFC 3339 UTC; Slurm reads and prints times in the local zone of the process
running scontrol. Every scontrol call here runs with TZ=UTC, so the reservation starts at the exact
instant berthd named whatever the machine's zone is (view it with `TZ=UTC scontrol show res`).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from typing import Any

# Preemptible statuses that still hold (or will hold) a VM for the node.
LIVE_STATUSES = ("pending", "running", "preempting")

DEFAULTS = {
    "BERTHCTL": "berthctl",
    "SCONTROL": "scontrol",
    "BERTH_SLURM_RESV_PREFIX": "berth-",
    "BERTH_SLURM_RESV_USERS": "root",
    "BERTH_SLURM_RESV_FLAGS": "MAINT,IGNORE_JOBS",
    # Length of the Slurm reservation when the event carries no BERTH_NEEDED_UNTIL.
    "BERTH_SLURM_RESV_DEFAULT_S": "86400",
    "BERTH_SLURM_COMMAND_TIMEOUT_S": "10",
    "BERTH_SLURM_SYSLOG": "1",
    "BERTH_SLURM_DOWN_ON_FAILURE": "1",
}

# Keys read from the config file (and the environment).
KNOWN_KEYS = set(DEFAULTS) | {
    "BERTH_SOCKET", "BERTH_PROJECT_ID", "BERTH_VCPUS", "BERTH_MEMORY_MB", "BERTH_DISK_GB",
    "BERTH_GPU_PROFILE", "BERTH_MIN_LIFETIME", "BERTH_SERVER_TEMPLATE", "PATH",
}

EXTRA_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def _stop_on_sigterm() -> None:
    """berthd stops a hook run that outlives hook_timeout_s with SIGTERM: turn it into an exception
    so a running scontrol/berthctl child is killed too (subprocess.run kills it on the way out)."""
    import signal

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (imported by a test harness)
        pass


class Failure(Exception):
    """A failure with a message for stderr/syslog; `code` is the exit status."""

    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


# ------------------------------------------------------------------------------------------------
# Configuration and logging
# ------------------------------------------------------------------------------------------------

def config_path(env: dict[str, str]) -> str | None:
    explicit = env.get("BERTH_SLURM_CONFIG")
    if explicit:
        return explicit
    candidates = []
    if env.get("SLURM_CONF"):
        candidates.append(os.path.join(os.path.dirname(env["SLURM_CONF"]), "berth-slurm.conf"))
    candidates.append("/etc/berth/berth-slurm.conf")
    for c in candidates:
        if os.path.isfile(c):
            return c
    return None


def read_config_file(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise Failure(f"cannot read config file {path}: {e.strerror}", 2)
    for n, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):].strip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
            raise Failure(f"{path}:{n}: expected KEY=VALUE, got {raw!r}", 2)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key] = value
    return out


class Config:
    def __init__(self, env: dict[str, str] | None = None):
        env = dict(os.environ if env is None else env)
        self.path = config_path(env)
        values = dict(DEFAULTS)
        if self.path:
            values.update(read_config_file(self.path))
        values.update({k: v for k, v in env.items() if k in KNOWN_KEYS or k.startswith("BERTH_SLURM_")})
        # Slurm's power-saving programs get no PATH: add the usual places.
        path = values.get("PATH") or env.get("PATH") or ""
        parts = [p for p in path.split(":") if p]
        parts += [p for p in EXTRA_PATH if p not in parts]
        values["PATH"] = ":".join(parts)
        self.values = values
        self.env = env

    def get(self, key: str, default: str | None = None) -> str | None:
        v = self.values.get(key)
        return v if v not in (None, "") else default

    def int(self, key: str, default: int | None = None) -> int | None:
        v = self.get(key)
        if v is None:
            return default
        try:
            return int(v)
        except ValueError:
            raise Failure(f"{key} must be an integer, got {v!r}", 2)

    def flag(self, key: str) -> bool:
        return (self.get(key) or "0").lower() not in ("0", "no", "false", "off")

    def command(self, key: str) -> list[str]:
        """A command setting as argv: a program (searched on PATH unless it has a slash), possibly
        with leading words, e.g. SCONTROL="sudo -n /usr/bin/scontrol"."""
        words = shlex.split(self.get(key) or key.lower())
        if not words:
            raise Failure(f"{key} is empty", 2)
        prog = words[0]
        if "/" not in prog:
            found = shutil.which(prog, path=self.values["PATH"])
            if not found:
                raise Failure(f"{prog} not found (searched {self.values['PATH']}); set {key} to its path", 2)
            words[0] = found
        return words


class Log:
    def __init__(self, ident: str, use_syslog: bool):
        self.ident = ident
        self.syslog = None
        if use_syslog:
            try:
                import syslog

                syslog.openlog(ident, syslog.LOG_PID, syslog.LOG_DAEMON)
                self.syslog = syslog
            except Exception:  # no syslog module or socket: stderr only
                self.syslog = None

    def _emit(self, prio_name: str, msg: str) -> None:
        print(f"{self.ident}: {msg}", file=sys.stderr, flush=True)
        if self.syslog is not None:
            try:
                self.syslog.syslog(getattr(self.syslog, prio_name), msg)
            except Exception:
                pass

    def info(self, msg: str) -> None:
        self._emit("LOG_INFO", msg)

    def warning(self, msg: str) -> None:
        self._emit("LOG_WARNING", msg)

    def error(self, msg: str) -> None:
        self._emit("LOG_ERR", msg)


# ------------------------------------------------------------------------------------------------
# Running commands
# ------------------------------------------------------------------------------------------------

class Result:
    def __init__(self, argv: list[str], code: int, out: str, err: str):
        self.argv, self.code, self.out, self.err = argv, code, out, err

    @property
    def ok(self) -> bool:
        return self.code == 0

    def message(self) -> str:
        text = (self.err.strip() or self.out.strip() or f"exit status {self.code}")
        text = " ".join(text.split())[:500]
        if re.search(r"invalid user id|access/permission denied|user not authorized", text, re.I):
            # Slurm's words when the caller may not create reservations or update nodes.
            text += (f" (this runs as uid {os.getuid()}: creating reservations and setting nodes DOWN needs "
                     "root, SlurmUser or Slurm AdminLevel=Admin; see docs/slurm.md)")
        return text


def run(cfg: Config, argv: list[str], *, timeout_key: str = "BERTH_SLURM_COMMAND_TIMEOUT_S") -> Result:
    env = dict(cfg.env)
    env["PATH"] = cfg.values["PATH"]
    env["TZ"] = "UTC"
    timeout = cfg.int(timeout_key, 10)
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                           timeout=timeout)
    except FileNotFoundError:
        return Result(argv, 127, "", f"{argv[0]}: not found")
    except PermissionError:
        return Result(argv, 126, "", f"{argv[0]}: permission denied")
    except subprocess.TimeoutExpired:
        return Result(argv, 124, "", f"{os.path.basename(argv[0])} did not finish within {timeout} s")
    return Result(argv, p.returncode, p.stdout, p.stderr)


# ------------------------------------------------------------------------------------------------
# Slurm
# ------------------------------------------------------------------------------------------------

def slurm_time(t: dt.datetime) -> str:
    """Slurm's time format, for an scontrol running with TZ=UTC."""
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def parse_rfc3339(s: str, what: str) -> dt.datetime:
    text = s.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        t = dt.datetime.fromisoformat(text)
    except ValueError:
        raise Failure(f"{what} is not an RFC 3339 time: {s!r}", 2)
    if t.tzinfo is None:
        raise Failure(f"{what} has no time zone: {s!r}", 2)
    return t.astimezone(dt.timezone.utc).replace(microsecond=0)


def parse_slurm_time(s: str) -> dt.datetime | None:
    try:
        return dt.datetime.strptime(s, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return None


def parse_kv(line: str) -> dict[str, str]:
    """`scontrol show -o` output: Key=Value pairs separated by spaces (values without spaces,
    except the last field of a node, Reason, which runs to the end)."""
    out: dict[str, str] = {}
    reason = re.search(r"\bReason=(.*?)(?=\s+\w+=|$)", line)
    for m in re.finditer(r"(\w+)=(\S*)", line):
        out.setdefault(m.group(1), m.group(2))
    if reason:
        out["Reason"] = reason.group(1)
    return out


class Slurm:
    def __init__(self, cfg: Config, log: Log):
        self.cfg = cfg
        self.log = log
        self.scontrol = cfg.command("SCONTROL")

    def call(self, *args: str) -> Result:
        return run(self.cfg, [*self.scontrol, *args])

    def show_reservation(self, name: str) -> dict[str, str] | None:
        r = self.call("show", "-o", "reservation", name)
        if r.ok:
            for line in r.out.splitlines():
                kv = parse_kv(line)
                if kv.get("ReservationName") == name:
                    return kv
            return None
        if "not found" in (r.err + r.out).lower():
            return None
        raise Failure(f"scontrol show reservation {name} failed: {r.message()}")

    def show_node(self, node: str) -> dict[str, str]:
        r = self.call("show", "-o", "node", node)
        if not r.ok or not r.out.strip():
            raise Failure(f"scontrol show node {node} failed: {r.message()}")
        return parse_kv(r.out.splitlines()[0])

    def hostnames(self, expr: str) -> list[str]:
        r = self.call("show", "hostnames", expr)
        if not r.ok:
            raise Failure(f"scontrol show hostnames {expr!r} failed: {r.message()}", 2)
        return [h for h in r.out.split() if h]

    def node_down(self, node: str, reason: str) -> Result:
        # Slurm keeps a node's reason short and on one line.
        reason = " ".join(reason.split())[:200]
        return self.call("update", f"NodeName={node}", "State=DOWN", f"Reason={reason}")


# ------------------------------------------------------------------------------------------------
# The preemption hook
# ------------------------------------------------------------------------------------------------

def hook_main(argv: list[str], env: dict[str, str] | None = None) -> int:
    _stop_on_sigterm()
    env = dict(os.environ if env is None else env)
    try:
        cfg = Config(env)
    except Failure as e:
        print(f"berth-slurm-hook: {e}", file=sys.stderr)
        return e.code
    log = Log("berth-slurm-hook", cfg.flag("BERTH_SLURM_SYSLOG"))
    try:
        return _hook(argv, env, cfg, log)
    except Failure as e:
        log.error(str(e))
        return e.code


def _event_field(env: dict[str, str], key: str, json_key: str) -> str:
    v = env.get(key)
    if v:
        return v
    try:
        event = json.loads(env.get("BERTH_EVENT_JSON") or "{}")
    except ValueError:
        return ""
    found = _find_key(event, json_key)
    return "" if found is None else str(found)


def _find_key(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        if key in obj and not isinstance(obj[key], (dict, list)) and obj[key] is not None:
            return obj[key]
        for v in obj.values():
            found = _find_key(v, key)
            if found is not None:
                return found
    elif isinstance(obj, list):
        for v in obj:
            found = _find_key(v, key)
            if found is not None:
                return found
    return None


def _hook(argv: list[str], env: dict[str, str], cfg: Config, log: Log) -> int:
    event = (argv[1] if len(argv) > 1 else "") or env.get("BERTH_EVENT", "")
    if not event:
        raise Failure("no event type: expected preemption.scheduled or preemption.executed as the "
                      "first argument (or BERTH_EVENT)", 2)
    if event not in ("preemption.scheduled", "preemption.executed"):
        log.info(f"ignoring event {event}")
        return 0
    node = _event_field(env, "BERTH_SLURM_NODE", "slurm_node").strip()
    pid = _event_field(env, "BERTH_PREEMPTIBLE_ID", "preemptible_id").strip()
    if not node:
        log.info(f"{event} for preemptible {pid or '?'}: no slurm_node, nothing to tell Slurm")
        return 0
    if not pid:
        raise Failure(f"{event} for node {node}: BERTH_PREEMPTIBLE_ID is missing", 2)
    slurm = Slurm(cfg, log)
    if event == "preemption.scheduled":
        return _scheduled(env, cfg, log, slurm, node, pid)
    return _executed(env, log, slurm, node, pid)


def reservation_name(cfg: Config, preemptible_id: str) -> str:
    return (cfg.get("BERTH_SLURM_RESV_PREFIX") or "") + preemptible_id.replace("-", "")[:8]


def _scheduled(env: dict[str, str], cfg: Config, log: Log, slurm: Slurm, node: str, pid: str) -> int:
    preempt_raw = _event_field(env, "BERTH_PREEMPT_AT", "preempt_at")
    if not preempt_raw:
        raise Failure(f"preemption.scheduled for node {node}: BERTH_PREEMPT_AT is missing", 2)
    preempt_at = parse_rfc3339(preempt_raw, "BERTH_PREEMPT_AT")
    until_raw = _event_field(env, "BERTH_NEEDED_UNTIL", "needed_until")
    default_len = dt.timedelta(seconds=cfg.int("BERTH_SLURM_RESV_DEFAULT_S", 86400) or 86400)
    end = parse_rfc3339(until_raw, "BERTH_NEEDED_UNTIL") if until_raw else preempt_at + default_len
    if end <= preempt_at:
        end = preempt_at + default_len
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    name = reservation_name(cfg, pid)
    lease = env.get("BERTH_LEASE_ID") or "?"
    if end <= now:
        log.info(f"preemption of {pid} on {node}: the capacity is needed only until {slurm_time(end)}Z, "
                 f"already past; no reservation")
        return 0

    existing = slurm.show_reservation(name)
    if existing is None:
        start_arg = "now" if preempt_at <= now else slurm_time(preempt_at)
        r = slurm.call("create", "reservation", f"ReservationName={name}", f"StartTime={start_arg}",
                       f"EndTime={slurm_time(end)}", f"Nodes={node}",
                       f"Users={cfg.get('BERTH_SLURM_RESV_USERS')}", f"Flags={cfg.get('BERTH_SLURM_RESV_FLAGS')}")
        if r.ok:
            log.info(f"created Slurm reservation {name} on {node} from {start_arg}"
                     f"{'' if start_arg == 'now' else 'Z'} to {slurm_time(end)}Z "
                     f"(preemptible {pid}, preempted at {slurm_time(preempt_at)}Z for lease {lease})")
            return 0
        if "duplicate" not in r.message().lower():
            raise Failure(f"scontrol create reservation {name} on node {node} failed: {r.message()}")
        existing = slurm.show_reservation(name)
        if existing is None:
            raise Failure(f"scontrol create reservation {name}: {r.message()}, yet it cannot be shown")
    return _update_reservation(cfg, log, slurm, name, existing, node, preempt_at, end, now)


def _update_reservation(cfg: Config, log: Log, slurm: Slurm, name: str, existing: dict[str, str], node: str,
                        preempt_at: dt.datetime, end: dt.datetime, now: dt.datetime) -> int:
    # Earliest start and latest end win: a late retry of an older event never shortens the block.
    old_start = parse_slurm_time(existing.get("StartTime", ""))
    old_end = parse_slurm_time(existing.get("EndTime", ""))
    active = existing.get("State", "").upper() == "ACTIVE" or (old_start is not None and old_start <= now)
    args = ["update", f"ReservationName={name}"]
    changes = []
    if old_end is None or end > old_end:
        args.append(f"EndTime={slurm_time(end)}")
        changes.append(f"end {slurm_time(end)}Z")
    if not active and (old_start is None or preempt_at < old_start):
        start_arg = "now" if preempt_at <= now else slurm_time(preempt_at)
        args.append(f"StartTime={start_arg}")
        changes.append(f"start {start_arg}")
    nodes = existing.get("Nodes", "")
    current = slurm.hostnames(nodes) if nodes and nodes != "(null)" else []
    if node not in current:
        args.append(f"Nodes={node}")
        changes.append(f"nodes {node}")
    if not changes:
        log.info(f"Slurm reservation {name} on {node} already covers {slurm_time(preempt_at)}Z.."
                 f"{slurm_time(end)}Z (starts {existing.get('StartTime')}); nothing to change")
        return 0
    r = slurm.call(*args)
    if not r.ok:
        raise Failure(f"scontrol update reservation {name} ({', '.join(changes)}) failed: {r.message()}")
    log.info(f"updated Slurm reservation {name} on {node}: {', '.join(changes)}")
    return 0


def _executed(env: dict[str, str], log: Log, slurm: Slurm, node: str, pid: str) -> int:
    lease = env.get("BERTH_LEASE_ID")
    at = env.get("BERTH_PREEMPT_AT")
    reason = f"berth: preempted (preemptible {pid[:8]}" + (f", lease {lease[:8]}" if lease else "") + ")"
    r = slurm.node_down(node, reason)
    if not r.ok:
        raise Failure(f"scontrol update NodeName={node} State=DOWN failed: {r.message()}")
    log.info(f"node {node} set DOWN: {reason}" + (f" at {at}" if at else ""))
    return 0


# ------------------------------------------------------------------------------------------------
# berthctl
# ------------------------------------------------------------------------------------------------

class BerthError(Failure):
    def __init__(self, message: str, rpc_code: int | None, reason: str | None, exit_code: int):
        super().__init__(message, 1)
        self.rpc_code = rpc_code
        self.reason = reason
        self.exit_code = exit_code


class Berth:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.berthctl = cfg.command("BERTHCTL")

    def call(self, *args: str) -> Any:
        argv = [*self.berthctl, "--json"]
        if self.cfg.get("BERTH_SOCKET"):
            argv += ["--socket", self.cfg.get("BERTH_SOCKET")]
        argv += list(args)
        r = run(self.cfg, argv)
        if r.ok:
            try:
                return json.loads(r.out) if r.out.strip() else {}
            except ValueError:
                raise BerthError(f"berthctl {' '.join(args[:2])}: unreadable output {r.out[:200]!r}", None, None, 0)
        m = re.search(r"\(code (-?\d+)(?:, ([a-z_]+))?\)", r.err)
        code = int(m.group(1)) if m else None
        reason = m.group(2) if m else None
        what = {3: "berthd unreachable", 2: "usage error"}.get(r.code, "error")
        raise BerthError(f"berthctl {' '.join(args[:2])}: {what}: {r.message()}", code, reason, r.code)

    def preemptibles(self, project: str | None) -> list[dict]:
        args = ["preemptible", "list", "--all"]
        if project:
            args += ["--project", project]
        result = self.call(*args)
        return list(result.get("items") or []) if isinstance(result, dict) else []


def _slurm_nodes(cfg: Config, log: Log, argv: list[str], ident: str) -> tuple[Slurm, list[str]]:
    if len(argv) < 2 or not argv[1].strip():
        raise Failure(f"usage: {ident} HOSTLIST (as Slurm's {'Resume' if 'resume' in ident else 'Suspend'}Program)", 2)
    slurm = Slurm(cfg, log)
    nodes: list[str] = []
    for expr in argv[1:]:
        nodes += slurm.hostnames(expr)
    return slurm, nodes


# ------------------------------------------------------------------------------------------------
# ResumeProgram
# ------------------------------------------------------------------------------------------------

def resume_main(argv: list[str], env: dict[str, str] | None = None) -> int:
    _stop_on_sigterm()
    env = dict(os.environ if env is None else env)
    try:
        cfg = Config(env)
    except Failure as e:
        print(f"berth-resume: {e}", file=sys.stderr)
        return e.code
    log = Log("berth-resume", cfg.flag("BERTH_SLURM_SYSLOG"))
    try:
        return _resume(argv, cfg, log)
    except Failure as e:
        log.error(str(e))
        return e.code


def _size(cfg: Config, slurm: Slurm, node: str) -> dict[str, int]:
    vcpus = cfg.int("BERTH_VCPUS")
    mem = cfg.int("BERTH_MEMORY_MB")
    disk = cfg.int("BERTH_DISK_GB")
    if vcpus is None or mem is None or disk is None:
        info = slurm.show_node(node)

        def num(key: str) -> int:
            try:
                return int(info.get(key, "0"))
            except ValueError:
                return 0

        if vcpus is None:
            vcpus = num("CPUTot") or num("CPUs")
        if mem is None:
            mem = num("RealMemory")
        if disk is None:
            disk = math.ceil(num("TmpDisk") / 1024)
    if not vcpus or vcpus < 1 or not mem or mem < 1:
        raise Failure(f"node {node}: cannot size a preemptible (vcpus={vcpus}, memory_mb={mem}); set CPUs and "
                      f"RealMemory in slurm.conf or BERTH_VCPUS/BERTH_MEMORY_MB", 2)
    return {"vcpus": vcpus, "memory_mb": mem, "disk_gb": max(0, disk or 0)}


def _server_json(cfg: Config, node: str) -> str | None:
    path = cfg.get("BERTH_SERVER_TEMPLATE")
    if not path:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise Failure(f"cannot read BERTH_SERVER_TEMPLATE {path}: {e.strerror}", 2)
    text = text.replace("@SLURM_NODE@", node)
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise Failure(f"BERTH_SERVER_TEMPLATE {path} is not JSON after substitution: {e}", 2)
    if not isinstance(doc, dict):
        raise Failure(f"BERTH_SERVER_TEMPLATE {path} must hold a JSON object", 2)
    return json.dumps(doc)


def _resume(argv: list[str], cfg: Config, log: Log) -> int:
    project = cfg.get("BERTH_PROJECT_ID")
    if not project:
        raise Failure("BERTH_PROJECT_ID is not set (environment or berth-slurm.conf)", 2)
    slurm, nodes = _slurm_nodes(cfg, log, argv, "berth-resume")
    berth = Berth(cfg)
    try:
        existing = berth.preemptibles(project)
    except BerthError as e:
        for node in nodes:
            _fail_node(cfg, log, slurm, node, f"berth: cannot list preemptibles: {e.reason or e}")
        raise
    failed = 0
    for node in nodes:
        try:
            _resume_node(cfg, log, slurm, berth, project, node, existing)
        except BerthError as e:
            failed += 1
            if e.reason == "no_capacity":
                reason = "berth: no capacity for a preemptible"
            else:
                reason = f"berth: preemptible.create failed ({e.reason or e.rpc_code or 'berthctl exit ' + str(e.exit_code)})"
            log.error(f"node {node}: {e}")
            _fail_node(cfg, log, slurm, node, reason)
        except Failure as e:
            failed += 1
            log.error(f"node {node}: {e}")
            _fail_node(cfg, log, slurm, node, f"berth: resume failed: {e}")
    return 1 if failed else 0


def _fail_node(cfg: Config, log: Log, slurm: Slurm, node: str, reason: str) -> None:
    if not cfg.flag("BERTH_SLURM_DOWN_ON_FAILURE"):
        return
    r = slurm.node_down(node, reason)
    if r.ok:
        log.warning(f"node {node} set DOWN ({reason}) so Slurm requeues its jobs")
    else:
        log.error(f"could not set node {node} DOWN: {r.message()}")


def _resume_node(cfg: Config, log: Log, slurm: Slurm, berth: Berth, project: str, node: str,
                 existing: list[dict]) -> None:
    mine = [p for p in existing if p.get("slurm_node") == node]
    live = [p for p in mine if p.get("status") in LIVE_STATUSES]
    if live:
        p = live[0]
        log.info(f"node {node}: preemptible {p.get('id')} already {p.get('status')} on {p.get('host')}; "
                 "not creating another")
        return
    size = _size(cfg, slurm, node)
    args = ["preemptible", "create", "--project", project, "--vcpus", str(size["vcpus"]),
            "--memory-mb", str(size["memory_mb"]), "--disk-gb", str(size["disk_gb"]), "--slurm-node", node]
    if cfg.get("BERTH_GPU_PROFILE"):
        args += ["--gpu-profile", cfg.get("BERTH_GPU_PROFILE")]
    if cfg.get("BERTH_MIN_LIFETIME"):
        args += ["--min-lifetime", cfg.get("BERTH_MIN_LIFETIME")]
    server = _server_json(cfg, node)
    if server is not None:
        args += ["--server", server]
    # The n-th preemptible of this node: a retry after a lost reply repeats the same key and gets
    # the same preemptible; a later resume, after the previous one ended, gets a new key.
    key = f"slurm-resume:{project}:{node}:{len(mine)}"
    try:
        result = berth.call(*args, "--idempotency-key", key)
    except BerthError as e:
        if e.reason != "conflict":
            raise
        # berthd refuses a second live instance for one slurm_node: another run (a concurrent or
        # repeated ResumeProgram) made it since we listed.
        others = [p for p in berth.preemptibles(project)
                  if p.get("slurm_node") == node and p.get("status") in LIVE_STATUSES]
        if not others:
            raise
        log.info(f"node {node}: preemptible {others[0].get('id')} was created meanwhile; not creating another")
        return
    if isinstance(result, dict) and result.get("status") not in LIVE_STATUSES:
        # The key's first result is an instance that has ended since (e.g. ended preemptibles are no
        # longer listed): ask again with a fresh key.
        log.info(f"node {node}: idempotency key {key} returned {result.get('id')} in status "
                 f"{result.get('status')}; creating a new one")
        key = f"{key}:{int(time.time())}"
        result = berth.call(*args, "--idempotency-key", key)
    log.info(f"node {node}: preemptible {result.get('id')} on host {result.get('host')}, status "
             f"{result.get('status')}, guaranteed until {result.get('guaranteed_until')}")


# ------------------------------------------------------------------------------------------------
# SuspendProgram
# ------------------------------------------------------------------------------------------------

def suspend_main(argv: list[str], env: dict[str, str] | None = None) -> int:
    _stop_on_sigterm()
    env = dict(os.environ if env is None else env)
    try:
        cfg = Config(env)
    except Failure as e:
        print(f"berth-suspend: {e}", file=sys.stderr)
        return e.code
    log = Log("berth-suspend", cfg.flag("BERTH_SLURM_SYSLOG"))
    try:
        return _suspend(argv, cfg, log)
    except Failure as e:
        log.error(str(e))
        return e.code


def _suspend(argv: list[str], cfg: Config, log: Log) -> int:
    project = cfg.get("BERTH_PROJECT_ID")
    slurm, nodes = _slurm_nodes(cfg, log, argv, "berth-suspend")
    berth = Berth(cfg)
    existing = berth.preemptibles(project)
    failed = 0
    gone: list[tuple[str, str]] = []  # (node, preemptible id) whose instance no longer exists
    for node in nodes:
        mine = [p for p in existing if p.get("slurm_node") == node]
        gone += [(node, str(p.get("id"))) for p in mine if p.get("status") not in LIVE_STATUSES]
        live = [p for p in mine if p.get("status") in LIVE_STATUSES]
        if not live:
            log.info(f"node {node}: no live preemptible; nothing to delete")
        for p in live:
            pid = str(p.get("id"))
            try:
                berth.call("preemptible", "delete", pid, "--idempotency-key", f"slurm-suspend:{pid}")
                log.info(f"node {node}: deleted preemptible {pid} on host {p.get('host')}")
                gone.append((node, pid))
            except BerthError as e:
                if e.reason == "not_found":
                    log.info(f"node {node}: preemptible {pid} is already gone")
                    gone.append((node, pid))
                    continue
                failed += 1
                log.error(f"node {node}: deleting preemptible {pid} failed: {e}")
    _drop_stale_reservations(cfg, log, slurm, gone)
    return 1 if failed else 0


def _drop_stale_reservations(cfg: Config, log: Log, slurm: Slurm, gone: list[tuple[str, str]]) -> None:
    """The hook's MAINT reservation protects jobs from the preemption of one instance. Once that
    instance is gone, it would only keep the node from being resumed (on other capacity) until the
    reservation's end: delete it."""
    if not gone:
        return
    r = slurm.call("show", "-o", "reservation")
    if not r.ok:
        if "no reservations" not in r.message().lower():
            log.warning(f"cannot list Slurm reservations: {r.message()}")
        return
    present = {parse_kv(line).get("ReservationName"): parse_kv(line) for line in r.out.splitlines() if line.strip()}
    for node, pid in gone:
        name = reservation_name(cfg, pid)
        resv = present.get(name)
        if resv is None:
            continue
        d = slurm.call("delete", f"ReservationName={name}")
        if d.ok:
            log.info(f"node {node}: deleted Slurm reservation {name} (preemptible {pid} no longer exists)")
        else:
            log.warning(f"node {node}: could not delete Slurm reservation {name}: {d.message()}")


# ------------------------------------------------------------------------------------------------
# PrologSlurmctld: refuse a job start that would run into a scheduled preemption
# ------------------------------------------------------------------------------------------------

def prolog_main(argv: list[str], env: dict[str, str] | None = None) -> int:
    _stop_on_sigterm()
    env = dict(os.environ if env is None else env)
    try:
        cfg = Config(env)
    except Failure as e:
        print(f"berth-prolog: {e}", file=sys.stderr)
        return e.code
    log = Log("berth-prolog", cfg.flag("BERTH_SLURM_SYSLOG"))
    try:
        return _prolog(argv, env, cfg, log)
    except Failure as e:
        log.error(str(e))
        return e.code


def parse_time_limit(s: str) -> dt.timedelta | None:
    """Slurm's TimeLimit ([D-]HH:MM:SS, MM:SS, MM, D-HH[:MM]); None for UNLIMITED or unknown."""
    s = s.strip()
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", s)
    if not m:
        return None
    days, a, b, c = m.groups()
    if days is not None:
        h, mi, se = int(a), int(b or 0), int(c or 0)
        return dt.timedelta(days=int(days), hours=h, minutes=mi, seconds=se)
    if c is not None:
        return dt.timedelta(hours=int(a), minutes=int(b), seconds=int(c))
    if b is not None:
        return dt.timedelta(minutes=int(a), seconds=int(b))
    return dt.timedelta(minutes=int(a))


def _prolog(argv: list[str], env: dict[str, str], cfg: Config, log: Log) -> int:
    job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    nodelist = env.get("SLURM_JOB_NODELIST") or (argv[1] if len(argv) > 1 else "")
    if not job or not nodelist:
        raise Failure("SLURM_JOB_ID and SLURM_JOB_NODELIST must be set (run as Slurm's PrologSlurmctld)", 2)
    slurm = Slurm(cfg, log)
    r = slurm.call("show", "-o", "job", job)
    if not r.ok or not r.out.strip():
        raise Failure(f"scontrol show job {job} failed: {r.message()}")
    limit = parse_time_limit(parse_kv(r.out.splitlines()[0]).get("TimeLimit", ""))
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    end = now + limit if limit is not None else None
    nodes = slurm.hostnames(nodelist)
    berth = Berth(cfg)
    try:
        existing = berth.preemptibles(cfg.get("BERTH_PROJECT_ID"))
    except BerthError as e:
        # The MAINT reservation made by the preemption hook is the main guard; do not stop the
        # cluster because berthd cannot be asked.
        log.warning(f"job {job}: cannot ask berthd ({e}); letting the job start")
        return 0
    for node in nodes:
        for p in existing:
            if p.get("slurm_node") != node or p.get("status") not in LIVE_STATUSES:
                continue
            try:
                horizon = berth.call("preemptible", "horizon", "--id", str(p.get("id")))
            except BerthError as e:
                log.warning(f"job {job}: preemptible.horizon for {p.get('id')} failed ({e}); letting the job start")
                continue
            at = horizon.get("preempt_at") if isinstance(horizon, dict) else None
            if not at:
                continue
            preempt_at = parse_rfc3339(at, "preempt_at")
            if end is None or preempt_at < end:
                until = "no time limit" if end is None else f"its time limit ends {slurm_time(end)}Z"
                log.error(f"job {job}: node {node} is preempted at {slurm_time(preempt_at)}Z (preemptible "
                          f"{p.get('id')}) but {until}; refusing the start so Slurm requeues it")
                return 1
    return 0
