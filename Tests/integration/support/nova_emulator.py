"""A strict, in-process emulator of the part of Nova's compute API that Berth drives.

A real Nova cannot run in CI, so the OpenStack adapter's integration tests talk to this instead.
It is written from Nova's public API reference and microversion history, and it is deliberately
unforgiving: request bodies are checked against JSON schemas with `additionalProperties: false`
where Nova has them, the microversion header is negotiated as Nova does, server state changes take
(real) time, and errors carry Nova's fault bodies and status codes.

Usage (everything runs inside the pytest process)::

    emu = NovaEmulator(hosts=["h1", "h2"], token_validator=None, build_delay=0.2,
                       delete_delay=0.3, min_version="2.1", max_version="2.96")
    emu.start()                      # HTTP on 127.0.0.1:<free port>, a thread per connection
    emu.valid_tokens.add("tok")      # or emu.add_token("tok", project_id="p1", roles=["member"])
    ... point the client at emu.url  # "http://127.0.0.1:PORT/v2.1"
    emu.stop()

Authentication: every request under /v2.1/ (except the version document) needs `X-Auth-Token`.
With `token_validator` the callable decides (it is given the token and returns None/False when the
token is invalid, or the token's context: a dict with `project_id` (or `project: {id}`), `roles`
(names or `{name}` dicts) and optionally `user_id`; a Keystone token body `{"token": {...}}` is
understood too; True means "valid, admin"). Without it, a token is valid when it is in
`emu.tokens` (explicit context) or in `emu.valid_tokens` (admin of project "admin"). A caller is
admin when it has the `admin` role. A missing or invalid token gets keystonemiddleware's 401 (the
body Nova's auth middleware really returns: `{"error": {"code": 401, "title": "Unauthorized",
"message": ...}}`); a validator that raises gets its 503.

Fault injection, driven by the test: `fail()`, `hang()`, `set_outage()`, `set_latency()`; each
injected fault is counted in `stats()` and recorded in `requests` (`fault` field). Inspection and
setup helpers: `aggregates()`, `flavors()`, `servers()`, `server()`, `boot()`, `add_host()`,
`set_server_state()`, `find_requests()`, `wait_for()`.

See Tests/integration/test_nova_emulator.py for every behaviour exercised.
"""

from __future__ import annotations

import base64
import binascii
import copy
import datetime as _dt
import hashlib
import http.server
import ipaddress
import json
import re
import secrets
import socket
import threading
import time
import unicodedata
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

import jsonschema
from jsonschema import Draft4Validator

__all__ = ["NovaEmulator", "RecordedRequest", "InjectedFault"]

MAX_INT = 2147483647

# --------------------------------------------------------------------------------------------
# Microversions
# --------------------------------------------------------------------------------------------

_VERSION_RE = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


def _parse_version(text: str) -> tuple[int, int]:
    m = _VERSION_RE.match(text)
    if not m:
        raise ValueError(text)
    return int(m.group(1)), int(m.group(2))


def _vstr(v: tuple[int, int]) -> str:
    return "%d.%d" % v


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------

# Nova names the fault body after the status code; anything else is a "computeFault".
_FAULT_NAMES = {
    400: "badRequest",
    401: "unauthorized",
    403: "forbidden",
    404: "itemNotFound",
    405: "badMethod",
    409: "conflictingRequest",
    413: "overLimit",
    415: "badMediaType",
    429: "overLimit",
    501: "notImplemented",
    503: "serviceUnavailable",
}

_DEFAULT_MESSAGES = {
    500: "Unexpected API Error. Please report this at http://bugs.launchpad.net/nova/ and attach "
         "the Nova API log if possible.\n<class 'nova.exception_Remote.InternalError_Remote'>",
    502: "The proxy server received an invalid response from an upstream server.",
    503: "The server is currently unavailable. Please try again at a later time.",
    504: "The gateway did not receive a timely response from the upstream server or application.",
}


def fault_body(status: int, message: str) -> dict:
    """The body Nova returns for an error: `{<faultName>: {"code": status, "message": ...}}`."""
    return {_FAULT_NAMES.get(status, "computeFault"): {"code": status, "message": message}}


class _Fault(Exception):
    def __init__(self, status: int, message: str, headers: Optional[dict] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _forbidden(rule: str) -> _Fault:
    return _Fault(403, "Policy doesn't allow %s to be performed." % rule)


def _not_found(message: str = "The resource could not be found.") -> _Fault:
    return _Fault(404, message)


# --------------------------------------------------------------------------------------------
# Request validation (JSON schema, Draft 4, as Nova does; string numbers are compared as numbers)
# --------------------------------------------------------------------------------------------


class _InvalidName(Exception):
    pass


def _printable(ch: str) -> bool:
    cat = unicodedata.category(ch)
    return not cat.startswith("C") and (not cat.startswith("Z") or cat == "Zs")


def _check_name(value: Any, extra_forbidden: str = "", reason: str = "") -> bool:
    if not isinstance(value, str):
        raise _InvalidName(reason)
    if value and (not _printable(value[0]) or not _printable(value[-1])
                  or unicodedata.category(value[0]) == "Zs" or unicodedata.category(value[-1]) == "Zs"):
        raise _InvalidName(reason)
    if any(not _printable(c) or c in extra_forbidden for c in value):
        raise _InvalidName(reason)
    return True


_FORMATS = jsonschema.FormatChecker(formats=())


@_FORMATS.checks("name", raises=_InvalidName)
def _fmt_name(value: Any) -> bool:
    return _check_name(value, reason="An invalid 'name' value was provided. The name must be: "
                                     "printable characters. Can not start or end with whitespace.")


@_FORMATS.checks("az_name", raises=_InvalidName)
def _fmt_az_name(value: Any) -> bool:
    return _check_name(value, ":", reason="An invalid 'name' value was provided. The name must be: "
                                          "printable characters except :.Can not start or end with "
                                          "whitespace.")


@_FORMATS.checks("printable")
def _fmt_printable(value: Any) -> bool:
    return not isinstance(value, str) or all(_printable(c) for c in value)


def _is_uuid_like(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        return uuid.UUID(value).hex == value.lower().replace("-", "").replace("urn:uuid:", "") \
            .strip("{}")
    except (TypeError, ValueError, AttributeError):
        return False


@_FORMATS.checks("uuid")
def _fmt_uuid(value: Any) -> bool:
    return not isinstance(value, str) or _is_uuid_like(value)


@_FORMATS.checks("base64")
def _fmt_base64(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    try:
        base64.b64decode(value.encode("utf-8"), validate=False)
        return True
    except (binascii.Error, ValueError):
        return False


@_FORMATS.checks("ipv4")
def _fmt_ipv4(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    try:
        ipaddress.IPv4Address(value)
        return True
    except ValueError:
        return False


@_FORMATS.checks("ipv6")
def _fmt_ipv6(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    try:
        ipaddress.IPv6Address(value)
        return True
    except ValueError:
        return False


@_FORMATS.checks("date-time")
def _fmt_datetime(value: Any) -> bool:
    if not isinstance(value, str):
        return True
    try:
        _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


def _as_number(value: Any) -> Any:
    if isinstance(value, str):
        for conv in (int, float):
            try:
                return conv(value)
            except ValueError:
                pass
        return None
    return value


def _minimum(validator, minimum, instance, schema):
    instance = _as_number(instance)
    if instance is None:
        return
    yield from Draft4Validator.VALIDATORS["minimum"](validator, minimum, instance, schema) or ()


def _maximum(validator, maximum, instance, schema):
    instance = _as_number(instance)
    if instance is None:
        return
    yield from Draft4Validator.VALIDATORS["maximum"](validator, maximum, instance, schema) or ()


_Validator = jsonschema.validators.extend(Draft4Validator, {"minimum": _minimum, "maximum": _maximum})


def _validate(schema: dict, instance: Any, *, query: bool = False) -> None:
    """Raise a 400 with the detail Nova's validator writes for the first schema violation."""
    validator = _Validator(schema, format_checker=_FORMATS)
    for err in validator.iter_errors(instance):
        if isinstance(err.cause, _InvalidName):
            detail = str(err.cause)
        elif len(err.path) > 0:
            where = err.path[0] if query else err.path[-1]
            what = "query parameters" if query else "field/attribute"
            detail = "Invalid input for %s %s. Value: %s. %s" % (what, where, err.instance, err.message)
        else:
            detail = err.message
        raise _Fault(400, detail)


def _obj(properties: dict, required: Iterable[str] = (), additional: bool = False) -> dict:
    s: dict = {"type": "object", "properties": properties}
    if required:
        s["required"] = list(required)
    s["additionalProperties"] = additional
    return s


_NAME = {"type": "string", "minLength": 1, "maxLength": 255, "format": "name"}
_AZ_NAME = {"type": "string", "minLength": 1, "maxLength": 255, "format": "az_name"}
_HOSTNAME = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[a-zA-Z0-9-._]*$"}
_META_KEY = "^[a-zA-Z0-9-_:. ]{1,255}$"
_METADATA = {"type": "object", "patternProperties": {_META_KEY: {"type": "string", "maxLength": 255}},
             "additionalProperties": False}
_METADATA_NULL = {"type": "object",
                  "patternProperties": {_META_KEY: {"type": ["string", "null"], "maxLength": 255}},
                  "additionalProperties": False}
_BOOLEAN = {"type": ["boolean", "string"],
            "enum": [True, "True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes",
                     False, "False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no"]}
_SIZE_POSITIVE = {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 1, "maximum": MAX_INT}
_SIZE_NON_NEGATIVE = {"type": ["integer", "string"], "pattern": "^[0-9]+$", "minimum": 0, "maximum": MAX_INT}
_POSITIVE_INT = {"type": ["integer", "string"], "pattern": "^[0-9]*$", "minimum": 1, "minLength": 1}
_UUID = {"type": "string", "format": "uuid"}
_TAG = {"type": "string", "minLength": 1, "maxLength": 60, "pattern": "^[^,/]*$"}
_TRUE_STRINGS = {"true", "1", "on", "yes", "t", "y"}


def _bool_from(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _TRUE_STRINGS


_AGGREGATE_CREATE = _obj({"aggregate": _obj({
    "name": _NAME,
    "availability_zone": {"oneOf": [_AZ_NAME, {"type": "null"}]},
}, ["name"])}, ["aggregate"])

_AGGREGATE_ACTIONS = {
    "add_host": _obj({"add_host": _obj({"host": _HOSTNAME}, ["host"])}, ["add_host"]),
    "remove_host": _obj({"remove_host": _obj({"host": _HOSTNAME}, ["host"])}, ["remove_host"]),
    "set_metadata": _obj({"set_metadata": _obj({"metadata": _METADATA_NULL}, ["metadata"])},
                         ["set_metadata"]),
}


def _flavor_create_schema(v: tuple[int, int]) -> dict:
    props = {
        "name": _NAME,
        "id": {"type": ["string", "number", "null"], "minLength": 1, "maxLength": 255,
               "pattern": "^(?! )[a-zA-Z0-9. _-]+(?<! )$"},
        "ram": _SIZE_POSITIVE,
        "vcpus": _SIZE_POSITIVE,
        "disk": _SIZE_NON_NEGATIVE,
        "OS-FLV-EXT-DATA:ephemeral": _SIZE_NON_NEGATIVE,
        "swap": _SIZE_NON_NEGATIVE,
        "rxtx_factor": {"type": ["number", "string"], "pattern": r"^[0-9]+(\.[0-9]+)?$",
                        "minimum": 0, "exclusiveMinimum": True, "maximum": 3.40282e+38},
        "os-flavor-access:is_public": _BOOLEAN,
    }
    if v >= (2, 55):
        props["description"] = {"type": ["string", "null"], "minLength": 0, "maxLength": 65535,
                                "format": "printable"}
    return _obj({"flavor": _obj(props, ["name", "ram", "vcpus", "disk"])}, ["flavor"])


_EXTRA_SPECS_CREATE = _obj({"extra_specs": {
    "type": "object",
    "patternProperties": {_META_KEY: {"type": ["string", "number"], "maxLength": 255}},
    "additionalProperties": False,
}}, ["extra_specs"])

_FLAVOR_ACTIONS = {
    "addTenantAccess": _obj({"addTenantAccess": _obj(
        {"tenant": {"type": "string", "minLength": 1, "maxLength": 255}}, ["tenant"])},
        ["addTenantAccess"]),
    "removeTenantAccess": _obj({"removeTenantAccess": _obj(
        {"tenant": {"type": "string", "minLength": 1, "maxLength": 255}}, ["tenant"])},
        ["removeTenantAccess"]),
}


def _server_create_schema(v: tuple[int, int]) -> dict:
    network_item: dict = {
        "fixed_ip": {"type": "string", "oneOf": [{"format": "ipv4"}, {"format": "ipv6"}]},
        "port": {"oneOf": [{"type": "string", "format": "uuid"}, {"type": "null"}]},
        "uuid": {"type": "string"},
    }
    if v >= (2, 37):
        network_item["uuid"] = _UUID
    if v == (2, 32) or v >= (2, 42):
        network_item["tag"] = _TAG
    networks: dict = {"type": "array", "items": _obj(network_item)}
    if v >= (2, 37):
        networks = {"oneOf": [networks, {"type": "string", "enum": ["none", "auto"]}]}
    bdm_item = {"type": "object", "additionalProperties": True}
    props: dict = {
        "name": _NAME,
        "imageRef": {"oneOf": [_UUID, {"type": "string", "maxLength": 0}]},
        "flavorRef": {"type": ["string", "integer"], "minLength": 1},
        "adminPass": {"type": "string"},
        "metadata": _METADATA,
        "networks": networks,
        "OS-DCF:diskConfig": {"type": "string", "enum": ["AUTO", "MANUAL"]},
        "accessIPv4": {"type": "string", "format": "ipv4"},
        "accessIPv6": {"type": "string", "format": "ipv6"},
        "availability_zone": _NAME,
        "block_device_mapping": {"type": "array", "items": bdm_item},
        "block_device_mapping_v2": {"type": "array", "items": bdm_item},
        "config_drive": _BOOLEAN,
        "key_name": _NAME,
        "min_count": _POSITIVE_INT,
        "max_count": _POSITIVE_INT,
        "return_reservation_id": _BOOLEAN,
        "security_groups": {"type": "array", "items": _obj({"name": _NAME})},
        "user_data": {"type": "string", "format": "base64", "maxLength": 65535},
    }
    if v < (2, 57):
        props["personality"] = {"type": "array", "items": _obj(
            {"path": {"type": "string"}, "contents": {"type": "string", "format": "base64"}})}
    if v >= (2, 19):
        props["description"] = {"type": ["string", "null"], "minLength": 0, "maxLength": 255,
                                "format": "printable"}
    if v >= (2, 52):
        props["tags"] = {"type": "array", "items": _TAG, "maxItems": 50}
    if v >= (2, 63):
        props["trusted_image_certificates"] = {
            "type": ["array", "null"], "minItems": 1, "maxItems": 50, "uniqueItems": True,
            "items": {"type": "string", "minLength": 1}}
    if v >= (2, 74):
        props["host"] = _HOSTNAME
        props["hypervisor_hostname"] = _HOSTNAME
    if v >= (2, 90):
        props["hostname"] = {"type": "string", "minLength": 1, "maxLength": 255}
    required = ["name", "flavorRef"] + (["networks"] if v >= (2, 37) else [])
    hints = {"type": "object", "additionalProperties": True}
    return _obj({"server": _obj(props, required), "os:scheduler_hints": hints,
                 "OS-SCH-HNT:scheduler_hints": hints}, ["server"])


_UNSHELVE_277 = _obj({"unshelve": {
    "type": ["object", "null"],
    "properties": {"availability_zone": _NAME},
    "required": ["availability_zone"],
    "additionalProperties": False,
}}, ["unshelve"])

# Query parameters GET /servers[/detail] knows (microversion 2.75 makes every other one a 400).
_SERVER_QUERY_KEYS = {
    "user_id", "project_id", "tenant_id", "launch_index", "image_ref", "image", "kernel_id",
    "ramdisk_id", "hostname", "key_name", "power_state", "vm_state", "task_state", "host", "node",
    "flavor", "reservation_id", "launched_at", "terminated_at", "availability_zone", "name",
    "display_name", "description", "display_description", "locked_by", "uuid", "root_device_name",
    "config_drive", "access_ip_v4", "access_ip_v6", "auto_disk_config", "progress", "sort_key",
    "sort_dir", "all_tenants", "soft_deleted", "deleted", "status", "changes-since", "ip", "ip6",
    "created_at", "limit", "marker", "block_device_mapping", "services", "metadata",
    "system_metadata", "info_cache", "security_groups", "pci_devices",
}
_SERVER_QUERY_KEYS_226 = {"tags", "tags-any", "not-tags", "not-tags-any"}
_JOINED_TABLE_FILTERS = {"block_device_mapping", "services", "metadata", "system_metadata",
                         "info_cache", "security_groups", "pci_devices"}
_SORT_KEYS = {"access_ip_v4", "access_ip_v6", "auto_disk_config", "availability_zone",
              "config_drive", "created_at", "display_description", "display_name", "host",
              "hostname", "image_ref", "instance_type_id", "kernel_id", "key_name", "launch_index",
              "launched_at", "locked_by", "node", "power_state", "progress", "project_id",
              "ramdisk_id", "root_device_name", "task_state", "terminated_at", "updated_at",
              "user_id", "uuid", "vm_state"}
_NON_ADMIN_FILTERS = {"reservation_id", "name", "status", "image", "flavor", "ip", "changes-since",
                      "all_tenants", "ip6", "tags", "tags-any", "not-tags", "not-tags-any",
                      "changes-before", "locked", "availability_zone", "config_drive", "key_name",
                      "created_at", "launched_at", "terminated_at", "power_state", "task_state",
                      "vm_state", "progress", "user_id"}

# (vm_state -> {task_state or "default": status}); the statuses Nova shows and filters on.
_STATE_MAP: dict[str, dict[str, str]] = {
    "active": {"default": "ACTIVE", "rebooting": "REBOOT", "reboot_pending": "REBOOT",
               "reboot_started": "REBOOT", "rebooting_hard": "HARD_REBOOT",
               "reboot_pending_hard": "HARD_REBOOT", "reboot_started_hard": "HARD_REBOOT",
               "updating_password": "PASSWORD", "rebuilding": "REBUILD",
               "rebuild_block_device_mapping": "REBUILD", "rebuild_spawning": "REBUILD",
               "migrating": "MIGRATING", "resize_prep": "RESIZE", "resize_migrating": "RESIZE",
               "resize_migrated": "RESIZE", "resize_finish": "RESIZE"},
    "building": {"default": "BUILD"},
    "stopped": {"default": "SHUTOFF", "resize_prep": "RESIZE", "resize_migrating": "RESIZE",
                "resize_migrated": "RESIZE", "resize_finish": "RESIZE", "rebuilding": "REBUILD",
                "rebuild_block_device_mapping": "REBUILD", "rebuild_spawning": "REBUILD"},
    "resized": {"default": "VERIFY_RESIZE", "resize_reverting": "REVERT_RESIZE"},
    "paused": {"default": "PAUSED", "migrating": "MIGRATING"},
    "suspended": {"default": "SUSPENDED"},
    "rescued": {"default": "RESCUE"},
    "error": {"default": "ERROR", "rebuilding": "REBUILD",
              "rebuild_block_device_mapping": "REBUILD", "rebuild_spawning": "REBUILD"},
    "deleted": {"default": "DELETED"},
    "soft-delete": {"default": "SOFT_DELETED"},
    "shelved": {"default": "SHELVED"},
    "shelved_offloaded": {"default": "SHELVED_OFFLOADED"},
}
_POWER = {"nostate": 0, "running": 1, "paused": 3, "shutdown": 4, "crashed": 6, "suspended": 7}


def _status(vm_state: str, task_state: Optional[str]) -> str:
    m = _STATE_MAP.get(vm_state, {"default": "UNKNOWN"})
    return m.get(task_state or "default", m["default"])


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


def _iso_z(t: Optional[_dt.datetime]) -> Optional[str]:
    return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _iso_micro(t: Optional[_dt.datetime]) -> Optional[str]:
    return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%S.%f")


@dataclass
class _Aggregate:
    id: int
    uuid: str
    name: str
    availability_zone: Optional[str]
    created_at: _dt.datetime
    hosts: list = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    updated_at: Optional[_dt.datetime] = None


@dataclass
class _Flavor:
    internal_id: int
    flavorid: str
    name: str
    ram: int
    vcpus: int
    disk: int
    ephemeral: int = 0
    swap: int = 0
    rxtx_factor: float = 1.0
    is_public: bool = True
    description: Optional[str] = None
    extra_specs: dict = field(default_factory=dict)
    projects: list = field(default_factory=list)
    disabled: bool = False


@dataclass
class _Server:
    id: str
    name: str
    project_id: str
    user_id: str
    flavor: dict  # snapshot: flavorid, internal_id, name, ram, vcpus, disk, ephemeral, swap, extra_specs
    image_ref: str
    networks: Any
    metadata: dict
    key_name: Optional[str]
    created_at: _dt.datetime
    vm_state: str = "building"
    task_state: Optional[str] = "scheduling"
    power_state: int = 0
    host: Optional[str] = None
    requested_az: Optional[str] = None
    availability_zone: Optional[str] = None
    launched_at: Optional[_dt.datetime] = None
    updated_at: Optional[_dt.datetime] = None
    description: Optional[str] = None
    tags: list = field(default_factory=list)
    config_drive: str = ""
    disk_config: str = "MANUAL"
    access_ipv4: str = ""
    access_ipv6: str = ""
    security_groups: list = field(default_factory=list)
    addresses: dict = field(default_factory=dict)
    fault: Optional[dict] = None
    reservation_id: str = ""
    launch_index: int = 0
    hostname: str = ""
    user_data: Optional[str] = None
    seq: int = 0
    events: list = field(default_factory=list)  # [(monotonic due, callable)]


@dataclass
class RecordedRequest:
    """One request the emulator received, as the test sees it in `emu.requests`."""
    method: str
    path: str                     # as received, without the query string
    query: dict                   # name -> [values]
    version: Optional[str]        # negotiated microversion ("2.79"), None when none applied
    body: Any                     # parsed JSON, the raw text when it was not JSON, or None
    status: Optional[int] = None  # None: no answer was sent (hang, outage, closed)
    fault: Optional[str] = None   # "fail" or "hang" when an injected fault hit this request
    applied_status: Optional[int] = None  # with apply=True: the status the request really had
    route: Optional[str] = None   # "POST /os-aggregates/{id}/action"
    token: Optional[str] = None
    headers: dict = field(default_factory=dict)
    time: float = 0.0


@dataclass
class InjectedFault:
    """A queued `fail()` or `hang()`; `remaining` counts down (None: forever), `hits` counts up."""
    kind: str
    method: Optional[str]
    path_regex: Optional[str]
    remaining: Optional[int]
    status: int = 503
    retry_after: Any = None
    body: Any = None
    headers: Optional[dict] = None
    apply: bool = False
    hits: int = 0

    def matches(self, method: str, target: str) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        if self.path_regex is not None and not re.search(self.path_regex, target):
            return False
        return True


@dataclass
class _Ctx:
    token: str
    project_id: str
    user_id: str
    roles: list
    is_admin: bool


@dataclass
class _Req:
    method: str
    raw_path: str
    path: str
    query: dict
    headers: Any
    body_bytes: bytes
    base_url: str
    record: RecordedRequest
    version: tuple = (2, 1)
    ctx: Optional[_Ctx] = None
    params: dict = field(default_factory=dict)
    route: str = ""


@dataclass
class _Resp:
    status: int
    body: Any = None
    headers: dict = field(default_factory=dict)
    raw: Optional[bytes] = None


_CLOSE = object()   # the handler closes the connection without an answer


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class _Server_(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, addr, emu):
        self.emu = emu
        super().__init__(addr, _Handler)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nova-emulator"

    def version_string(self):
        return self.server_version

    def log_message(self, fmt, *args):  # quiet
        pass

    def setup(self):
        super().setup()
        self.server.emu._track(self.connection, True)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        self.server.emu._track(self.connection, False)

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self):
        try:
            body = self._read_body()
            try:
                resp = self.server.emu._serve(self.command, self.path, self.headers, body,
                                              self.server.server_address[1])
            except Exception as e:  # noqa: BLE001 - an emulator bug still answers like Nova
                resp = _Resp(500, fault_body(500, "Unexpected API Error. %s: %s"
                                             % (type(e).__name__, e)))
            if resp is _CLOSE:
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            data = resp.raw if resp.raw is not None else (
                b"" if resp.body is None else json.dumps(resp.body).encode("utf-8"))
            self.send_response(resp.status)
            headers = {"Content-Type": "application/json"}
            headers.update(resp.headers)
            for k, v in headers.items():
                if isinstance(v, (list, tuple)):
                    for item in v:
                        self.send_header(k, str(item))
                else:
                    self.send_header(k, str(v))
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError, ValueError):
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle


# --------------------------------------------------------------------------------------------
# The emulator
# --------------------------------------------------------------------------------------------


class NovaEmulator:
    """The emulated Nova. See the module docstring for the whole picture.

    Parameters:
        hosts: compute hosts (nova-compute services, hypervisor nodes of the same name).
        token_validator: `callable(token) -> context | None`, or None to use `valid_tokens`/`tokens`.
        build_delay: seconds from `POST /servers` to ACTIVE (scheduling at half of it).
        delete_delay: seconds a deleting server stays visible (task_state `deleting`).
        shelve_delay: seconds from `shelve` to SHELVED_OFFLOADED (default: build_delay).
        min_version, max_version: the microversion range offered.
        port: fixed port (0: a free one, kept across outages).
        host_resources: `{host: {"CUSTOM_X": total}}` custom resource class inventories; a flavor
            extra spec `resources:CUSTOM_X=N` needs N free on the chosen host.
        images, networks, keypairs: sets of known ids/names; None accepts any well-formed value.
        www_authenticate_uri: the Keystone URI announced in 401s' WWW-Authenticate header.
        hypervisor_sizes: `{host: {"vcpus", "memory_mb", "local_gb"}}` as `GET /os-hypervisors/detail`
            reports them below 2.88 (default 32 vCPUs, 65536 MB, 500 GB).
        scheduler_filters: the scheduler filters modelled (Nova's `[filter_scheduler]
            enabled_filters`); default: AvailabilityZoneFilter, ComputeCapabilitiesFilter,
            AggregateInstanceExtraSpecsFilter, AggregateMultiTenancyIsolation. Placement's custom
            resource classes (`host_resources`) are always enforced.
    """

    DEFAULT_FILTERS = ("AvailabilityZoneFilter", "ComputeCapabilitiesFilter",
                       "AggregateInstanceExtraSpecsFilter", "AggregateMultiTenancyIsolation")

    def __init__(self, hosts: Iterable[str] = ("compute1", "compute2"),
                 token_validator: Optional[Callable[[str], Any]] = None, build_delay: float = 0.2,
                 delete_delay: float = 0.3, min_version: str = "2.1", max_version: str = "2.96",
                 *, shelve_delay: Optional[float] = None, port: int = 0,
                 host_resources: Optional[dict] = None, images: Optional[Iterable[str]] = None,
                 networks: Optional[Iterable[str]] = None, keypairs: Optional[Iterable[str]] = None,
                 www_authenticate_uri: Optional[str] = None, hypervisor_sizes: Optional[dict] = None,
                 scheduler_filters: Iterable[str] = DEFAULT_FILTERS):
        self._lock = threading.RLock()
        self.scheduler_filters = set(scheduler_filters)
        self.token_validator = token_validator
        self.valid_tokens: set = set()
        self.tokens: dict = {}
        self.build_delay = build_delay
        self.delete_delay = delete_delay
        self.shelve_delay = build_delay if shelve_delay is None else shelve_delay
        self.min_version = _parse_version(min_version)
        self.max_version = _parse_version(max_version)
        self.host_resources = {h: dict(r) for h, r in (host_resources or {}).items()}
        self.hypervisor_sizes = {h: dict(s) for h, s in (hypervisor_sizes or {}).items()}
        self.images = None if images is None else set(images)
        self.networks = None if networks is None else set(networks)
        self.keypairs = None if keypairs is None else set(keypairs)
        self.www_authenticate_uri = www_authenticate_uri
        self.requests: list[RecordedRequest] = []
        self._hosts: dict[str, dict] = {}
        for h in hosts:
            self._add_service(h)
        self._controller_services = [
            {"id": 1, "uuid": str(uuid.uuid4()), "binary": "nova-scheduler", "host": "controller",
             "zone": "internal"},
            {"id": 2, "uuid": str(uuid.uuid4()), "binary": "nova-conductor", "host": "controller",
             "zone": "internal"},
        ]
        self._aggregates: dict[int, _Aggregate] = {}
        self._flavors: dict[str, _Flavor] = {}
        self._servers: dict[str, _Server] = {}
        self._next_agg = 1
        self._next_flavor = 1
        self._next_seq = 1
        self._faults: list[InjectedFault] = []
        self._latency = 0.0
        self._counts = {"fail": 0, "hang": 0, "outage": 0}
        self._outage = False
        self._hang_events: list[threading.Event] = []
        self._conns: set = set()
        self._httpd: Optional[_Server_] = None
        self._thread: Optional[threading.Thread] = None
        self._port = port
        self._stopped = False
        self._routes = self._build_routes()

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> "NovaEmulator":
        """Start serving on 127.0.0.1 (a free port unless one was given)."""
        self._stopped = False
        self._bind()
        return self

    def stop(self) -> None:
        """Stop serving: hung requests are released (closed unanswered), connections closed."""
        self._stopped = True
        self._release_hangs()
        self._unbind()
        self._kill_connections()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """The compute endpoint, as a Keystone catalog would list it."""
        return "http://127.0.0.1:%d/v2.1" % self._port

    @property
    def root_url(self) -> str:
        return "http://127.0.0.1:%d" % self._port

    def _bind(self) -> None:
        last: Optional[OSError] = None
        for _ in range(50):
            try:
                httpd = _Server_(("127.0.0.1", self._port), self)
                break
            except OSError as e:  # the old socket may take a moment to go
                last = e
                time.sleep(0.05)
        else:
            raise RuntimeError("cannot bind 127.0.0.1:%d: %s" % (self._port, last))
        self._port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="nova-emulator:%d" % self._port, daemon=True)
        self._thread.start()

    def _unbind(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def _track(self, conn, add: bool) -> None:
        with self._lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def _kill_connections(self) -> None:
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _release_hangs(self) -> None:
        with self._lock:
            events, self._hang_events = self._hang_events, []
        for e in events:
            e.set()

    # ---- fault injection ------------------------------------------------------------------

    def fail(self, method: Optional[str] = None, path_regex: Optional[str] = None, status: int = 503,
             times: Optional[int] = 1, retry_after: Any = None, body: Any = None,
             headers: Optional[dict] = None, apply: bool = False) -> InjectedFault:
        """Answer the next `times` matching requests (None: all) with `status`.

        `path_regex` is searched in the request path plus "?query". The body is Nova's fault body
        for the status unless `body` is given (a dict is sent as JSON, str/bytes as they are).
        `retry_after` adds a `Retry-After` header. With `apply=True` the request is carried out
        first and only its answer is replaced (the "done, but the reply was lost" case).
        """
        f = InjectedFault("fail", method, path_regex, times, status=status, retry_after=retry_after,
                          body=body, headers=headers, apply=apply)
        with self._lock:
            self._faults.append(f)
        return f

    def hang(self, method: Optional[str] = None, path_regex: Optional[str] = None,
             times: Optional[int] = 1, apply: bool = False) -> InjectedFault:
        """Accept the next `times` matching requests and never answer them (until `stop()`, an
        outage starting or ending, or `release_hangs()`; then the connection is closed unanswered).
        With `apply=True` the request is carried out before the silence."""
        f = InjectedFault("hang", method, path_regex, times, apply=apply)
        with self._lock:
            self._faults.append(f)
        return f

    def release_hangs(self) -> None:
        """Close every hung connection now (unanswered)."""
        self._release_hangs()

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
        self._release_hangs()

    def set_outage(self, down: bool) -> None:
        """`True`: close the listening socket (connections are refused) and drop open connections;
        `False`: listen again on the same port."""
        with self._lock:
            if down == self._outage:
                return
            self._outage = down
            if down:
                self._counts["outage"] += 1
        self._release_hangs()
        if down:
            self._unbind()
            self._kill_connections()
        elif not self._stopped:
            self._bind()

    @property
    def in_outage(self) -> bool:
        return self._outage

    def set_latency(self, seconds: float) -> None:
        """Delay every answer by `seconds` (0 to stop)."""
        self._latency = max(0.0, float(seconds))

    def stats(self) -> dict:
        """Counts: requests, by status, by route, injected faults, current objects."""
        with self._lock:
            self._tick()
            by_status: dict = {}
            by_route: dict = {}
            for r in self.requests:
                by_status[r.status] = by_status.get(r.status, 0) + 1
                if r.route:
                    by_route[r.route] = by_route.get(r.route, 0) + 1
            return {
                "requests": len(self.requests),
                "by_status": by_status,
                "by_route": by_route,
                "faults": dict(self._counts),
                "pending_faults": sum(1 for f in self._faults
                                      if f.remaining is None or f.remaining > 0),
                "in_outage": self._outage,
                "latency": self._latency,
                "aggregates": len(self._aggregates),
                "flavors": len(self._flavors),
                "servers": len(self._servers),
            }

    # ---- tokens ---------------------------------------------------------------------------

    def add_token(self, token: str, project_id: str = "admin", roles: Iterable[str] = ("admin",),
                  user_id: Optional[str] = None) -> str:
        """Make `token` valid (when no validator is set) with this context."""
        with self._lock:
            self.tokens[token] = {"project_id": project_id, "roles": list(roles),
                                  "user_id": user_id or "user-" + project_id}
        return token

    def _authenticate(self, token: str) -> Optional[_Ctx]:
        if self.token_validator is not None:
            info = self.token_validator(token)
        else:
            with self._lock:
                info = self.tokens.get(token)
                if info is None and token in self.valid_tokens:
                    info = {"project_id": "admin", "roles": ["admin"], "user_id": "admin"}
        return self._context(token, info)

    @staticmethod
    def _context(token: str, info: Any) -> Optional[_Ctx]:
        if info is None or info is False:
            return None
        if info is True:
            return _Ctx(token, "admin", "admin", ["admin"], True)
        if not isinstance(info, dict):
            info = {k: getattr(info, k) for k in ("project_id", "roles", "user_id")
                    if hasattr(info, k)}
        if isinstance(info.get("token"), dict):
            info = info["token"]
        project = info.get("project_id") or info.get("tenant_id")
        if project is None and isinstance(info.get("project"), dict):
            project = info["project"].get("id")
        user = info.get("user_id")
        if user is None and isinstance(info.get("user"), dict):
            user = info["user"].get("id")
        roles = []
        for r in info.get("roles") or []:
            roles.append(r.get("name") if isinstance(r, dict) else str(r))
        return _Ctx(token, str(project or ""), str(user or ""), roles,
                    any((r or "").lower() == "admin" for r in roles))

    # ---- setup and inspection helpers -----------------------------------------------------

    def add_host(self, host: str) -> None:
        """Add a compute host (a new nova-compute service)."""
        with self._lock:
            self._add_service(host)

    def _add_service(self, host: str) -> None:
        if host not in self._hosts:
            self._hosts[host] = {"id": 10 + len(self._hosts), "uuid": str(uuid.uuid4()),
                                 "created": _now()}

    def hosts(self) -> list[str]:
        with self._lock:
            return list(self._hosts)

    def aggregates(self) -> list[dict]:
        """Every aggregate: id, uuid, name, availability_zone, hosts, metadata."""
        with self._lock:
            return [{"id": a.id, "uuid": a.uuid, "name": a.name,
                     "availability_zone": a.availability_zone, "hosts": list(a.hosts),
                     "metadata": dict(a.metadata)} for a in self._aggregates.values()]

    def flavors(self) -> list[dict]:
        """Every flavor: id, name, ram, vcpus, disk, is_public, extra_specs, projects (access)..."""
        with self._lock:
            return [{"id": f.flavorid, "name": f.name, "ram": f.ram, "vcpus": f.vcpus,
                     "disk": f.disk, "ephemeral": f.ephemeral, "swap": f.swap,
                     "rxtx_factor": f.rxtx_factor, "is_public": f.is_public,
                     "description": f.description, "extra_specs": dict(f.extra_specs),
                     "projects": list(f.projects)} for f in self._flavors.values()]

    def servers(self) -> list[dict]:
        """Every server that still exists (deleting ones included), oldest first."""
        with self._lock:
            self._tick()
            return [self._server_summary(s) for s in sorted(self._servers.values(),
                                                             key=lambda s: s.seq)]

    def server(self, server_id: str) -> Optional[dict]:
        with self._lock:
            self._tick()
            s = self._servers.get(server_id)
            return None if s is None else self._server_summary(s)

    @staticmethod
    def _server_summary(s: _Server) -> dict:
        return {"id": s.id, "name": s.name, "status": _status(s.vm_state, s.task_state),
                "vm_state": s.vm_state, "task_state": s.task_state, "host": s.host,
                "project_id": s.project_id, "user_id": s.user_id,
                "flavor_id": s.flavor["flavorid"], "flavor": copy.deepcopy(s.flavor),
                "metadata": dict(s.metadata), "image": s.image_ref,
                "availability_zone": s.availability_zone, "fault": copy.deepcopy(s.fault)}

    def boot(self, project: str, flavor_id: str, host: str, name: str = "", *,
             user_id: Optional[str] = None, active: bool = True, metadata: Optional[dict] = None,
             image: str = "") -> str:
        """A tenant's server, as if the tenant had booted it (no API call, no scheduler filters).

        ACTIVE at once unless `active=False` (then BUILD -> ACTIVE after build_delay). Returns the
        server id. Raises ValueError for an unknown flavor or host.
        """
        with self._lock:
            self._tick()
            f = self._flavors.get(str(flavor_id))
            if f is None:
                raise ValueError("no flavor %s" % flavor_id)
            if host not in self._hosts:
                raise ValueError("no compute host %s" % host)
            s = self._new_server(name or "server-%d" % self._next_seq, project,
                                 user_id or "user-" + project, f, image or str(uuid.uuid4()),
                                 "auto", metadata or {}, None)
            s.availability_zone = self._host_az(host)
            if active:
                s.host = host
                self._make_active(s)
            else:
                self._schedule_build(s, [host], forced=True)
            return s.id

    def set_server_state(self, server_id: str, vm_state: Optional[str] = None,
                         task_state: Any = "unchanged", power_state: Optional[int] = None) -> None:
        """Force a server's vm_state/task_state (for wrong-state tests); pending transitions of
        the server are cancelled."""
        with self._lock:
            self._tick()
            s = self._servers[server_id]
            s.events.clear()
            if vm_state is not None:
                s.vm_state = vm_state
            if task_state != "unchanged":
                s.task_state = task_state
            if power_state is not None:
                s.power_state = power_state
            s.updated_at = _now()

    def find_requests(self, method: Optional[str] = None, path_regex: Optional[str] = None,
                      status: Optional[int] = None) -> list[RecordedRequest]:
        with self._lock:
            out = []
            for r in self.requests:
                if method is not None and r.method != method.upper():
                    continue
                if path_regex is not None and not re.search(path_regex, r.path):
                    continue
                if status is not None and r.status != status:
                    continue
                out.append(r)
            return out

    def wait_for(self, predicate: Callable[[], Any], timeout: float = 5.0,
                 interval: float = 0.02) -> Any:
        """Poll `predicate()` until it is truthy; return its value or raise TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met within %.1fs" % timeout)
            time.sleep(interval)

    # ---- request entry point --------------------------------------------------------------

    def _serve(self, method: str, target: str, headers, body: bytes, port: int):
        split = urllib.parse.urlsplit(target)
        path = split.path or "/"
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        parsed_body: Any = None
        if body:
            try:
                parsed_body = json.loads(body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                parsed_body = body.decode("utf-8", "replace")
        record = RecordedRequest(method=method, path=path, query=query, version=None,
                                 body=parsed_body, token=headers.get("X-Auth-Token"),
                                 headers={k: v for k, v in headers.items()}, time=time.time())
        with self._lock:
            self.requests.append(record)
        req = _Req(method, target, path, query, headers, body,
                   "http://127.0.0.1:%d" % port, record)

        if self._latency:
            time.sleep(self._latency)

        fault = None
        match_target = path + ("?" + split.query if split.query else "")
        with self._lock:
            for f in self._faults:
                if f.matches(method, match_target):
                    if f.remaining is not None:
                        f.remaining -= 1
                    f.hits += 1
                    self._counts[f.kind] += 1
                    fault = f
                    break
        if fault is not None:
            record.fault = fault.kind
            if fault.apply:
                record.applied_status = self._dispatch(req).status
            if fault.kind == "hang":
                record.status = None
                ev = threading.Event()
                with self._lock:
                    self._hang_events.append(ev)
                    if self._stopped or self._outage:
                        ev.set()
                ev.wait()
                return _CLOSE
            resp = self._failure(fault)
            record.status = resp.status
            return resp

        resp = self._dispatch(req)
        record.status = resp.status if isinstance(resp, _Resp) else None
        return resp

    def _failure(self, f: InjectedFault) -> _Resp:
        headers = {"X-Openstack-Request-Id": "req-" + str(uuid.uuid4())}
        if f.retry_after is not None:
            headers["Retry-After"] = str(f.retry_after)
        if f.headers:
            headers.update(f.headers)
        if f.body is None:
            return _Resp(f.status, fault_body(f.status, _DEFAULT_MESSAGES.get(
                f.status, http.server.BaseHTTPRequestHandler.responses.get(f.status, ("Error",))[0])),
                headers)
        if isinstance(f.body, (dict, list)):
            return _Resp(f.status, f.body, headers)
        raw = f.body if isinstance(f.body, bytes) else str(f.body).encode("utf-8")
        headers.setdefault("Content-Type", "text/plain")
        return _Resp(f.status, None, headers, raw=raw)

    def _dispatch(self, req: _Req) -> _Resp:
        request_id = "req-" + str(uuid.uuid4())
        base = {"X-Openstack-Request-Id": request_id, "X-Compute-Request-Id": request_id}
        path = req.path

        # Version documents: no token needed.
        if path == "/" and req.method == "GET":
            return _Resp(200, self._versions_doc(req.base_url), base)
        if path in ("/v2.1", "/v2.1/") and req.method == "GET":
            return _Resp(200, self._version_doc(req.base_url), base)
        if not (path.startswith("/v2.1/")):
            return _Resp(404, fault_body(404, "The resource could not be found."), base)

        # keystonemiddleware comes first.
        token = req.headers.get("X-Auth-Token")
        ctx: Optional[_Ctx] = None
        if token:
            try:
                ctx = self._authenticate(token)
            except Exception:  # noqa: BLE001 - the identity service could not answer
                return _Resp(503, {"error": {"code": 503, "title": "Service Unavailable",
                                             "message": "The Keystone service is temporarily "
                                                        "unavailable."}}, base)
        if ctx is None:
            h = dict(base)
            if self.www_authenticate_uri:
                h["WWW-Authenticate"] = 'Keystone uri="%s"' % self.www_authenticate_uri
            return _Resp(401, {"error": {"code": 401, "title": "Unauthorized",
                                         "message": "The request you have made requires "
                                                    "authentication."}}, h)
        req.ctx = ctx

        # Route (with or without a project id after /v2.1, as Nova's mapper allows).
        rest = path[len("/v2.1"):]
        segs = [s for s in rest.split("/") if s != ""]
        handler, params, route = self._match(req.method, segs)
        if handler is None and len(segs) >= 2 and segs[0] not in self._collections:
            handler, params, route = self._match(req.method, segs[1:])
            if handler is not None and segs[0] != ctx.project_id:
                return _Resp(400, fault_body(400, "Malformed request URL: URL's project_id '%s' "
                                                  "doesn't match Context's project_id '%s'"
                                             % (segs[0], ctx.project_id)), base)
        if handler is None:
            return _Resp(404, fault_body(404, "The resource could not be found."), base)
        req.params = params
        req.route = route
        req.record.route = route

        # Microversion.
        requested = self._requested_version(req.headers)
        vheaders = dict(base)
        if requested is not None:
            if requested.lower() == "latest":
                req.version = self.max_version
            else:
                try:
                    v = _parse_version(requested)
                except ValueError:
                    return _Resp(400, fault_body(400, "API Version String %s is of invalid format. "
                                                      "Must be of format MajorNum.MinorNum."
                                                 % requested), base)
                self._version_headers(vheaders, v)
                if not (self.min_version <= v <= self.max_version):
                    return _Resp(406, fault_body(406, "Version %s is not supported by the API. "
                                                      "Minimum is %s and maximum is %s."
                                                 % (_vstr(v), _vstr(self.min_version),
                                                    _vstr(self.max_version))), vheaders)
                req.version = v
        else:
            req.version = (2, 1)
        req.record.version = _vstr(req.version)
        vheaders = dict(base)
        self._version_headers(vheaders, req.version)

        # Content type of a body.
        ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if req.body_bytes and ctype and ctype not in ("application/json", "text/plain",
                                                       "application/vnd.openstack.compute+json"):
            return _Resp(415, fault_body(415, "Unsupported Content-Type"), vheaders)

        try:
            with self._lock:
                self._tick()
                result = handler(req)
        except _Fault as f:
            h = dict(vheaders)
            h.update(f.headers)
            return _Resp(f.status, fault_body(f.status, f.message), h)
        except Exception as e:  # noqa: BLE001 - an emulator bug must still answer like Nova
            return _Resp(500, fault_body(500, "Unexpected API Error. Please report this at "
                                              "http://bugs.launchpad.net/nova/ and attach the "
                                              "Nova API log if possible.\n%s: %s"
                                         % (type(e).__name__, e)), vheaders)
        status, body, extra = result if len(result) == 3 else (result[0], result[1], {})
        vheaders.update(extra)
        return _Resp(status, body, vheaders)

    @staticmethod
    def _version_headers(h: dict, v: tuple) -> None:
        h["OpenStack-API-Version"] = "compute " + _vstr(v)
        h["X-OpenStack-Nova-API-Version"] = _vstr(v)
        h["Vary"] = "OpenStack-API-Version, X-OpenStack-Nova-API-Version"

    @staticmethod
    def _requested_version(headers) -> Optional[str]:
        values = headers.get_all("OpenStack-API-Version") or []
        for value in values:
            for part in value.split(","):
                bits = part.strip().split(None, 1)
                if len(bits) == 2 and bits[0].lower() == "compute":
                    return bits[1].strip()
                if len(bits) == 1 and bits[0].lower() == "compute":
                    return ""
        legacy = headers.get("X-OpenStack-Nova-API-Version")
        if legacy is not None:
            return legacy.strip()
        return None

    def _versions_doc(self, base: str) -> dict:
        return {"versions": [
            {"id": "v2.0", "status": "SUPPORTED", "version": "", "min_version": "",
             "updated": "2011-01-21T11:33:21Z", "links": [{"rel": "self", "href": base + "/v2/"}]},
            {"id": "v2.1", "status": "CURRENT", "version": _vstr(self.max_version),
             "min_version": _vstr(self.min_version), "updated": "2013-07-23T11:33:21Z",
             "links": [{"rel": "self", "href": base + "/v2.1/"}]},
        ]}

    def _version_doc(self, base: str) -> dict:
        return {"version": {
            "id": "v2.1", "status": "CURRENT", "version": _vstr(self.max_version),
            "min_version": _vstr(self.min_version), "updated": "2013-07-23T11:33:21Z",
            "links": [{"rel": "self", "href": base + "/v2.1/"},
                      {"rel": "describedby", "type": "text/html",
                       "href": "http://docs.openstack.org/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.compute+json;version=2.1"}],
        }}

    # ---- routing --------------------------------------------------------------------------

    _collections = {"servers", "flavors", "os-aggregates", "os-services", "images", "limits",
                    "extensions", "os-keypairs", "os-hypervisors", "os-availability-zone"}

    def _build_routes(self) -> list:
        r = [
            ("GET", "os-aggregates", self._agg_index),
            ("POST", "os-aggregates", self._agg_create),
            ("GET", "os-aggregates/{id}", self._agg_show),
            ("DELETE", "os-aggregates/{id}", self._agg_delete),
            ("POST", "os-aggregates/{id}/action", self._agg_action),
            ("GET", "flavors", self._flavor_index),
            ("POST", "flavors", self._flavor_create),
            ("GET", "flavors/detail", self._flavor_detail),
            ("GET", "flavors/{id}", self._flavor_show),
            ("DELETE", "flavors/{id}", self._flavor_delete),
            ("POST", "flavors/{id}/action", self._flavor_action),
            ("GET", "flavors/{flavor_id}/os-extra_specs", self._extra_specs_index),
            ("POST", "flavors/{flavor_id}/os-extra_specs", self._extra_specs_create),
            ("GET", "flavors/{flavor_id}/os-extra_specs/{id}", self._extra_spec_show),
            ("DELETE", "flavors/{flavor_id}/os-extra_specs/{id}", self._extra_spec_delete),
            ("GET", "flavors/{flavor_id}/os-flavor-access", self._flavor_access_index),
            ("GET", "servers", self._server_index),
            ("POST", "servers", self._server_create),
            ("GET", "servers/detail", self._server_detail),
            ("GET", "servers/{id}", self._server_show),
            ("DELETE", "servers/{id}", self._server_delete),
            ("POST", "servers/{id}/action", self._server_action),
            ("GET", "os-services", self._services_index),
            ("GET", "os-hypervisors/detail", self._hypervisors_detail),
        ]
        return [(m, p.split("/"), h) for m, p, h in r]

    def _match(self, method: str, segs: list):
        for m, pattern, h in self._routes:
            if m != method or len(pattern) != len(segs):
                continue
            params = {}
            for p, s in zip(pattern, segs):
                if p.startswith("{"):
                    params[p[1:-1]] = urllib.parse.unquote(s)
                elif p != s:
                    break
            else:
                return h, params, "%s /%s" % (method, "/".join(pattern))
        return None, {}, None

    # ---- helpers for handlers -------------------------------------------------------------

    @staticmethod
    def _body(req: _Req) -> Any:
        if not req.body_bytes:
            return None
        try:
            return json.loads(req.body_bytes.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise _Fault(400, "Malformed request body")

    @staticmethod
    def _action_name(req: _Req) -> tuple[str, Any]:
        try:
            body = json.loads(req.body_bytes.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise _Fault(400, "Malformed request body")
        if not isinstance(body, dict) or len(body) != 1:
            raise _Fault(400, "Malformed request body")
        return next(iter(body)), body

    @staticmethod
    def _admin(req: _Req, rule: str) -> None:
        if not req.ctx.is_admin:
            raise _forbidden(rule)

    @staticmethod
    def _query_strict(req: _Req, allowed: set) -> None:
        for k in req.query:
            if k not in allowed:
                raise _Fault(400, "Additional properties are not allowed ('%s' was unexpected)" % k)

    def _links(self, req: _Req, collection: str, ident: Any) -> list:
        return [{"rel": "self", "href": "%s/v2.1/%s/%s" % (req.base_url, collection, ident)},
                {"rel": "bookmark", "href": "%s/%s/%s" % (req.base_url, collection, ident)}]

    # ---- aggregates -----------------------------------------------------------------------

    def _agg_view(self, req: _Req, a: _Aggregate, full: bool = True) -> dict:
        d = {"availability_zone": a.availability_zone,
             "created_at": _iso_micro(a.created_at), "deleted": False, "deleted_at": None,
             "id": a.id, "name": a.name, "updated_at": _iso_micro(a.updated_at)}
        if full:
            d["hosts"] = list(a.hosts)
            d["metadata"] = dict(a.metadata)
        if req.version >= (2, 41):
            d["uuid"] = a.uuid
        return d

    def _agg_get(self, raw_id: str) -> _Aggregate:
        try:
            agg_id = int(str(raw_id))
        except ValueError:
            raise _Fault(400, "Invalid input received: id must be an integer")
        a = self._aggregates.get(agg_id)
        if a is None:
            raise _not_found("Aggregate %s could not be found." % raw_id)
        return a

    def _agg_index(self, req: _Req):
        self._admin(req, "os_compute_api:os-aggregates:index")
        return 200, {"aggregates": [self._agg_view(req, a) for a in self._aggregates.values()]}

    def _agg_create(self, req: _Req):
        body = self._body(req)
        _validate(_AGGREGATE_CREATE, body)
        self._admin(req, "os_compute_api:os-aggregates:create")
        name = body["aggregate"]["name"].strip()
        az = body["aggregate"].get("availability_zone")
        if any(a.name == name for a in self._aggregates.values()):
            raise _Fault(409, "Aggregate %s already exists." % name)
        a = _Aggregate(id=self._next_agg, uuid=str(uuid.uuid4()), name=name,
                       availability_zone=az or None, created_at=_now())
        if az:
            a.metadata["availability_zone"] = az
        self._next_agg += 1
        self._aggregates[a.id] = a
        return 200, {"aggregate": self._agg_view(req, a, full=False)}

    def _agg_show(self, req: _Req):
        self._admin(req, "os_compute_api:os-aggregates:show")
        return 200, {"aggregate": self._agg_view(req, self._agg_get(req.params["id"]))}

    def _agg_delete(self, req: _Req):
        self._admin(req, "os_compute_api:os-aggregates:delete")
        a = self._agg_get(req.params["id"])
        if a.hosts:
            raise _Fault(400, "Cannot remove host from aggregate %s. Reason: Host aggregate is not "
                              "empty." % a.id)
        del self._aggregates[a.id]
        return 200, None

    def _agg_action(self, req: _Req):
        action, body = self._action_name(req)
        if action not in _AGGREGATE_ACTIONS:
            raise _Fault(400, "There is no such action: %s" % action)
        _validate(_AGGREGATE_ACTIONS[action], body)
        self._admin(req, "os_compute_api:os-aggregates:%s" % action)
        raw_id = req.params["id"]
        try:
            int(str(raw_id))
        except ValueError:
            raise _Fault(400, "Invalid input received: id must be an integer")
        if action == "add_host":
            host = body["add_host"]["host"]
            if host not in self._hosts:
                raise _not_found("Compute host %s could not be found." % host)
            a = self._agg_get(raw_id)
            if host in a.hosts:
                raise _Fault(409, "Aggregate %s already has host %s." % (a.id, host))
            if a.availability_zone:
                conflicting = [o.availability_zone for o in self._aggregates.values()
                               if o.id != a.id and host in o.hosts and o.availability_zone
                               and o.availability_zone != a.availability_zone]
                if conflicting:
                    raise _Fault(409, "Cannot add host to aggregate %s. Reason: One or more hosts "
                                      "already in availability zone(s) %s." % (a.id, conflicting))
            a.hosts.append(host)
            a.updated_at = _now()
            return 200, {"aggregate": self._agg_view(req, a)}
        if action == "remove_host":
            host = body["remove_host"]["host"]
            a = self._aggregates.get(int(str(raw_id)))
            if a is None or host not in self._hosts or host not in a.hosts:
                raise _not_found("Cannot remove host %s in aggregate %s" % (host, raw_id))
            a.hosts.remove(host)
            a.updated_at = _now()
            return 200, {"aggregate": self._agg_view(req, a)}
        # set_metadata
        a = self._agg_get(raw_id)
        metadata = body["set_metadata"]["metadata"]
        if "availability_zone" in metadata and metadata["availability_zone"]:
            new_az = metadata["availability_zone"]
            conflicting = [o.availability_zone for o in self._aggregates.values()
                           if o.id != a.id and o.availability_zone
                           and o.availability_zone != new_az and set(o.hosts) & set(a.hosts)]
            if conflicting:
                raise _Fault(400, "Cannot update metadata of aggregate %s. Reason: One or more "
                                  "hosts already in availability zone(s) %s." % (a.id, conflicting))
        for k, v in metadata.items():
            if v is None:
                a.metadata.pop(k, None)
            else:
                a.metadata[k] = v
        a.availability_zone = a.metadata.get("availability_zone") or None
        a.updated_at = _now()
        return 200, {"aggregate": self._agg_view(req, a)}

    # ---- flavors --------------------------------------------------------------------------

    def _flavor_visible(self, ctx: _Ctx, f: _Flavor) -> bool:
        return ctx.is_admin or f.is_public or ctx.project_id in f.projects

    def _flavor_get(self, req: _Req, flavor_id: str) -> _Flavor:
        f = self._flavors.get(flavor_id)
        if f is None or not self._flavor_visible(req.ctx, f):
            raise _not_found("Flavor %s could not be found." % flavor_id)
        return f

    def _flavor_view(self, req: _Req, f: _Flavor) -> dict:
        d = {"id": f.flavorid, "name": f.name, "ram": f.ram, "disk": f.disk,
             "swap": f.swap if req.version >= (2, 75) else (f.swap or ""),
             "OS-FLV-EXT-DATA:ephemeral": f.ephemeral, "OS-FLV-DISABLED:disabled": f.disabled,
             "vcpus": f.vcpus, "os-flavor-access:is_public": f.is_public,
             "rxtx_factor": f.rxtx_factor or "", "links": self._links(req, "flavors", f.flavorid)}
        if req.version >= (2, 55):
            d["description"] = f.description
        if req.version >= (2, 61):
            d["extra_specs"] = dict(f.extra_specs)
        return d

    def _flavor_list(self, req: _Req) -> list:
        ctx = req.ctx
        is_public: Optional[bool] = True
        if ctx.is_admin and "is_public" in req.query:
            raw = req.query["is_public"][-1]
            if raw.strip().lower() == "none":
                is_public = None
            elif raw.strip().lower() in _TRUE_STRINGS:
                is_public = True
            elif raw.strip().lower() in {"false", "0", "off", "no", "f", "n"}:
                is_public = False
            else:
                raise _Fault(400, "Invalid is_public filter [%s]" % raw)
        out = []
        for f in self._flavors.values():
            if is_public is True and not (f.is_public or ctx.project_id in f.projects):
                continue
            if is_public is False and f.is_public:
                continue
            if not ctx.is_admin and not self._flavor_visible(ctx, f):
                continue
            out.append(f)
        for key, attr in (("minRam", "ram"), ("minDisk", "disk")):
            if key in req.query:
                try:
                    bound = int(req.query[key][-1])
                except ValueError:
                    raise _Fault(400, "Invalid %s filter [%s]" % (key, req.query[key][-1]))
                out = [f for f in out if getattr(f, attr) >= bound]
        out.sort(key=lambda f: f.flavorid)
        return self._paginate(req, out, lambda f: f.flavorid)

    @staticmethod
    def _paginate(req: _Req, items: list, key: Callable[[Any], str]) -> list:
        if "marker" in req.query:
            marker = req.query["marker"][-1]
            idx = next((i for i, it in enumerate(items) if key(it) == marker), None)
            if idx is None:
                raise _Fault(400, "marker [%s] not found" % marker)
            items = items[idx + 1:]
        if "limit" in req.query:
            raw = req.query["limit"][-1]
            if not re.match(r"^[0-9]+$", raw):
                raise _Fault(400, "Invalid input for query parameters limit. Value: %s. '%s' "
                                  "does not match '^[0-9]*$'" % (raw, raw))
            limit = int(raw)
            if limit:
                items = items[:limit]
        return items

    @staticmethod
    def _next_links(req: _Req, collection: str, items: list, last_id: Callable[[Any], str]) -> list:
        """Nova's `<collection>_links` when a `limit` was given and filled."""
        raw = (req.query.get("limit") or [""])[-1]
        if not raw.isdigit() or int(raw) == 0 or len(items) != int(raw):
            return []
        params = [(k, v) for k, vals in sorted(req.query.items()) if k != "marker" for v in vals]
        params.append(("marker", last_id(items[-1])))
        return [{"rel": "next", "href": "%s/v2.1/%s?%s" % (req.base_url, collection,
                                                          urllib.parse.urlencode(params))}]

    def _flavor_index(self, req: _Req):
        items = []
        flavors = self._flavor_list(req)
        for f in flavors:
            d = {"id": f.flavorid, "name": f.name, "links": self._links(req, "flavors", f.flavorid)}
            if req.version >= (2, 55):
                d["description"] = f.description
            items.append(d)
        out: dict = {"flavors": items}
        links = self._next_links(req, "flavors", flavors, lambda f: f.flavorid)
        if links:
            out["flavors_links"] = links
        return 200, out

    def _flavor_detail(self, req: _Req):
        flavors = self._flavor_list(req)
        out: dict = {"flavors": [self._flavor_view(req, f) for f in flavors]}
        links = self._next_links(req, "flavors/detail", flavors, lambda f: f.flavorid)
        if links:
            out["flavors_links"] = links
        return 200, out

    def _flavor_show(self, req: _Req):
        return 200, {"flavor": self._flavor_view(req, self._flavor_get(req, req.params["id"]))}

    def _flavor_create(self, req: _Req):
        body = self._body(req)
        _validate(_flavor_create_schema(req.version), body)
        self._admin(req, "os_compute_api:os-flavor-manage:create")
        vals = body["flavor"]
        name = vals["name"].strip()
        flavorid = vals.get("id")
        flavorid = str(uuid.uuid4()) if flavorid is None else str(flavorid).strip()
        if any(f.name == name for f in self._flavors.values()):
            raise _Fault(409, "Flavor with name %s already exists." % name)
        if flavorid in self._flavors:
            raise _Fault(409, "Flavor with ID %s already exists." % flavorid)
        f = _Flavor(internal_id=self._next_flavor, flavorid=flavorid, name=name,
                    ram=int(vals["ram"]), vcpus=int(vals["vcpus"]), disk=int(vals["disk"]),
                    ephemeral=int(vals.get("OS-FLV-EXT-DATA:ephemeral", 0)),
                    swap=int(vals.get("swap", 0)), rxtx_factor=float(vals.get("rxtx_factor", 1.0)),
                    is_public=_bool_from(vals.get("os-flavor-access:is_public", True)),
                    description=vals.get("description"))
        self._next_flavor += 1
        self._flavors[flavorid] = f
        return 200, {"flavor": self._flavor_view(req, f)}

    def _flavor_delete(self, req: _Req):
        self._admin(req, "os_compute_api:os-flavor-manage:delete")
        flavor_id = req.params["id"]
        if flavor_id not in self._flavors:
            raise _not_found("Flavor %s could not be found." % flavor_id)
        del self._flavors[flavor_id]
        return 202, None

    def _flavor_action(self, req: _Req):
        action, body = self._action_name(req)
        if action not in _FLAVOR_ACTIONS:
            raise _Fault(400, "There is no such action: %s" % action)
        _validate(_FLAVOR_ACTIONS[action], body)
        rule = "add_tenant_access" if action == "addTenantAccess" else "remove_tenant_access"
        self._admin(req, "os_compute_api:os-flavor-access:%s" % rule)
        flavor_id = req.params["id"]
        tenant = body[action]["tenant"]
        f = self._flavors.get(flavor_id)
        if f is None:
            raise _not_found("Flavor %s could not be found." % flavor_id)
        if action == "addTenantAccess":
            if req.version >= (2, 7) and f.is_public:
                raise _Fault(409, "Can not add access to a public flavor.")
            if tenant in f.projects:
                raise _Fault(409, "Flavor access already exists for flavor %s and project %s "
                                  "combination." % (flavor_id, tenant))
            f.projects.append(tenant)
        else:
            if tenant not in f.projects:
                raise _not_found("Flavor access not found for %s / %s combination."
                                 % (flavor_id, tenant))
            f.projects.remove(tenant)
        return 200, {"flavor_access": [{"flavor_id": f.flavorid, "tenant_id": p}
                                       for p in f.projects]}

    def _flavor_access_index(self, req: _Req):
        self._admin(req, "os_compute_api:os-flavor-access")
        f = self._flavor_get(req, req.params["flavor_id"])
        if f.is_public:
            raise _not_found("Access list not available for public flavors.")
        return 200, {"flavor_access": [{"flavor_id": f.flavorid, "tenant_id": p}
                                       for p in f.projects]}

    def _extra_specs_index(self, req: _Req):
        f = self._flavor_get(req, req.params["flavor_id"])
        return 200, {"extra_specs": dict(f.extra_specs)}

    def _extra_specs_create(self, req: _Req):
        body = self._body(req)
        _validate(_EXTRA_SPECS_CREATE, body)
        self._admin(req, "os_compute_api:os-flavor-extra-specs:create")
        for v in body["extra_specs"].values():
            if not isinstance(v, str) and len(str(v)) > 255:
                raise _Fault(400, "Invalid input received: extra_specs value has more than 255 "
                                  "characters.")
        f = self._flavor_get(req, req.params["flavor_id"])
        for k, v in body["extra_specs"].items():
            f.extra_specs[k] = v if isinstance(v, str) else json.dumps(v)
        return 200, body

    def _extra_spec_show(self, req: _Req):
        f = self._flavor_get(req, req.params["flavor_id"])
        key = req.params["id"]
        if key not in f.extra_specs:
            raise _not_found("Flavor %s has no extra specs with key %s." % (f.flavorid, key))
        return 200, {key: f.extra_specs[key]}

    def _extra_spec_delete(self, req: _Req):
        self._admin(req, "os_compute_api:os-flavor-extra-specs:delete")
        f = self._flavor_get(req, req.params["flavor_id"])
        key = req.params["id"]
        if key not in f.extra_specs:
            raise _not_found("Flavor %s has no extra specs with key %s." % (f.flavorid, key))
        del f.extra_specs[key]
        return 200, None

    # ---- services -------------------------------------------------------------------------

    def _services_index(self, req: _Req):
        self._admin(req, "os_compute_api:os-services:list")
        rows = []
        for host, svc in self._hosts.items():
            rows.append({"id": svc["id"], "uuid": svc["uuid"], "binary": "nova-compute",
                         "host": host, "zone": self._host_az(host)})
        rows = self._controller_services + rows
        out = []
        for r in rows:
            if "binary" in req.query and r["binary"] != req.query["binary"][-1]:
                continue
            if "host" in req.query and r["host"] != req.query["host"][-1]:
                continue
            d = {"id": r["uuid"] if req.version >= (2, 53) else r["id"], "binary": r["binary"],
                 "disabled_reason": None, "host": r["host"], "state": "up", "status": "enabled",
                 "updated_at": _iso_micro(_now()), "zone": r["zone"]}
            if req.version >= (2, 11):
                d["forced_down"] = False
            out.append(d)
        return 200, {"services": out}

    def _hypervisors_detail(self, req: _Req):
        """Nova's `GET /os-hypervisors/detail` for the fake driver's nodes (one per compute host):
        `hypervisor_hostname_pattern` (2.53+) matches substrings and answers 404 when nothing
        matches; the sizes are in the body only below 2.88."""
        self._admin(req, "os_compute_api:os-hypervisors:list-detail")
        pattern = req.query.get("hypervisor_hostname_pattern", [None])[-1]
        if pattern is not None and req.version < (2, 53):
            raise _Fault(400, "Query parameter hypervisor_hostname_pattern is not allowed before 2.53")
        out = []
        for host, svc in self._hosts.items():
            if pattern is not None and pattern not in host:
                continue
            size = {"vcpus": 32, "memory_mb": 65536, "local_gb": 500, **self.hypervisor_sizes.get(host, {})}
            d = {"id": svc["uuid"] if req.version >= (2, 53) else svc["id"], "hypervisor_hostname": host,
                 "state": "up", "status": "enabled", "hypervisor_type": "fake", "hypervisor_version": 1000,
                 "host_ip": "192.0.2.1",
                 "service": {"host": host, "id": svc["uuid"] if req.version >= (2, 53) else svc["id"],
                             "disabled_reason": None}}
            if req.version < (2, 88):
                d.update({"vcpus": size["vcpus"], "memory_mb": size["memory_mb"], "local_gb": size["local_gb"],
                          "vcpus_used": 0, "memory_mb_used": 512, "local_gb_used": 0,
                          "free_ram_mb": size["memory_mb"] - 512, "free_disk_gb": size["local_gb"],
                          "current_workload": 0, "running_vms": 0, "disk_available_least": size["local_gb"],
                          "cpu_info": "{}"})
            out.append(d)
        if pattern is not None and not out:
            raise _not_found("No hypervisor matching '%s' could be found." % pattern)
        return 200, {"hypervisors": out}

    # ---- scheduling and server lifecycle --------------------------------------------------

    def _host_az(self, host: str) -> str:
        for a in self._aggregates.values():
            if host in a.hosts and a.availability_zone:
                return a.availability_zone
        return "nova"

    def _host_metadata(self, host: str) -> dict:
        meta: dict = {}
        for a in self._aggregates.values():
            if host in a.hosts:
                for k, v in a.metadata.items():
                    meta.setdefault(k, set()).update(x.strip() for x in str(v).split(","))
        return meta

    @staticmethod
    def _custom_resources(extra_specs: dict) -> dict:
        out = {}
        for k, v in extra_specs.items():
            if k.startswith("resources") and ":" in k:
                rc = k.split(":", 1)[1]
                if rc in ("VCPU", "MEMORY_MB", "DISK_GB"):
                    continue
                try:
                    n = int(v)
                except ValueError:
                    continue
                if n > 0:
                    out[rc] = out.get(rc, 0) + n
        return out

    def _host_passes(self, host: str, flavor: dict, project: str, az: Optional[str]) -> bool:
        filters = self.scheduler_filters
        if "AvailabilityZoneFilter" in filters and az and self._host_az(host) != az:
            return False
        meta = self._host_metadata(host)
        if "AggregateMultiTenancyIsolation" in filters:
            # filter_tenant_id* keys restrict the host to the tenants they list.
            tenants: set = set()
            for k, vals in meta.items():
                if k.startswith("filter_tenant_id"):
                    tenants |= vals
            if tenants and project not in tenants:
                return False
        for key, want in flavor["extra_specs"].items():
            scope = key.split(":", 1)
            if len(scope) == 1 or scope[0] == "capabilities":
                # ComputeCapabilitiesFilter: unscoped and capabilities: keys must match the host's
                # reported capabilities; the emulated hosts report none that an extra spec names.
                if "ComputeCapabilitiesFilter" in filters:
                    return False
            if len(scope) == 1 or scope[0] == "aggregate_instance_extra_specs":
                # AggregateInstanceExtraSpecsFilter: the host's aggregates' metadata must match.
                if "AggregateInstanceExtraSpecsFilter" in filters:
                    have = meta.get(scope[-1])
                    if not have or str(want).strip() not in have:
                        return False
        # Placement: custom resource classes need free inventory on the host.
        need = self._custom_resources(flavor["extra_specs"])
        if need:
            inventory = self.host_resources.get(host, {})
            for rc, n in need.items():
                used = sum(self._custom_resources(s.flavor["extra_specs"]).get(rc, 0)
                           for s in self._servers.values() if s.host == host)
                if inventory.get(rc, 0) - used < n:
                    return False
        return True

    def _new_server(self, name, project, user, f: _Flavor, image, networks, metadata, key_name):
        snap = {"flavorid": f.flavorid, "internal_id": f.internal_id, "name": f.name,
                "ram": f.ram, "vcpus": f.vcpus, "disk": f.disk, "ephemeral": f.ephemeral,
                "swap": f.swap, "extra_specs": dict(f.extra_specs)}
        s = _Server(id=str(uuid.uuid4()), name=name, project_id=project, user_id=user, flavor=snap,
                    image_ref=image, networks=networks, metadata=dict(metadata), key_name=key_name,
                    created_at=_now(), seq=self._next_seq)
        s.updated_at = s.created_at
        s.reservation_id = "r-" + secrets.token_hex(4)
        s.hostname = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63] or "server"
        s.security_groups = [] if networks == "none" else [{"name": "default"}]
        self._next_seq += 1
        self._servers[s.id] = s
        return s

    def _schedule_build(self, s: _Server, candidates: list, forced: bool = False,
                        unshelve: bool = False) -> None:
        now = time.monotonic()

        def schedule():
            ok = [h for h in candidates
                  if forced or self._host_passes(h, s.flavor, s.project_id, s.requested_az)]
            if not ok:
                fault = {"code": 500, "created": _iso_z(_now()),
                         "message": "No valid host was found. There are not enough hosts "
                                    "available."}
                if unshelve:  # the server stays offloaded; the failure is an instance fault
                    s.task_state = None
                else:
                    s.vm_state, s.task_state, s.power_state = "error", None, 0
                s.fault = fault
                s.events.clear()
                s.updated_at = _now()
                return
            load = {h: sum(1 for o in self._servers.values() if o.host == h) for h in ok}
            s.host = min(ok, key=lambda h: (load[h], h))
            s.availability_zone = self._host_az(s.host)
            s.task_state = "spawning"
            s.updated_at = _now()

        def finish():
            if s.host is not None and (s.vm_state == "building" or unshelve):
                self._make_active(s)

        s.events = [(now + self.build_delay / 2, schedule), (now + self.build_delay, finish)]

    def _make_active(self, s: _Server) -> None:
        s.vm_state, s.task_state, s.power_state = "active", None, _POWER["running"]
        s.launched_at = s.launched_at or _now()
        s.updated_at = _now()
        if s.networks != "none" and not s.addresses:
            n = s.seq
            s.addresses = {"private": [{
                "addr": "10.0.%d.%d" % ((n // 250) % 250, n % 250 + 2), "version": 4,
                "OS-EXT-IPS:type": "fixed",
                "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:%02x:%02x:%02x" % (
                    (n >> 16) & 255, (n >> 8) & 255, n & 255)}]}

    def _tick(self) -> None:
        """Apply every due transition (called under the lock before each operation)."""
        now = time.monotonic()
        for s in list(self._servers.values()):
            while s.events and s.events[0][0] <= now:
                _, fn = s.events.pop(0)
                fn()
                if s.id not in self._servers:
                    break

    def _server_get(self, req: _Req, server_id: str) -> _Server:
        s = self._servers.get(server_id)
        if s is None or not (req.ctx.is_admin or s.project_id == req.ctx.project_id):
            raise _not_found("Instance %s could not be found." % server_id)
        return s

    def _server_view(self, req: _Req, s: _Server, show: bool = False) -> dict:
        v = req.version
        admin = req.ctx.is_admin
        status = _status(s.vm_state, s.task_state)
        if v >= (2, 47):
            flavor: dict = {"vcpus": s.flavor["vcpus"], "ram": s.flavor["ram"],
                            "disk": s.flavor["disk"], "ephemeral": s.flavor["ephemeral"],
                            "swap": s.flavor["swap"], "original_name": s.flavor["name"],
                            "extra_specs": dict(s.flavor["extra_specs"])}
        else:
            flavor = {"id": s.flavor["flavorid"], "links": [
                {"rel": "bookmark", "href": "%s/flavors/%s" % (req.base_url, s.flavor["flavorid"])}]}
        image: Any = ""
        if s.image_ref:
            image = {"id": s.image_ref, "links": [
                {"rel": "bookmark", "href": "%s/images/%s" % (req.base_url, s.image_ref)}]}
        d: dict = {
            "id": s.id, "name": s.name, "status": status, "tenant_id": s.project_id,
            "user_id": s.user_id, "metadata": dict(s.metadata),
            "hostId": hashlib.sha224((s.project_id + s.host).encode()).hexdigest() if s.host else "",
            "image": image, "flavor": flavor, "created": _iso_z(s.created_at),
            "updated": _iso_z(s.updated_at), "addresses": copy.deepcopy(s.addresses),
            "accessIPv4": s.access_ipv4, "accessIPv6": s.access_ipv6,
            "links": self._links(req, "servers", s.id), "OS-DCF:diskConfig": s.disk_config,
            "OS-EXT-AZ:availability_zone": s.availability_zone or "",
            "config_drive": s.config_drive, "key_name": s.key_name,
            "OS-SRV-USG:launched_at": _iso_micro(s.launched_at),
            "OS-SRV-USG:terminated_at": None,
            "OS-EXT-STS:task_state": s.task_state, "OS-EXT-STS:vm_state": s.vm_state,
            "OS-EXT-STS:power_state": s.power_state,
            "os-extended-volumes:volumes_attached": [],
        }
        if s.security_groups:
            d["security_groups"] = list(s.security_groups)
        if status in ("ERROR", "DELETED") and s.fault:
            d["fault"] = dict(s.fault)
        if status in ("ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING"):
            d["progress"] = 0
        if admin:
            d["OS-EXT-SRV-ATTR:host"] = s.host
            d["OS-EXT-SRV-ATTR:hypervisor_hostname"] = s.host
            d["OS-EXT-SRV-ATTR:instance_name"] = "instance-%08x" % s.seq
            if v >= (2, 3):
                d.update({"OS-EXT-SRV-ATTR:reservation_id": s.reservation_id,
                          "OS-EXT-SRV-ATTR:launch_index": s.launch_index,
                          "OS-EXT-SRV-ATTR:hostname": s.hostname,
                          "OS-EXT-SRV-ATTR:kernel_id": "", "OS-EXT-SRV-ATTR:ramdisk_id": "",
                          "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
                          "OS-EXT-SRV-ATTR:user_data": s.user_data})
            if v >= (2, 16):
                d["host_status"] = "UP" if s.host else ""
        elif v >= (2, 90):
            d["OS-EXT-SRV-ATTR:hostname"] = s.hostname
        if v >= (2, 9):
            d["locked"] = False
        if v >= (2, 19):
            d["description"] = s.description
        if v >= (2, 26):
            d["tags"] = list(s.tags)
        if v >= (2, 63):
            d["trusted_image_certificates"] = None
        if v >= (2, 71) and show:
            d["server_groups"] = []
        if v >= (2, 73):
            d["locked_reason"] = None
        if v >= (2, 96):
            d["pinned_availability_zone"] = s.requested_az
        return d

    # ---- servers --------------------------------------------------------------------------

    def _server_create(self, req: _Req):
        body = self._body(req)
        _validate(_server_create_schema(req.version), body)
        ctx = req.ctx
        sd = body["server"]
        host = sd.get("host")
        node = sd.get("hypervisor_hostname")
        if host or node:
            self._admin(req, "compute:servers:create:requested_destination")
        image = sd.get("imageRef") or ""
        if not image and not sd.get("block_device_mapping") and not sd.get("block_device_mapping_v2"):
            raise _Fault(400, "Missing imageRef attribute")
        networks = sd.get("networks")
        if isinstance(networks, list):
            for n in networks:
                if n.get("port"):
                    continue
                if "uuid" not in n:
                    raise _Fault(400, "Bad network format: missing 'uuid'")
                if self.networks is not None and n["uuid"] not in self.networks:
                    raise _Fault(400, "Network %s could not be found." % n["uuid"])
        if host is not None and host not in self._hosts:
            raise _Fault(400, "Compute host %s could not be found." % host)
        if node is not None and node not in self._hosts:
            raise _Fault(400, "Compute host %s could not be found." % node)
        if host and node and host != node:
            raise _Fault(400, "Compute host %s could not be found." % node)
        az = sd.get("availability_zone")
        if az is not None:
            zones = {self._host_az(h) for h in self._hosts}
            if az not in zones:
                raise _Fault(400, "The requested availability zone is not available")
        flavor_id = urllib.parse.urlsplit(str(sd["flavorRef"])).path.split("/")[-1]
        f = self._flavors.get(flavor_id)
        if f is None or not self._flavor_visible(ctx, f):
            raise _Fault(400, "Invalid flavorRef provided.")
        if f.disk == 0 and image and not ctx.is_admin:
            raise _Fault(403, "Only volume-backed servers are allowed for flavors with zero disk.")
        if image and self.images is not None and image not in self.images:
            raise _Fault(400, "Can not find requested image")
        key_name = sd.get("key_name")
        if key_name is not None and self.keypairs is not None and key_name not in self.keypairs:
            raise _Fault(400, "Invalid key_name provided.")
        min_count = int(sd.get("min_count", 1))
        max_count = int(sd.get("max_count", min_count))
        if min_count > max_count:
            raise _Fault(400, "min_count must be <= max_count")
        created = []
        for i in range(max_count):
            name = sd["name"] if max_count == 1 else "%s-%d" % (sd["name"], i + 1)
            s = self._new_server(name, ctx.project_id, ctx.user_id, f, image, networks or "auto",
                                 sd.get("metadata") or {}, key_name)
            s.description = sd.get("description")
            s.tags = list(sd.get("tags") or [])
            s.requested_az = az
            s.disk_config = sd.get("OS-DCF:diskConfig", "MANUAL")
            s.access_ipv4 = sd.get("accessIPv4", "")
            s.access_ipv6 = sd.get("accessIPv6", "")
            s.config_drive = "True" if _bool_from(sd.get("config_drive", False)) else ""
            s.user_data = sd.get("user_data")
            s.launch_index = i
            if sd.get("security_groups"):
                s.security_groups = [{"name": g["name"]} for g in sd["security_groups"]]
            if created:
                s.reservation_id = created[0].reservation_id
            if sd.get("hostname"):
                s.hostname = sd["hostname"]
            target = host or node
            self._schedule_build(s, [target] if target else list(self._hosts))
            created.append(s)
        if _bool_from(sd.get("return_reservation_id", False)):
            return 202, {"reservation_id": created[0].reservation_id}
        s = created[0]
        out = {"id": s.id, "links": self._links(req, "servers", s.id),
               "OS-DCF:diskConfig": s.disk_config,
               "adminPass": sd.get("adminPass") or secrets.token_urlsafe(9)}
        if s.security_groups:
            out["security_groups"] = list(s.security_groups)
        return 202, {"server": out}, {"Location": "%s/v2.1/servers/%s" % (req.base_url, s.id)}

    def _server_show(self, req: _Req):
        return 200, {"server": self._server_view(req, self._server_get(req, req.params["id"]),
                                                 show=True)}

    def _server_list(self, req: _Req) -> list:
        ctx = req.ctx
        v = req.version
        known = set(_SERVER_QUERY_KEYS)
        if v >= (2, 26):
            known |= _SERVER_QUERY_KEYS_226
        if v >= (2, 66):
            known.add("changes-before")
        if v >= (2, 73):
            known.add("locked")
        if v >= (2, 75):
            self._query_strict(req, known)
        q = {k: vals for k, vals in req.query.items() if k in known or k.startswith("_")}
        for k in q:
            if k in _JOINED_TABLE_FILTERS or k.startswith("_"):
                raise _Fault(400, "Invalid filter field: %s." % k)
        for sk in q.get("sort_key", []):
            if sk not in _SORT_KEYS and v >= (2, 75):
                raise _Fault(400, "Invalid input for query parameters sort_key. Value: %s. '%s' "
                                  "is not one of %s" % (sk, sk, sorted(_SORT_KEYS)))
        if not ctx.is_admin:
            q = {k: vals for k, vals in q.items()
                 if k in _NON_ADMIN_FILTERS or k in ("limit", "marker", "sort_key", "sort_dir")}
        # all_tenants
        all_tenants = False
        if "all_tenants" in q:
            raw = q["all_tenants"][-1]
            if raw == "":
                all_tenants = True
            else:
                low = raw.strip().lower()
                if low in _TRUE_STRINGS:
                    all_tenants = True
                elif low in {"false", "0", "off", "no", "f", "n"}:
                    all_tenants = False
                else:
                    raise _Fault(400, "Invalid input received: Unrecognized value '%s', acceptable "
                                      "values are: '0', '1', 'f', 'false', 'n', 'no', 'off', 'on', "
                                      "'t', 'true', 'y', 'yes'" % raw)
        if all_tenants and not ctx.is_admin:
            rule = "detail" if req.route.endswith("/detail") else "index"
            raise _forbidden("os_compute_api:servers:%s:get_all_tenants" % rule)
        servers = list(self._servers.values())
        if all_tenants:
            projects = set(q.get("project_id", [])) | set(q.get("tenant_id", []))
            if projects:
                servers = [s for s in servers if s.project_id in projects]
        else:
            servers = [s for s in servers if s.project_id == ctx.project_id]
        if "status" in q:
            wanted = {x.upper() for x in q["status"]}
            vm_states, task_states = set(), set()
            for vm, tmap in _STATE_MAP.items():
                for ts, st in tmap.items():
                    if st in wanted:
                        vm_states.add(vm)
                        task_states.add(ts)
            if not vm_states:
                if v >= (2, 38):
                    raise _Fault(400, "Invalid status value")
                return []
            servers = [s for s in servers if s.vm_state in vm_states and
                       ("default" in task_states or s.task_state in task_states)]
        if "host" in q:
            servers = [s for s in servers if s.host in q["host"]]
        if "node" in q:
            servers = [s for s in servers if s.host is not None and
                       any(re.search(p, s.host) for p in q["node"])]
        if "flavor" in q:
            fid = q["flavor"][-1]
            f = self._flavors.get(fid)
            if f is None:
                return []
            servers = [s for s in servers if s.flavor["internal_id"] == f.internal_id]
        for key in ("name", "display_name"):
            if key in q:
                pattern = q[key][-1]
                try:
                    rx = re.compile(pattern)
                    servers = [s for s in servers if rx.search(s.name)]
                except re.error:
                    servers = [s for s in servers if pattern in s.name]
        if "uuid" in q:
            servers = [s for s in servers if s.id in q["uuid"]]
        if "user_id" in q:
            servers = [s for s in servers if s.user_id in q["user_id"]]
        if "vm_state" in q:
            servers = [s for s in servers if s.vm_state in q["vm_state"]]
        if "task_state" in q:
            servers = [s for s in servers if (s.task_state or "") in q["task_state"]]
        if "image" in q:
            servers = [s for s in servers if s.image_ref in q["image"]]
        if "availability_zone" in q:
            servers = [s for s in servers if (s.availability_zone or "")
                       in q["availability_zone"]]
        servers.sort(key=lambda s: (s.created_at, s.seq), reverse=True)
        return self._paginate(req, servers, lambda s: s.id)

    def _server_index(self, req: _Req):
        servers = self._server_list(req)
        out: dict = {"servers": [{"id": s.id, "name": s.name,
                                  "links": self._links(req, "servers", s.id)} for s in servers]}
        links = self._next_links(req, "servers", servers, lambda s: s.id)
        if links:
            out["servers_links"] = links
        return 200, out

    def _server_detail(self, req: _Req):
        servers = self._server_list(req)
        out: dict = {"servers": [self._server_view(req, s) for s in servers]}
        links = self._next_links(req, "servers/detail", servers, lambda s: s.id)
        if links:
            out["servers_links"] = links
        return 200, out

    def _server_delete(self, req: _Req):
        s = self._server_get(req, req.params["id"])
        if s.task_state == "deleting":
            return 204, None
        if s.host is None and s.vm_state in ("shelved_offloaded", "error", "building"):
            # No compute host owns it: Nova deletes it locally, at once.
            del self._servers[s.id]
            return 204, None
        s.events.clear()
        s.task_state = "deleting"
        s.updated_at = _now()

        def gone():
            self._servers.pop(s.id, None)

        s.events = [(time.monotonic() + self.delete_delay, gone)]
        return 204, None

    def _invalid_state(self, s: _Server, action: str, vm_states: Iterable[str],
                       task_states: Iterable[Optional[str]] = (None,)) -> None:
        if s.vm_state not in vm_states:
            raise _Fault(409, "Cannot '%s' instance %s while it is in vm_state %s"
                         % (action, s.id, s.vm_state))
        if s.task_state not in task_states:
            raise _Fault(409, "Cannot '%s' instance %s while it is in task_state %s"
                         % (action, s.id, s.task_state))

    def _server_action(self, req: _Req):
        action, body = self._action_name(req)
        handlers = {"shelve": self._act_shelve, "unshelve": self._act_unshelve,
                    "os-stop": self._act_stop, "os-start": self._act_start}
        if action not in handlers:
            raise _Fault(400, "There is no such action: %s" % action)
        return handlers[action](req, body)

    def _act_shelve(self, req: _Req, body: dict):
        s = self._server_get(req, req.params["id"])
        self._invalid_state(s, "shelve", ("active", "stopped", "paused", "suspended"))
        s.task_state = "shelving"
        s.updated_at = _now()
        now = time.monotonic()

        def offloading():
            s.vm_state, s.task_state, s.power_state = "shelved", "shelving_offloading", 4
            s.updated_at = _now()

        def offloaded():
            s.vm_state, s.task_state, s.host = "shelved_offloaded", None, None
            s.updated_at = _now()

        s.events = [(now + self.shelve_delay / 2, offloading), (now + self.shelve_delay, offloaded)]
        return 202, None

    def _act_unshelve(self, req: _Req, body: dict):
        if req.version >= (2, 77):
            _validate(_UNSHELVE_277, body)
        s = self._server_get(req, req.params["id"])
        self._invalid_state(s, "unshelve", ("shelved", "shelved_offloaded"))
        if isinstance(body.get("unshelve"), dict):
            s.requested_az = body["unshelve"]["availability_zone"]
        s.task_state = "unshelving"
        s.updated_at = _now()
        if s.vm_state == "shelved" and s.host:
            s.events = [(time.monotonic() + self.build_delay, lambda: self._make_active(s))]
        else:
            self._schedule_build(s, list(self._hosts), unshelve=True)
        return 202, None

    def _act_stop(self, req: _Req, body: dict):
        s = self._server_get(req, req.params["id"])
        self._invalid_state(s, "stop", ("active", "error"))
        s.task_state = "powering-off"

        def stopped():
            s.vm_state, s.task_state, s.power_state = "stopped", None, 4
            s.updated_at = _now()

        s.events = [(time.monotonic() + self.build_delay / 2, stopped)]
        return 202, None

    def _act_start(self, req: _Req, body: dict):
        s = self._server_get(req, req.params["id"])
        self._invalid_state(s, "start", ("stopped",))
        s.task_state = "powering-on"
        s.events = [(time.monotonic() + self.build_delay / 2, lambda: self._make_active(s))]
        return 202, None
