#!/usr/bin/env python3
"""Generate Berth's machine-readable JSON-RPC contract from one Python source of truth.

Outputs (all under schemas/):
  openrpc.json                          OpenRPC 1.3.2 document that rpc.discover returns
  components/<Name>.json                shared shapes (JSON Schema draft 2020-12)
  methods/<method>.params.json          params object of each method (draft 2020-12)
  methods/<method>.result.json          result of each method (draft 2020-12)
  notifications/event.json              the server-to-client `event` notification

Everything is built from COMPONENTS and METHODS below. Schemas are written with
OpenRPC-style references (`#/components/schemas/Name`); for the standalone files they are
rewritten to relative file references (`../components/Name.json`), resolved against each
file's `$id`.

Usage:
  python3 scripts/gen_schemas.py          write the files
  python3 scripts/gen_schemas.py --check  exit 1 if any file differs from what would be written

After changing this file, run it, then scripts/gen_contract.py, then scripts/check_schemas.py.
"""

from __future__ import annotations

import copy
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"

DIALECT = "https://json-schema.org/draft/2020-12/schema"
# Identifiers only (RFC 2606 reserved domain): nothing is fetched from here.
ID_BASE = "https://berth.example/schemas/"
OPENRPC_VERSION = "1.3.2"
API_VERSION = "1.0.0"


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict) -> dict:
    return {"oneOf": [schema, {"type": "null"}]}


def obj(properties: dict, required: list[str] | None = None, strict: bool = False, **extra) -> dict:
    """An object schema. strict=True forbids unknown members (used for everything a client sends)."""
    out: dict = {"type": "object", "properties": properties}
    if required:
        out["required"] = required
    if strict:
        out["additionalProperties"] = False  # results leave it out: extra members are allowed
    out.update(extra)
    return out


def array(items: dict, **extra) -> dict:
    out = {"type": "array", "items": items}
    out.update(extra)
    return out


def integer(minimum: int | None = None, maximum: int | None = None, **extra) -> dict:
    out: dict = {"type": "integer"}
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    out.update(extra)
    return out


def string(**extra) -> dict:
    out = {"type": "string"}
    out.update(extra)
    return out


def enum(*values, **extra) -> dict:
    out: dict = {"type": "string", "enum": list(values)}
    out.update(extra)
    return out


def desc(schema: dict, text: str) -> dict:
    s = dict(schema)
    s["description"] = text
    return s


COUNT = integer(1)            # counts: at least 1
DURATION = integer(0)         # durations in seconds: at least 0
MB = integer(1)
GB = integer(0)
NONEMPTY = string(minLength=1)
RESOURCE_CLASSES = ["host_hours", "gpu_slice_hours", "vcpu_hours"]
LEASE_STATUSES = ["pending", "active", "ended", "deleted", "error"]
PREEMPTIBLE_STATUSES = ["pending", "running", "preempting", "preempted", "ended"]
EVENT_TYPES = [
    "lease.created", "lease.updated", "lease.started", "lease.before_end", "lease.ended", "lease.deleted",
    "preemption.scheduled", "preemption.executed",
    "preemptible.created", "preemptible.ended",
    "host.created", "host.updated", "host.deleted", "host.down", "host.up",
    "action.failed",
]
ACTION_KINDS = ["lease.start", "lease.update", "lease.end", "preemptible.preempt", "preemptible.start",
                "preemptible.end", "hook.preemption"]
ACTION_STATUSES = ["pending", "running", "done", "failed"]

# Regular expressions use only [0-9]-style classes so they mean the same in ECMA-262, Python and ICU.
TS_UTC_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z$"
TS_INPUT_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"
)
UUID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
HOST_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
EVENT_TYPE_PATTERN = r"^(\*|[a-z_]+\.\*|[a-z_]+\.[a-z_]+)$"


# --------------------------------------------------------------------------------------------
# ERRORS: JSON-RPC error codes and data.reason values (the prose contract's "Errors")
# --------------------------------------------------------------------------------------------

# key -> (code, reason, message, description)
ERRORS = {
    "ParseError": (-32700, "parse_error", "Parse error", "The line is not valid JSON. The connection stays usable."),
    "InvalidRequest": (-32600, "invalid_request", "Invalid Request",
                       "Not a valid JSON-RPC 2.0 request (also: empty batch, or a line over the size limit, "
                       "after which the connection is closed; that one has data.reason request_too_large)."),
    "MethodNotFound": (-32601, "method_not_found", "Method not found",
                       "Unknown method (clock.* outside manual-clock mode too)."),
    "InvalidParams": (-32602, "invalid_params", "Invalid params",
                      "Params do not match the method's schema; data.errors lists {path, message}."),
    "InternalError": (-32603, "internal_error", "Internal error", "Unexpected server failure."),
    "NotFound": (-32001, "not_found", "Not found", "Unknown lease, host, preemptible or credit account."),
    "NoCapacity": (-32002, "no_capacity", "No capacity",
                   "The request cannot be placed; data.earliest_start when a later start would fit."),
    "InsufficientCredits": (-32003, "insufficient_credits", "Insufficient credits",
                            "Credit enforcement is on and the balance is short; data.resource_class, "
                            "data.required, data.available."),
    "Forbidden": (-32004, "forbidden", "Forbidden", "The caller's role may not do this."),
    "Conflict": (-32005, "conflict", "Conflict",
                 "Invalid state for the operation (e.g. update an ended lease), duplicate host name, "
                 "idempotency key reused with different params, lost race."),
    "UpstreamError": (-32006, "upstream_error", "Upstream error", "OpenStack refused or failed, after retries."),
    "Unavailable": (-32007, "unavailable", "Unavailable", "Daemon shutting down or storage read-only."),
    "PolicyViolation": (-32008, "policy_violation", "Policy violation",
                        "A configured policy forbids the request (e.g. lease longer than the maximum); data.rule."),
}
# Codes that have a more specific reason besides their own: code -> [(reason, description)].
EXTRA_REASONS = {
    -32600: [("request_too_large", "The request line is longer than the configured limit (data.limit, in bytes); "
                                   "the connection is closed after this reply.")],
}
STANDARD_ERRORS = ["ParseError", "InvalidRequest", "MethodNotFound", "InvalidParams", "InternalError"]
APP_ERRORS = [k for k in ERRORS if k not in STANDARD_ERRORS]


def error_object(key: str) -> dict:
    code, reason, message, _ = ERRORS[key]
    return {"code": code, "message": message, "data": {"reason": reason}}


# --------------------------------------------------------------------------------------------
# COMPONENTS: shared shapes. Names are used verbatim as components.schemas keys and file names.
# --------------------------------------------------------------------------------------------

COMPONENTS: dict[str, dict] = {}


def component(name: str, schema: dict) -> None:
    assert name not in COMPONENTS, name
    COMPONENTS[name] = schema


# --- scalars ---------------------------------------------------------------------------------

component("TimestampUTC", string(
    format="date-time", pattern=TS_UTC_PATTERN,
    description="RFC 3339 timestamp as the server returns it: UTC with `Z`, second precision.",
    examples=["2030-01-01T10:00:00Z"]))
component("TimestampInput", string(
    format="date-time", pattern=TS_INPUT_PATTERN,
    description="RFC 3339 timestamp as a client may send it: `Z` or a numeric offset; normalised to UTC. "
                "A fractional part is accepted and truncated to the second.",
    examples=["2030-01-01T10:00:00Z", "2030-01-01T12:00:00+02:00"]))
component("StartTime", {
    "description": "A start time: an RFC 3339 timestamp or the string `now` (the server's current time).",
    "oneOf": [ref("TimestampInput"), {"const": "now"}]})
component("Uuid", string(
    pattern=UUID_PATTERN, description="Lowercase UUID generated by the server.",
    examples=["6f1c1c9e-0d5a-4c47-9b0e-2a7f4f3b8c11"]))
component("Id", string(
    minLength=1, maxLength=64,
    description="An id sent by a client (a server-generated lowercase UUID). An id that names nothing, "
                "including a malformed one, is answered with -32001 not_found."))
component("HostName", string(
    pattern=HOST_NAME_PATTERN, description="Host name: the host's identity in every method.",
    examples=["node-001"]))
component("ProjectId", string(minLength=1, maxLength=255, description="Project (tenant) identifier."))
component("IdempotencyKey", string(
    minLength=1, maxLength=255,
    description="Repeating a mutating call with the same key and the same params returns the first "
                "result instead of acting twice; the same key with different params is -32005 conflict."))
component("Cursor", string(minLength=1, description="Opaque paging cursor returned as next_cursor."))
component("ResourceClass", enum(
    *RESOURCE_CLASSES,
    description="Credit resource class. gpu_slice_hours: one eighth of a GPU's memory for one hour "
                "(an A100-40GB 1g.5gb slice for an hour costs 1, a whole A100 for an hour costs 8)."))
component("CreditAmounts", {
    "type": "object",
    "description": "Amounts of credit per resource class (absent classes are zero).",
    "propertyNames": ref("ResourceClass"),
    "additionalProperties": {"type": "number", "minimum": 0}})

# --- host properties and filters ------------------------------------------------------------

component("PropertyValue", {"type": ["string", "number", "boolean"],
                            "description": "A host property value."})
component("HostProperties", {
    "type": "object",
    "description": "Free-form host properties (e.g. rack, interconnect).",
    "propertyNames": {"minLength": 1},
    "additionalProperties": ref("PropertyValue"),
    "examples": [{"rack": "r1", "ib": True}]})
component("FieldRef", string(
    pattern=r"^\$.+$",
    description="A host field or property named with a leading `$` (`$memory_mb`, `$rack`)."))
component("PropertyExpression", {
    "description": "Blazar-style expression over host fields and properties. "
                   "`[\"and\"|\"or\", expr, ...]`, `[\"not\", expr]`, `[op, \"$field\", value]` with op one of "
                   "`==` `!=` `<` `<=` `>` `>=` (numbers compare as numbers), `[\"in\", \"$field\", [values]]`.",
    "oneOf": [
        {"title": "and/or", "type": "array", "minItems": 2,
         "prefixItems": [{"enum": ["and", "or"]}], "items": ref("PropertyExpression")},
        {"title": "not", "type": "array", "minItems": 2, "maxItems": 2,
         "prefixItems": [{"const": "not"}, ref("PropertyExpression")]},
        {"title": "comparison", "type": "array", "minItems": 3, "maxItems": 3,
         "prefixItems": [{"enum": ["==", "!=", "<", "<=", ">", ">="]}, ref("FieldRef"), ref("PropertyValue")]},
        {"title": "in", "type": "array", "minItems": 3, "maxItems": 3,
         "prefixItems": [{"const": "in"}, ref("FieldRef"), {"type": "array", "items": ref("PropertyValue")}]},
    ],
    "examples": [["and", [">=", "$memory_mb", 4096], ["==", "$ib", "true"]]]})
component("PropertyFilter", {
    "description": "Host selection: an object of equalities (`{\"rack\": \"r1\"}`) or a PropertyExpression.",
    "oneOf": [ref("HostProperties"), ref("PropertyExpression")]})

# --- hosts ---------------------------------------------------------------------------------

component("HostState", enum("up", "down", "maintenance", description="Operational state of a host."))
component("GpuInput", obj({"model": desc(NONEMPTY, "GPU model, e.g. `A100-40GB`.")}, ["model"], strict=True,
                          description="One physical GPU of a host, as sent by an operator."))
component("Gpu", obj({"model": NONEMPTY}, ["model"], description="One physical GPU of a host; its index is "
                                                                 "its position in `gpus`."))
component("Host", obj({
    "id": desc(integer(1), "A small integer given at creation and never reused (Blazar's clients address hosts by "
                           "it; Berth's methods use `name`)."),
    "name": ref("HostName"),
    "vcpus": COUNT,
    "memory_mb": MB,
    "disk_gb": GB,
    "gpus": array(ref("Gpu")),
    "properties": ref("HostProperties"),
    "state": ref("HostState"),
    "reservable": {"type": "boolean"},
    "created_at": ref("TimestampUTC"),
    "updated_at": ref("TimestampUTC"),
}, ["id", "name", "vcpus", "memory_mb", "disk_gb", "gpus", "properties", "state", "reservable",
    "created_at", "updated_at"], description="A physical host Berth can reserve."))

# --- reservation requests --------------------------------------------------------------------

component("Affinity", {"enum": ["same_host", "different_host", None],
                       "description": "Placement of a reservation's instances relative to each other."})
component("ReservationRequestHost", obj({
    "kind": {"const": "host"},
    "count": desc(COUNT, "Exactly this many whole hosts."),
    "min": desc(COUNT, "At least this many whole hosts (with max)."),
    "max": desc(COUNT, "At most this many whole hosts (with min); max >= min."),
    "properties": ref("PropertyFilter"),
}, ["kind"], strict=True,
    description="Whole hosts: either `count`, or `min` and `max`.",
    oneOf=[
        {"required": ["count"], "not": {"anyOf": [{"required": ["min"]}, {"required": ["max"]}]}},
        {"required": ["min", "max"], "not": {"required": ["count"]}},
    ]))
component("ReservationRequestGpu", obj({
    "kind": {"const": "gpu"},
    "profile": desc(NONEMPTY, "MIG profile, e.g. `1g.5gb`."),
    "count": desc(COUNT, "Number of slices of that profile."),
    "gpu_model": desc(NONEMPTY, "Only GPUs of this model, e.g. `A100-40GB`."),
    "properties": ref("PropertyFilter"),
}, ["kind", "profile", "count"], strict=True, description="GPU slices (MIG instances)."))
component("ReservationRequestInstance", obj({
    "kind": {"const": "instance"},
    "vcpus": COUNT,
    "memory_mb": MB,
    "disk_gb": GB,
    "flavor_id": desc(string(minLength=1, maxLength=255),
                      "A cloud flavor to copy the size (and MIG slice, from its `resources:<class>` extra spec) from, "
                      "instead of vcpus/memory_mb/disk_gb/gpu_profile; read through the adapter (Nova, or the "
                      "simulator's catalog). The reservation then shows it as `source_flavor`."),
    "count": desc(COUNT, "Number of instance slots."),
    "gpu_profile": desc(nullable(NONEMPTY), "MIG profile attached to each instance, if any."),
    "affinity": ref("Affinity"),
    "properties": ref("PropertyFilter"),
}, ["kind", "count"], strict=True, description="Instance slots of a given size, or of a cloud flavor's size.",
    oneOf=[
        {"title": "size", "required": ["vcpus", "memory_mb", "disk_gb"], "not": {"required": ["flavor_id"]}},
        {"title": "flavor", "required": ["flavor_id"],
         "not": {"anyOf": [{"required": [k]} for k in ("vcpus", "memory_mb", "disk_gb", "gpu_profile")]}},
    ]))
component("ReservationRequest", {
    "description": "One reservation in a lease request, discriminated by `kind`.",
    "oneOf": [ref("ReservationRequestHost"), ref("ReservationRequestGpu"), ref("ReservationRequestInstance")]})


def _with_reservation_id(name: str) -> dict:
    """A ReservationRequest variant that may also name an existing reservation by `id` (lease.update)."""
    schema = copy.deepcopy(COMPONENTS[name])
    schema["properties"] = {
        "id": desc(ref("Id"), "An existing reservation of the lease (its allocations are kept where they still "
                              "fit); without it the entry is a new reservation."),
        **schema["properties"]}
    schema["description"] = schema["description"] + " May name an existing reservation by `id`."
    return schema


for _kind in ("Host", "Gpu", "Instance"):
    component(f"ReservationUpdate{_kind}", _with_reservation_id(f"ReservationRequest{_kind}"))
component("ReservationUpdate", {
    "description": "One entry of lease.update's `reservations`: a reservation request, optionally naming an "
                   "existing reservation of the lease by `id`.",
    "oneOf": [ref("ReservationUpdateHost"), ref("ReservationUpdateGpu"), ref("ReservationUpdateInstance")]})

# --- allocations and reservations (results) ---------------------------------------------------

component("HostAllocation", obj({"host": ref("HostName")}, ["host"], description="A whole host."))
component("GpuAllocation", obj({
    "host": ref("HostName"),
    "gpu": desc(integer(0), "Index of the GPU in the host's `gpus`."),
    "profile": NONEMPTY,
    "slot": desc(integer(0, 7), "First memory slice the MIG instance occupies (its start slot: one of the "
                                "profile's allowed starts on the GPU's model; 0-7 on an A100/H100, 0-3 on an A30)."),
}, ["host", "gpu", "profile", "slot"], description="A GPU slice."))
component("InstanceAllocation", obj({
    "host": ref("HostName"),
    "slots": desc(COUNT, "Number of the reservation's instances placed on this host."),
}, ["host", "slots"], description="Instance slots on one host."))
component("Allocation", {
    "description": "Where a reservation was placed; the shape follows the reservation's kind.",
    "anyOf": [ref("HostAllocation"), ref("GpuAllocation"), ref("InstanceAllocation")]})
component("ReservationStatus", enum(*LEASE_STATUSES))

_RESERVATION_COMMON = {
    "id": ref("Uuid"),
    "status": ref("ReservationStatus"),
}
component("ReservationHost", obj({
    "kind": {"const": "host"},
    **_RESERVATION_COMMON,
    "count": COUNT, "min": COUNT, "max": COUNT,
    "properties": ref("PropertyFilter"),
    "allocations": array(ref("HostAllocation")),
}, ["kind", "id", "status", "allocations"], description="A host reservation: the request plus id, status, "
                                                        "allocations."))
component("ReservationGpu", obj({
    "kind": {"const": "gpu"},
    **_RESERVATION_COMMON,
    "profile": NONEMPTY, "count": COUNT, "gpu_model": NONEMPTY,
    "properties": ref("PropertyFilter"),
    "allocations": array(ref("GpuAllocation")),
    "flavor_id": desc(string(), "The reservation's private Nova flavor (openstack adapter): boot with it."),
}, ["kind", "id", "status", "profile", "count", "allocations", "flavor_id"], description="A GPU-slice reservation."))
component("ReservationInstance", obj({
    "kind": {"const": "instance"},
    **_RESERVATION_COMMON,
    "vcpus": COUNT, "memory_mb": MB, "disk_gb": GB, "count": COUNT,
    "gpu_profile": nullable(NONEMPTY),
    "affinity": ref("Affinity"),
    "properties": ref("PropertyFilter"),
    "allocations": desc(array({"anyOf": [ref("InstanceAllocation"), ref("GpuAllocation")]}),
                        "Instance slots per host; with a gpu_profile, also one GPU slice per instance on the same host."),
    "source_flavor": desc({"type": "object"}, "The cloud flavor a `flavor_id` request copied, as the cloud showed "
                                              "it (Nova's `id`, `name`, `vcpus`, `ram`, `disk`, `extra_specs`)."),
    "flavor_id": desc(string(), "The reservation's private Nova flavor (openstack adapter): boot with it."),
}, ["kind", "id", "status", "vcpus", "memory_mb", "disk_gb", "count", "allocations", "flavor_id"],
    description="An instance-slot reservation."))
component("Reservation", {
    "description": "A reservation inside a lease.",
    "oneOf": [ref("ReservationHost"), ref("ReservationGpu"), ref("ReservationInstance")]})

# --- leases ---------------------------------------------------------------------------------

component("LeaseStatus", enum(*LEASE_STATUSES, description="pending -> active -> ended; deleted; error."))
component("Lease", obj({
    "id": ref("Uuid"),
    "name": NONEMPTY,
    "project_id": ref("ProjectId"),
    "user_id": nullable(string()),
    "start": ref("TimestampUTC"),
    "end": ref("TimestampUTC"),
    "before_end_s": desc(nullable(DURATION), "Seconds before `end` at which lease.before_end fires."),
    "status": ref("LeaseStatus"),
    "reservations": array(ref("Reservation"), minItems=1),
    "cost": desc(ref("CreditAmounts"), "Credits the lease costs (or would cost, with dry_run)."),
    "degraded": desc({"type": "boolean"}, "True when healing could not fully restore the lease's capacity."),
    "degraded_reason": nullable(string()),
    "created_at": ref("TimestampUTC"),
    "updated_at": ref("TimestampUTC"),
}, ["id", "name", "project_id", "user_id", "start", "end", "before_end_s", "status", "reservations", "cost",
    "degraded", "created_at", "updated_at"], description="A lease: a time window holding reservations."))

# --- availability and calendar ---------------------------------------------------------------

component("AvailabilityWindow", obj({"start": ref("TimestampUTC"), "end": ref("TimestampUTC")},
                                    ["start", "end"], description="A window in which the whole request fits."))
component("CalendarAllocation", obj({
    "lease_id": nullable(ref("Uuid")),
    "reservation_id": nullable(ref("Uuid")),
    "lease_name": desc(nullable(NONEMPTY), "The lease's name (null for a preemptible)."),
    "project_id": ref("ProjectId"),
    "kind": enum("host", "gpu", "instance", "preemptible"),
    "start": ref("TimestampUTC"),
    "end": desc(nullable(ref("TimestampUTC")), "null for a preemptible with no planned end."),
    "status": enum(*dict.fromkeys(LEASE_STATUSES + PREEMPTIBLE_STATUSES)),
    "gpu": integer(0),
    "profile": NONEMPTY,
    "slot": desc(integer(0, 7), "For kind gpu: the MIG instance's start slot."),
    "size": desc(integer(1, 8), "For kind gpu: memory slices the MIG instance spans, so it occupies "
                                "[slot, slot + size) of its GPU (1g.10gb is 2 on an A100-40GB, 1 on an A100-80GB)."),
    "slots": desc(COUNT, "For kind instance: the reservation's instances on this host."),
    "preemptible_id": ref("Uuid"),
}, ["lease_id", "reservation_id", "project_id", "kind", "start", "end", "status"],
    description="One allocation on a host in a calendar window. Lease allocations carry lease_id and "
                "reservation_id; preemptibles carry preemptible_id with null lease_id and reservation_id. "
                "GPU slices carry gpu, profile, slot and size; instance slots carry slots.",
    allOf=[{"if": {"properties": {"kind": {"const": "gpu"}}}, "then": {"required": ["gpu", "profile", "slot", "size"]}},
           {"if": {"properties": {"kind": {"const": "instance"}}}, "then": {"required": ["slots"]}}]))
component("CalendarHost", obj({
    "name": ref("HostName"),
    "state": ref("HostState"),
    "allocations": array(ref("CalendarAllocation")),
}, ["name", "state", "allocations"]))

# --- preemptibles ----------------------------------------------------------------------------

component("PreemptibleStatus", enum(*PREEMPTIBLE_STATUSES))
component("Preemptible", obj({
    "id": ref("Uuid"),
    "host": ref("HostName"),
    "guaranteed_until": desc(ref("TimestampUTC"), "Never preempted before this time."),
    "status": ref("PreemptibleStatus"),
    "project_id": ref("ProjectId"),
    "vcpus": COUNT,
    "memory_mb": MB,
    "disk_gb": GB,
    "gpu_profile": nullable(NONEMPTY),
    "min_lifetime_s": DURATION,
    "slurm_node": nullable(NONEMPTY),
    "created_at": ref("TimestampUTC"),
    "preempt_at": desc(nullable(ref("TimestampUTC")), "When it is scheduled to be preempted, if it is."),
    "needed_at": desc(nullable(ref("TimestampUTC")),
                      "When the reservation that preempts it takes the capacity (preempt_at is notice_s earlier, "
                      "never before guaranteed_until)."),
    "needed_by_lease_id": desc(nullable(ref("Uuid")), "The lease whose reservation needs its capacity."),
    "ended_at": desc(nullable(ref("TimestampUTC")), "When it stopped holding capacity (preempted or deleted)."),
    "gpu": desc(integer(0), "With gpu_profile: the GPU index on the host holding its slice."),
    "slot": desc(integer(0, 7), "With gpu_profile: the MIG instance's start slot."),
    "updated_at": ref("TimestampUTC"),
}, ["id", "host", "guaranteed_until", "status", "project_id", "vcpus", "memory_mb", "disk_gb", "gpu_profile",
    "min_lifetime_s", "created_at", "preempt_at", "needed_at", "needed_by_lease_id", "ended_at", "updated_at"],
    description="A preemptible instance backfilling free capacity. Status: running → preempting (a reservation "
                "needs its capacity; preempt_at set) → preempted; or ended (deleted)."))

# --- credits ---------------------------------------------------------------------------------

component("LedgerEntry", obj({
    "id": ref("Uuid"),
    "seq": integer(1),
    "project_id": ref("ProjectId"),
    "kind": enum("grant", "charge", "refund", "adjustment"),
    "resource_class": ref("ResourceClass"),
    "amount": {"type": "number"},
    "lease_id": nullable(ref("Uuid")),
    "valid_from": nullable(ref("TimestampUTC")),
    "valid_to": nullable(ref("TimestampUTC")),
    "note": nullable(string()),
    "at": ref("TimestampUTC"),
}, ["id", "seq", "project_id", "kind", "resource_class", "amount", "lease_id", "valid_from", "valid_to", "note",
    "at"], description="An immutable credit ledger entry."))
component("CreditBalance", obj({
    "granted": {"type": "number"},
    "spent": {"type": "number"},
    "available": {"type": "number"},
    "expired": {"type": "number"},
}, ["granted", "spent", "available", "expired"]))

# --- events and actions ----------------------------------------------------------------------

component("EventType", enum(*EVENT_TYPES))
component("EventTypePattern", string(
    pattern=EVENT_TYPE_PATTERN,
    description="An event type (`lease.created`), a family (`lease.*`) or everything (`*`)."))
component("Event", obj({
    "seq": desc(integer(1), "Position in the durable, gap-free event order."),
    "type": ref("EventType"),
    "at": ref("TimestampUTC"),
    "lease_id": ref("Uuid"),
    "project_id": ref("ProjectId"),
    "host": ref("HostName"),
    "preemptible_id": ref("Uuid"),
    "action_id": ref("Uuid"),
    "data": {"type": "object"},
}, ["seq", "type", "at"], description="A durable lifecycle event."))
component("EventNotification", obj({
    "jsonrpc": {"const": "2.0"},
    "method": {"const": "event"},
    "params": ref("Event"),
}, ["jsonrpc", "method", "params"], strict=True,
    description="Server-to-client JSON-RPC notification (no id) sent on a connection after events.subscribe."))
component("ActionKind", enum(*ACTION_KINDS))
component("ActionStatus", enum(*ACTION_STATUSES))
component("Action", obj({
    "id": ref("Uuid"),
    "kind": ref("ActionKind"),
    "target": desc(string(), "What the action acts on (lease, reservation or preemptible id, server)."),
    "lease_id": nullable(ref("Uuid")),
    "status": ref("ActionStatus"),
    "attempts": integer(0),
    "last_error": nullable(string()),
    "created_at": ref("TimestampUTC"),
    "updated_at": ref("TimestampUTC"),
    "due_at": ref("TimestampUTC"),
    "payload": desc({"type": "object"}, "What the adapter needs to act (lease_id, project_id, name, hosts (each "
                                        "once), start, end and allocations for lease actions: every allocation with "
                                        "its reservation_id and kind, e.g. {reservation_id, kind: gpu, host, gpu, "
                                        "profile, slot} or {reservation_id, kind: instance, host, slots}; "
                                        "preemptible_id, project_id, host, vcpus, memory_mb, disk_gb, gpu_profile, "
                                        "gpu, slot, server, slurm_node for preemptible actions, plus mode "
                                        "(delete|shelve) for preemptible.preempt; event, preempt_at, needed_at, "
                                        "needed_until, lease_id and event_json for hook.preemption, a run of the "
                                        "configured preemption hook), frozen when the action was enqueued."),
}, ["id", "kind", "target", "lease_id", "status", "attempts", "last_error", "created_at", "updated_at", "due_at",
    "payload"],
    description="An outbound action to the cloud, delivered at least once through the outbox."))

# --- errors ----------------------------------------------------------------------------------

component("ErrorReason", enum(
    *[ERRORS[k][1] for k in APP_ERRORS + STANDARD_ERRORS],
    *[reason for extra in EXTRA_REASONS.values() for reason, _ in extra],
    description="Machine-readable error reason, one per code (plus a more specific one where listed). "
                + " ".join(f"{ERRORS[k][0]} {ERRORS[k][1]}: {ERRORS[k][3]}" for k in APP_ERRORS + STANDARD_ERRORS)
                + "".join(f" {code} {reason}: {text}" for code, extra in EXTRA_REASONS.items()
                          for reason, text in extra)))
component("ErrorData", obj({
    "reason": ref("ErrorReason"),
    "errors": array(obj({"path": desc(string(), "e.g. `reservations[0].count`"), "message": string()},
                        ["path", "message"]), minItems=1),
    "earliest_start": ref("TimestampUTC"),
    "resource_class": ref("ResourceClass"),
    "required": {"type": "number"},
    "available": {"type": "number"},
    "rule": NONEMPTY,
    "limit": desc(COUNT, "With request_too_large: the line limit in bytes."),
    "storage_fault": desc(enum("full", "read_only", "io_error", "busy", "corrupt"),
                          "With unavailable, when the store refused a write or read: what it reported."),
}, ["reason"], description="The `data` member of every Berth error.", allOf=[
    {"if": {"properties": {"reason": {"const": "invalid_params"}}},
     "then": {"required": ["errors"]}},
    {"if": {"properties": {"reason": {"const": "insufficient_credits"}}},
     "then": {"required": ["resource_class", "required", "available"]}},
    {"if": {"properties": {"reason": {"const": "policy_violation"}}},
     "then": {"required": ["rule"]}},
]))
component("Error", obj({
    "code": {"type": "integer"},
    "message": NONEMPTY,
    "data": ref("ErrorData"),
}, ["code", "message", "data"], description="A JSON-RPC error object as Berth sends it; code and data.reason "
                                             "always agree.",
    allOf=[{"if": {"properties": {"code": {"const": ERRORS[k][0]}}},
            "then": {"properties": {"data": {"properties": {"reason": (
                {"enum": [ERRORS[k][1]] + [r for r, _ in EXTRA_REASONS[ERRORS[k][0]]]}
                if ERRORS[k][0] in EXTRA_REASONS else {"const": ERRORS[k][1]})}}}}}
           for k in STANDARD_ERRORS + APP_ERRORS]))


# --------------------------------------------------------------------------------------------
# METHODS
# --------------------------------------------------------------------------------------------

ALL_ROLES = ["admin", "portal", "hook"]


def p(name: str, schema: dict, required: bool = False, description: str | None = None) -> dict:
    out = {"name": name}
    if description:
        out["description"] = description
    out["required"] = required
    out["schema"] = schema
    return out


IDEM = p("idempotency_key", ref("IdempotencyKey"))


def limit(maximum: int, default: int) -> dict:
    return p("limit", integer(1, maximum, default=default), description=f"Page size, 1..{maximum}.")


def page(items: dict, cursor: dict) -> dict:
    return obj({"items": array(items), "next_cursor": cursor}, ["items", "next_cursor"])


NEXT_CURSOR = desc(nullable(ref("Cursor")), "Pass as `cursor` to get the next page; null on the last page.")

METHODS: list[dict] = []


def method(name, *, tag, summary, description, params, result, errors, roles, result_name=None,
           params_constraints=None, examples=None, extensions=None, mutating=None):
    """`mutating`: the method changes Berth's state. Every method that takes `idempotency_key` is
    mutating; the manual clock's moves are too, without a key (moving the clock is not a request
    to repeat)."""
    for e in errors:
        assert e in APP_ERRORS, e
    takes_key = any(q["name"] == "idempotency_key" for q in params)
    if mutating is None:
        mutating = takes_key
    assert mutating or not takes_key, f"{name}: takes idempotency_key, so it is mutating"
    METHODS.append(dict(name=name, tag=tag, summary=summary, description=description, params=params,
                        result=result, result_name=result_name or "result", errors=errors, roles=roles,
                        params_constraints=params_constraints, examples=examples or [],
                        extensions=extensions or {}, mutating=mutating, manual_clock=tag == "clock"))


# --- discovery and health --------------------------------------------------------------------

method("rpc.discover", tag="discovery", roles=ALL_ROLES,
       summary="The OpenRPC document describing this API.",
       description="Returns this OpenRPC document verbatim.",
       params=[], result=obj({"openrpc": {"type": "string"}, "info": {"type": "object"},
                              "methods": {"type": "array"}}, ["openrpc", "info", "methods"]),
       result_name="openrpc_document", errors=["Forbidden", "Unavailable"])
method("system.health", tag="discovery", roles=ALL_ROLES,
       summary="Daemon health.",
       description="`status` is `ok` when storage is `ok` and the adapter is `ok`, otherwise `degraded`.",
       params=[], result=obj({
           "status": enum("ok", "degraded"),
           "version": NONEMPTY,
           "uptime_s": DURATION,
           "storage": desc(enum("ok", "read_only", "error"),
                           "The outcome of the last write: `ok`, or since a write failed (until one succeeds) "
                           "`read_only` when the store or file system is read-only, `error` otherwise (disk full, "
                           "I/O error, corrupt, locked). Reads are served meanwhile; writes get -32007."),
           "storage_problem": desc(string(), "What the store reported while `storage` is not `ok`."),
           "adapter": enum("ok", "degraded"),
           "adapter_name": desc(enum("simulator", "openstack"), "Where actions go."),
           "adapter_problem": desc(nullable(string()), "openstack: what is wrong while degraded (configuration, "
                                                      "authentication, unreachable, or Nova's 5xx)."),
           "cloud_drift": desc(array(string()), "openstack: differences the last reconciliation found between "
                                               "Nova's aggregates and the active leases."),
           "keystone": desc(enum("ok", "unreachable"), "With the REST API on Keystone auth: whether the last "
                                                      "token validation could ask Keystone."),
           "keystone_problem": desc(string(), "What went wrong asking Keystone, while `keystone` is `unreachable`."),
           "clock": enum("system", "manual"),
       }, ["status", "version", "uptime_s", "storage", "adapter"]),
       result_name="health", errors=["Forbidden", "Unavailable"])

# --- clock -----------------------------------------------------------------------------------

_CLOCK_NOTE = ("Exists only with `--clock manual`; otherwise -32601. ")
_NOW_RESULT = obj({"now": ref("TimestampUTC")}, ["now"])
method("clock.now", tag="clock", roles=["admin"],
       summary="Current time of the manual clock.", description=_CLOCK_NOTE,
       params=[], result=_NOW_RESULT, errors=["Forbidden", "Unavailable"])
method("clock.set", tag="clock", roles=["admin"],
       summary="Move the manual clock to a time.",
       description=_CLOCK_NOTE + "Every event due up to the new time (lease start, before-end, end, preemption) "
                                 "is processed, in time order, before the reply. Moving backwards is -32005.",
       params=[p("now", ref("TimestampInput"), True)], result=_NOW_RESULT,
       errors=["Forbidden", "Conflict", "Unavailable"], mutating=True)
method("clock.advance", tag="clock", roles=["admin"],
       summary="Move the manual clock forward.",
       description=_CLOCK_NOTE + "Every event due up to the new time is processed, in time order, before the reply.",
       params=[p("seconds", DURATION, True)], result=_NOW_RESULT, errors=["Forbidden", "Unavailable"],
       mutating=True)

# --- hosts -----------------------------------------------------------------------------------

method("host.create", tag="hosts", roles=["admin"],
       summary="Register a host.",
       description="The params are the host's own fields; a new host is `up`. A duplicate name is -32005.",
       params=[
           p("name", ref("HostName"), True),
           p("vcpus", COUNT, True),
           p("memory_mb", MB, True),
           p("disk_gb", GB, True),
           p("gpus", array(ref("GpuInput")), description="Physical GPUs; default none."),
           p("properties", ref("HostProperties"), description="Default `{}`."),
           p("reservable", {"type": "boolean", "default": True}),
           IDEM,
       ], result=ref("Host"), result_name="host",
       errors=["Forbidden", "Conflict", "Unavailable"],
       examples=[{
           "name": "register an A100 host",
           "params": {"name": "node-001", "vcpus": 64, "memory_mb": 262144, "disk_gb": 960,
                      "gpus": [{"model": "A100-40GB"}], "properties": {"rack": "r1", "ib": True}},
           "result": {"id": 1, "name": "node-001", "vcpus": 64, "memory_mb": 262144, "disk_gb": 960,
                      "gpus": [{"model": "A100-40GB"}], "properties": {"rack": "r1", "ib": True},
                      "state": "up", "reservable": True,
                      "created_at": "2030-01-01T09:00:00Z", "updated_at": "2030-01-01T09:00:00Z"},
       }])
method("host.get", tag="hosts", roles=["admin"],
       summary="One host.", description="",
       params=[p("name", ref("HostName"), True)], result=ref("Host"), result_name="host",
       errors=["NotFound", "Forbidden", "Unavailable"])
method("host.list", tag="hosts", roles=["admin"],
       summary="All hosts, optionally filtered by properties.",
       description="Not paged: `next_cursor` is always null.",
       params=[p("properties", ref("PropertyFilter"))],
       result=obj({"items": array(ref("Host")), "next_cursor": {"type": "null"}}, ["items", "next_cursor"]),
       errors=["Forbidden", "Unavailable"])
method("host.update", tag="hosts", roles=["admin"],
       summary="Change a host's fields.",
       description="Fields not given are unchanged; `gpus` and `properties` replace the old value. Setting "
                   "`state` to `down` or `maintenance` heals affected reservations (moves them to other capacity "
                   "where possible, otherwise marks the lease degraded). Shrinking a host below what current or "
                   "future allocations hold is -32005.",
       params=[
           p("name", ref("HostName"), True),
           p("vcpus", COUNT),
           p("memory_mb", MB),
           p("disk_gb", GB),
           p("gpus", array(ref("GpuInput"))),
           p("properties", ref("HostProperties")),
           p("state", ref("HostState")),
           p("reservable", {"type": "boolean"}),
           IDEM,
       ], result=ref("Host"), result_name="host",
       errors=["NotFound", "Forbidden", "Conflict", "Unavailable"])
method("host.delete", tag="hosts", roles=["admin"],
       summary="Remove a host.",
       description="Refused with -32005 while the host holds current or future allocations.",
       params=[p("name", ref("HostName"), True), IDEM], result=obj({}),
       errors=["NotFound", "Forbidden", "Conflict", "Unavailable"])

# --- leases ----------------------------------------------------------------------------------

_LEASE_ROLES_RW = ["admin", "portal"]
_LEASE_ROLES_RO = ["admin", "portal", "hook"]
_EX_LEASE_ID = "3b0e5a52-8a3c-4d8e-9f57-1c2d3e4f5a6b"
_EX_RES_ID = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"

method("lease.create", tag="leases", roles=_LEASE_ROLES_RW,
       summary="Reserve capacity for a time window.",
       description="Places every reservation (all or nothing) and charges the lease's cost; -32002 with "
                   "`data.earliest_start` when a later start would fit, -32003 when credit enforcement is on and "
                   "the balance is short, -32008 when a policy (e.g. maximum lease length) forbids it. With "
                   "`dry_run` nothing is stored or charged; the result shows the placement and the cost it would "
                   "have.",
       params=[
           p("name", desc(NONEMPTY, "Human name of the lease."), True),
           p("project_id", ref("ProjectId"), True),
           p("user_id", nullable(NONEMPTY)),
           p("start", ref("StartTime"), True),
           p("end", ref("TimestampInput"), True, "Must be after start."),
           p("before_end_s", nullable(DURATION), description="Fire lease.before_end this many seconds before end."),
           p("reservations", array(ref("ReservationRequest"), minItems=1), True),
           p("dry_run", {"type": "boolean", "default": False}),
           IDEM,
       ], result=ref("Lease"), result_name="lease",
       errors=["NoCapacity", "InsufficientCredits", "Forbidden", "Conflict", "UpstreamError",
               "Unavailable", "PolicyViolation"],
       examples=[{
           "name": "two GPU slices for two hours",
           "params": {"name": "train-run", "project_id": "proj-a", "start": "2030-01-01T10:00:00Z",
                      "end": "2030-01-01T12:00:00Z",
                      "reservations": [{"kind": "gpu", "profile": "1g.5gb", "count": 2}]},
           "result": {"id": _EX_LEASE_ID, "name": "train-run", "project_id": "proj-a", "user_id": None,
                      "start": "2030-01-01T10:00:00Z", "end": "2030-01-01T12:00:00Z", "before_end_s": None,
                      "status": "pending",
                      "reservations": [{"kind": "gpu", "id": _EX_RES_ID, "status": "pending", "profile": "1g.5gb",
                                        "count": 2, "allocations": [
                                            {"host": "node-001", "gpu": 0, "profile": "1g.5gb", "slot": 0},
                                            {"host": "node-001", "gpu": 0, "profile": "1g.5gb", "slot": 1}],
                                        "flavor_id": _EX_RES_ID}],
                      "cost": {"gpu_slice_hours": 4}, "degraded": False,
                      "created_at": "2030-01-01T09:00:00Z", "updated_at": "2030-01-01T09:00:00Z"},
       }])
method("lease.get", tag="leases", roles=_LEASE_ROLES_RO,
       summary="One lease.", description="",
       params=[p("id", ref("Id"), True)], result=ref("Lease"), result_name="lease",
       errors=["NotFound", "Forbidden", "Unavailable"])
method("lease.list", tag="leases", roles=_LEASE_ROLES_RO,
       summary="Leases, oldest first (by creation time, then id), filtered and paged.",
       description="`from`/`to` select leases whose [start, end) overlaps that window.",
       params=[
           p("project_id", ref("ProjectId")),
           p("status", ref("LeaseStatus")),
           p("from", ref("TimestampInput")),
           p("to", ref("TimestampInput")),
           p("cursor", ref("Cursor")),
           limit(1000, 100),
       ], result=page(ref("Lease"), NEXT_CURSOR),
       errors=["Forbidden", "Unavailable"])
method("lease.update", tag="leases", roles=_LEASE_ROLES_RW,
       summary="Extend, shorten, move, grow or shrink a lease.",
       description="Keeps existing allocations wherever they still fit; credits are charged or refunded by the "
                   "difference. `reservations`, when given, is the complete new list of the lease's reservations. "
                   "When any entry has an `id`, entries are matched by id: an entry with the id of one of the "
                   "lease's reservations changes that reservation (keeping its id and, where they still fit, its "
                   "allocations), an entry without an id is a new reservation, and an unknown or repeated id is "
                   "-32602. When no entry has an id, entries are matched by position: entry i changes the lease's "
                   "i-th reservation, extra entries are added. Either way, reservations not matched are removed. "
                   "Updating an ended or deleted lease is -32005. `dry_run` shows the result without storing or "
                   "charging.",
       params=[
           p("id", ref("Id"), True),
           p("name", NONEMPTY),
           p("start", ref("StartTime")),
           p("end", ref("TimestampInput")),
           p("before_end_s", nullable(DURATION)),
           p("reservations", array(ref("ReservationUpdate"), minItems=1)),
           p("dry_run", {"type": "boolean", "default": False}),
           IDEM,
       ], result=ref("Lease"), result_name="lease",
       errors=["NotFound", "NoCapacity", "InsufficientCredits", "Forbidden", "Conflict", "UpstreamError",
               "Unavailable", "PolicyViolation"])
method("lease.delete", tag="leases", roles=_LEASE_ROLES_RW,
       summary="Delete a lease.",
       description="An active lease ends now; unused time is refunded.",
       params=[p("id", ref("Id"), True), IDEM],
       result=obj({"refund": ref("CreditAmounts")}, ["refund"]),
       errors=["NotFound", "Forbidden", "Conflict", "UpstreamError", "Unavailable"])

# --- availability ----------------------------------------------------------------------------

method("availability.find", tag="availability", roles=["admin", "portal"],
       summary="Earliest windows at which a whole request fits.",
       description="Windows are `duration_s` long, start no earlier than `earliest` (default now) and no later "
                   "than `latest`; at most `limit`, earliest first. No window gives an empty list.",
       params=[
           p("reservations", array(ref("ReservationRequest"), minItems=1), True),
           p("duration_s", COUNT, True),
           p("earliest", ref("StartTime")),
           p("latest", ref("TimestampInput")),
           limit(100, 5),
       ], result=obj({"items": array(ref("AvailabilityWindow"))}, ["items"]),
       errors=["Forbidden", "Unavailable", "PolicyViolation"])
method("calendar.get", tag="availability", roles=["admin", "portal", "hook"],
       summary="Per host, the allocations overlapping a window (a Gantt view).",
       description="Lease allocations (with kind and GPU slots) and preemptibles overlapping [from, to). "
                   "`hosts` restricts the answer to those hosts; an unknown name is -32001.",
       params=[
           p("from", ref("TimestampInput"), True),
           p("to", ref("TimestampInput"), True),
           p("hosts", array(ref("HostName"))),
       ], result=obj({"from": ref("TimestampUTC"), "to": ref("TimestampUTC"),
                      "hosts": array(ref("CalendarHost"))}, ["from", "to", "hosts"]),
       errors=["NotFound", "Forbidden", "Unavailable"])

# --- preemptibles ----------------------------------------------------------------------------

_PRE_ROLES = ["admin", "portal", "hook"]
method("preemptible.create", tag="preemptibles", roles=_PRE_ROLES,
       summary="Start a preemptible instance on unreserved capacity.",
       description="Placed on capacity no reservation holds for at least `min_lifetime_s` (default from "
                   "configuration); preempted only after that, when a reservation needs its capacity.",
       params=[
           p("project_id", ref("ProjectId"), True),
           p("vcpus", COUNT, True),
           p("memory_mb", MB, True),
           p("disk_gb", GB, True),
           p("gpu_profile", NONEMPTY),
           p("min_lifetime_s", DURATION),
           p("server", {"type": "object", "description": "Nova boot fields passed to the cloud."}),
           p("slurm_node", string(minLength=1, maxLength=64, pattern="^[A-Za-z0-9._-]+$"),
             description="Slurm node name this instance backs (one name, not a hostlist expression)."),
           IDEM,
       ], result=ref("Preemptible"), result_name="preemptible",
       errors=["NoCapacity", "Forbidden", "Conflict", "UpstreamError", "Unavailable", "PolicyViolation"])
method("preemptible.get", tag="preemptibles", roles=_PRE_ROLES,
       summary="One preemptible.", description="",
       params=[p("id", ref("Id"), True)], result=ref("Preemptible"), result_name="preemptible",
       errors=["NotFound", "Forbidden", "Unavailable"])
method("preemptible.list", tag="preemptibles", roles=_PRE_ROLES,
       summary="Preemptibles, filtered and paged.", description="",
       params=[
           p("project_id", ref("ProjectId")),
           p("host", ref("HostName")),
           p("status", ref("PreemptibleStatus")),
           p("slurm_node", NONEMPTY, description="Only the preemptible(s) backing this Slurm node."),
           p("cursor", ref("Cursor")),
           limit(1000, 100),
       ], result=page(ref("Preemptible"), NEXT_CURSOR),
       errors=["Forbidden", "Unavailable"])
method("preemptible.delete", tag="preemptibles", roles=_PRE_ROLES,
       summary="End a preemptible.",
       description="Returns the preemptible as it is after the call (status `ended`).",
       params=[p("id", ref("Id"), True), IDEM], result=ref("Preemptible"), result_name="preemptible",
       errors=["NotFound", "Forbidden", "Conflict", "UpstreamError", "Unavailable"])
method("preemptible.horizon", tag="preemptibles", roles=_PRE_ROLES,
       summary="When this capacity will next be needed by a reservation.",
       description="Give exactly one of `host` or `id`. Slurm uses it to avoid starting jobs that would be cut "
                   "off. `preempt_at` is null when nothing is planned.",
       params=[p("host", ref("HostName")), p("id", ref("Id"))],
       params_constraints={"oneOf": [{"required": ["host"]}, {"required": ["id"]}]},
       result=obj({"preempt_at": nullable(ref("TimestampUTC"))}, ["preempt_at"]),
       errors=["NotFound", "Forbidden", "Unavailable"])

# --- credits ---------------------------------------------------------------------------------

method("credits.grant", tag="credits", roles=["admin"],
       summary="Grant credits to a project.",
       description="Appends a `grant` entry to the project's ledger (creating the account if needed).",
       params=[
           p("project_id", ref("ProjectId"), True),
           p("resource_class", ref("ResourceClass"), True),
           p("amount", {"description": "Credits (unit-hours), exact to 6 decimals: a number, or a decimal string such as \"0.25\".",
                        "oneOf": [{"type": "number", "exclusiveMinimum": 0},
                                  {"type": "string", "pattern": "^[0-9]+(\\.[0-9]{1,6})?$"}]}, True),
           p("valid_from", ref("TimestampInput")),
           p("valid_to", ref("TimestampInput")),
           p("note", string(maxLength=1024)),
           IDEM,
       ], result=ref("LedgerEntry"), result_name="entry",
       errors=["Forbidden", "Conflict", "Unavailable"])
method("credits.balance", tag="credits", roles=["admin", "portal"],
       summary="A project's balance per resource class.",
       description="One entry per resource class the project has grants or charges in; a project "
                   "with no account has an empty balance (`{}`), not an error. Always "
                   "granted - spent = available + expired.",
       params=[p("project_id", ref("ProjectId"), True)],
       result={"type": "object", "propertyNames": ref("ResourceClass"),
               "additionalProperties": ref("CreditBalance")},
       result_name="balance", errors=["NotFound", "Forbidden", "Unavailable"])
method("credits.ledger", tag="credits", roles=["admin", "portal"],
       summary="A project's immutable ledger entries, oldest first.", description="",
       params=[p("project_id", ref("ProjectId"), True), p("cursor", ref("Cursor")), limit(1000, 100)],
       result=page(ref("LedgerEntry"), NEXT_CURSOR),
       errors=["NotFound", "Forbidden", "Unavailable"])

# --- events and actions ----------------------------------------------------------------------

method("events.subscribe", tag="events", roles=["admin", "hook"],
       summary="Receive events on this connection.",
       description="After the reply the server sends JSON-RPC notifications "
                   "`{\"jsonrpc\": \"2.0\", \"method\": \"event\", \"params\": <Event>}` on this connection for "
                   "every new event whose type matches `types` (default all). See `x-notifications`.",
       params=[p("types", array(ref("EventTypePattern"), minItems=1))],
       result=obj({"subscription": NONEMPTY}, ["subscription"]),
       errors=["Forbidden", "Unavailable"],
       extensions={"x-notifications": [{
           "method": "event",
           "description": "One durable event; sent as a notification (no id, no reply).",
           "params": ref("Event"),
           "schema": ref("EventNotification"),
       }]})
method("events.list", tag="events", roles=["admin", "hook"],
       summary="Durable, ordered events.",
       description="Events with `seq` greater than `after_seq`, in order. `next_cursor` is the seq to pass as "
                   "`after_seq` to continue; null when there are no more.",
       params=[
           p("after_seq", integer(0, default=0)),
           limit(1000, 100),
           p("types", array(ref("EventTypePattern"), minItems=1)),
       ], result=page(ref("Event"), nullable(integer(1))),
       errors=["Forbidden", "Unavailable"],
       examples=[{
           "name": "first events",
           "params": {"after_seq": 0, "limit": 1},
           "result": {"items": [{"seq": 1, "type": "lease.created", "at": "2030-01-01T09:00:00Z",
                                 "lease_id": _EX_LEASE_ID, "project_id": "proj-a"}],
                      "next_cursor": 1},
       }])
method("actions.list", tag="events", roles=["admin"],
       summary="The outbound actions to the cloud.", description="",
       params=[
           p("status", ref("ActionStatus")),
           p("lease_id", ref("Id")),
           p("cursor", ref("Cursor")),
           limit(1000, 100),
       ], result=page(ref("Action"), NEXT_CURSOR),
       errors=["Forbidden", "Unavailable"])


TAGS = {
    "discovery": "Discovery and health",
    "clock": "Manual clock (test and simulation support)",
    "hosts": "Hosts (operator role)",
    "leases": "Leases",
    "availability": "Availability and calendar",
    "preemptibles": "Preemptible instances",
    "credits": "Credits",
    "events": "Events and actions",
}

INFO_DESCRIPTION = (
    "Berth is a reservation scheduler for OpenStack research clouds: whole hosts, GPU slices and instance "
    "slots reserved for a time window and paid with credits, with preemptible instances backfilling the rest. "
    "JSON-RPC 2.0 over a Unix domain socket, one JSON text per line; params are always by name. "
    "Timestamps are RFC 3339, returned in UTC with `Z`; durations are integer seconds; ids are lowercase UUIDs. "
    "Every mutating method accepts `idempotency_key`. Every error has a `message` and `data.reason` "
    "(schema `#/components/schemas/ErrorData`); standard JSON-RPC errors (-32700..-32603) can come from any "
    "method. Schemas use JSON Schema draft 2020-12. `x-roles` lists the roles (from the caller's uid/gid) "
    "that may call a method; anyone else gets -32004. `x-mutating` says whether it changes state (refused with "
    "-32007 while berthd shuts down); `x-manual-clock` marks the methods that exist only with `--clock manual`."
)


# --------------------------------------------------------------------------------------------
# building the outputs
# --------------------------------------------------------------------------------------------

def params_object(m: dict) -> dict:
    props = {q["name"]: q["schema"] for q in m["params"]}
    schema: dict = {"type": "object", "properties": props}
    required = [q["name"] for q in m["params"] if q["required"]]
    if required:
        schema["required"] = required
    schema["additionalProperties"] = False
    if m["params_constraints"]:
        schema.update(m["params_constraints"])
    return schema


def build_openrpc() -> dict:
    methods = []
    for m in METHODS:
        entry: dict = {"name": m["name"], "summary": m["summary"]}
        if m["description"]:
            entry["description"] = m["description"]
        entry["tags"] = [{"name": m["tag"]}]
        entry["paramStructure"] = "by-name"
        entry["params"] = copy.deepcopy(m["params"])
        entry["result"] = {"name": m["result_name"], "schema": copy.deepcopy(m["result"])}
        entry["errors"] = [error_object(e) for e in m["errors"]]
        if m["examples"]:
            entry["examples"] = [{
                "name": ex["name"],
                "params": [{"name": k, "value": v} for k, v in ex["params"].items()],
                "result": {"name": m["result_name"], "value": ex["result"]},
            } for ex in m["examples"]]
        entry["x-roles"] = m["roles"]
        entry["x-mutating"] = m["mutating"]
        if m["manual_clock"]:
            entry["x-manual-clock"] = True
        if m["params_constraints"]:
            entry["x-params-constraints"] = copy.deepcopy(m["params_constraints"])
        entry.update(copy.deepcopy(m["extensions"]))
        methods.append(entry)
    return {
        "openrpc": OPENRPC_VERSION,
        "info": {"title": "Berth", "version": API_VERSION, "description": INFO_DESCRIPTION},
        "methods": methods,
        "components": {
            "schemas": copy.deepcopy(COMPONENTS),
            "errors": {k: error_object(k) for k in ERRORS},
            "tags": {k: {"name": k, "description": v} for k, v in TAGS.items()},
        },
    }


def rewrite_refs(node, prefix: str):
    """Turn `#/components/schemas/Name` into `<prefix>Name.json`."""
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/components/schemas/"):
                out[k] = prefix + v[len("#/components/schemas/"):] + ".json"
            else:
                out[k] = rewrite_refs(v, prefix)
        return out
    if isinstance(node, list):
        return [rewrite_refs(v, prefix) for v in node]
    return node


def standalone(rel_path: str, title: str, schema: dict, prefix: str, description: str | None = None) -> dict:
    head = {"$schema": DIALECT, "$id": ID_BASE + rel_path, "title": title}
    body = rewrite_refs(copy.deepcopy(schema), prefix)
    texts = [t for t in (description, body.pop("description", None)) if t]
    if texts:
        head["description"] = " ".join(texts)
    return {**head, **body}


def build_files() -> dict[str, object]:
    files: dict[str, object] = {}
    doc = build_openrpc()
    files["openrpc.json"] = doc
    for name, schema in COMPONENTS.items():
        files[f"components/{name}.json"] = standalone(f"components/{name}.json", name, schema, "")
    for m in METHODS:
        n = m["name"]
        files[f"methods/{n}.params.json"] = standalone(
            f"methods/{n}.params.json", f"{n} params", params_object(m), "../components/",
            f"Params (by name) of `{n}`: {m['summary']}")
        files[f"methods/{n}.result.json"] = standalone(
            f"methods/{n}.result.json", f"{n} result", m["result"], "../components/",
            f"Result of `{n}`.")
    files["notifications/event.json"] = standalone(
        "notifications/event.json", "event notification", ref("EventNotification"), "../components/",
        "Server-to-client notification sent after events.subscribe.")
    return files


def render(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=True) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    files = build_files()
    wanted = {SCHEMAS / rel: render(v) for rel, v in files.items()}
    # Generated directories hold only generated files.
    stale = []
    for sub in ("components", "methods", "notifications"):
        d = SCHEMAS / sub
        if d.is_dir():
            stale += [f for f in d.glob("*.json") if f not in wanted]
    problems = []
    for path, text in wanted.items():
        if not path.exists() or path.read_text() != text:
            problems.append(f"out of date: {path.relative_to(ROOT)}")
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    for f in stale:
        problems.append(f"not generated: {f.relative_to(ROOT)}")
        if not check:
            os.remove(f)
    if check:
        for line in problems:
            print(line, file=sys.stderr)
        return 1 if problems else 0
    print(f"wrote {len(wanted)} files under schemas/ ({len(problems)} changed or removed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
