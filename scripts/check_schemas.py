#!/usr/bin/env python3
"""Check Berth's machine-readable contract under schemas/. Exits non-zero on any problem.

- every *.json file parses;
- every schema file (components/, methods/, notifications/) is a valid JSON Schema draft 2020-12
  (Draft202012Validator.check_schema), declares that dialect and an `$id` matching its path;
- every `$ref` in those files resolves (relative to the file's `$id`);
- schemas/openrpc.json is an OpenRPC 1.3.2 document of the expected shape, every `$ref` in it
  resolves inside the document, and every schema in it is valid draft 2020-12;
- openrpc.json and the per-method / component files agree (same methods, params, required
  lists, result and component schemas);
- method examples in openrpc.json validate against both forms of the schemas;
- a few known-good and known-bad instances behave as expected (guards against loosening);
- the generators' outputs are up to date (scripts/gen_schemas.py --check,
  scripts/gen_contract.py --check, scripts/gen_gpu_models_swift.py --check);
- when the prose contract is present (BERTH_API_MD, docs/api.md, or ../shared/spec/api.md),
  every method it names is in openrpc.json and vice versa.

Requires the `jsonschema` package (4.18+).
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys
from pathlib import Path

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from referencing import Registry, Resource
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_BASE = "https://berth.example/schemas/"
DOC_URI = ID_BASE + "openrpc.json"
APP_CODES = {
    -32001: "not_found", -32002: "no_capacity", -32003: "insufficient_credits", -32004: "forbidden",
    -32005: "conflict", -32006: "upstream_error", -32007: "unavailable", -32008: "policy_violation",
}
HEAD_KEYS = {"$schema", "$id", "title", "description"}

problems: list[str] = []


def problem(msg: str) -> None:
    problems.append(msg)


def walk_refs(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield path, v
            else:
                yield from walk_refs(v, f"{path}/{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from walk_refs(v, f"{path}/{i}")


def rewrite_refs(node, prefix: str):
    if isinstance(node, dict):
        return {k: (prefix + v[len("#/components/schemas/"):] + ".json"
                    if k == "$ref" and isinstance(v, str) and v.startswith("#/components/schemas/")
                    else rewrite_refs(v, prefix)) for k, v in node.items()}
    if isinstance(node, list):
        return [rewrite_refs(v, prefix) for v in node]
    return node


def strip_head(schema: dict) -> dict:
    return {k: v for k, v in schema.items() if k not in HEAD_KEYS}


def strip_descriptions(node):
    """Annotations may differ in wording between the two forms; compare the assertions."""
    if isinstance(node, dict):
        return {k: strip_descriptions(v) for k, v in node.items() if k not in ("description", "title")
                or not isinstance(v, str)}
    if isinstance(node, list):
        return [strip_descriptions(v) for v in node]
    return node


# --------------------------------------------------------------------------------------------

def load_files() -> tuple[dict[str, object], dict | None]:
    files: dict[str, object] = {}
    for path in sorted(SCHEMAS.rglob("*.json")):
        rel = path.relative_to(SCHEMAS).as_posix()
        try:
            files[rel] = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            problem(f"{rel}: not valid JSON: {e}")
    doc = files.pop("openrpc.json", None)
    if doc is None:
        problem("schemas/openrpc.json is missing or unreadable")
    return files, doc


def check_schema_files(files: dict[str, object]) -> Registry:
    resources = []
    for rel, schema in files.items():
        if not isinstance(schema, dict):
            problem(f"{rel}: a schema file must hold an object")
            continue
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as e:
            problem(f"{rel}: invalid JSON Schema: {e.message} at {list(e.absolute_path)}")
        if schema.get("$schema") != DIALECT:
            problem(f"{rel}: $schema must be {DIALECT}")
        if schema.get("$id") != ID_BASE + rel:
            problem(f"{rel}: $id must be {ID_BASE + rel}, is {schema.get('$id')!r}")
        resources.append((ID_BASE + rel, DRAFT202012.create_resource(schema)))
    registry = Registry().with_resources(resources)
    for rel, schema in files.items():
        if not isinstance(schema, dict):
            continue
        resolver = registry.resolver(base_uri=ID_BASE + rel)
        for where, target in walk_refs(schema):
            try:
                resolver.lookup(target)
            except Unresolvable as e:
                problem(f"{rel}{where}: $ref {target!r} does not resolve: {e}")
    return registry


def check_openrpc(doc: dict) -> None:
    if not isinstance(doc, dict):
        problem("openrpc.json: must be an object")
        return
    if doc.get("openrpc") != "1.3.2":
        problem("openrpc.json: openrpc must be \"1.3.2\"")
    info = doc.get("info")
    if not isinstance(info, dict) or info.get("title") != "Berth" or not isinstance(info.get("version"), str):
        problem("openrpc.json: info needs title \"Berth\" and a version string")
    for key in doc:
        if key not in ("openrpc", "info", "servers", "methods", "components", "externalDocs") \
                and not key.startswith("x-"):
            problem(f"openrpc.json: unknown top-level member {key!r}")
    methods = doc.get("methods")
    if not isinstance(methods, list) or not methods:
        problem("openrpc.json: methods must be a non-empty array")
        return
    seen = set()
    method_keys = {"name", "summary", "description", "tags", "paramStructure", "params", "result", "errors",
                   "links", "examples", "deprecated", "servers", "externalDocs"}
    cd_keys = {"name", "summary", "description", "required", "schema", "deprecated"}
    for i, m in enumerate(methods):
        where = f"openrpc.json methods[{i}]"
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or not m["name"]:
            problem(f"{where}: needs a name")
            continue
        name = m["name"]
        where = f"openrpc.json {name}"
        if name in seen:
            problem(f"{where}: duplicate method name")
        seen.add(name)
        for key in m:
            if key not in method_keys and not key.startswith("x-"):
                problem(f"{where}: unknown member {key!r}")
        if m.get("paramStructure") != "by-name":
            problem(f"{where}: paramStructure must be by-name")
        params = m.get("params")
        if not isinstance(params, list):
            problem(f"{where}: params must be an array")
            params = []
        names = set()
        for j, cd in enumerate(params):
            if not isinstance(cd, dict) or "name" not in cd or "schema" not in cd:
                problem(f"{where} params[{j}]: content descriptor needs name and schema")
                continue
            if cd["name"] in names:
                problem(f"{where}: duplicate param {cd['name']!r}")
            names.add(cd["name"])
            for key in cd:
                if key not in cd_keys and not key.startswith("x-"):
                    problem(f"{where} param {cd['name']}: unknown member {key!r}")
            if not isinstance(cd.get("required", False), bool):
                problem(f"{where} param {cd['name']}: required must be boolean")
        result = m.get("result")
        if not isinstance(result, dict) or "name" not in result or "schema" not in result:
            problem(f"{where}: result must be a content descriptor with name and schema")
        errors = m.get("errors", [])
        if not isinstance(errors, list) or not errors:
            problem(f"{where}: errors must list the application errors")
            errors = []
        for e in errors:
            if not isinstance(e, dict) or not isinstance(e.get("code"), int) or not isinstance(e.get("message"), str):
                problem(f"{where}: error objects need an integer code and a message")
                continue
            reason = APP_CODES.get(e["code"])
            if reason is None:
                problem(f"{where}: {e['code']} is not an application error code")
            elif (e.get("data") or {}).get("reason") != reason:
                problem(f"{where}: error {e['code']} must carry data.reason {reason!r}")
            if set(e) - {"code", "message", "data"}:
                problem(f"{where}: error objects allow only code, message, data")
    # $refs resolve inside the document; every schema is valid draft 2020-12.
    for where, target in walk_refs(doc):
        if not target.startswith("#/"):
            problem(f"openrpc.json{where}: $ref {target!r} must point inside the document")
            continue
        node = doc
        try:
            for part in target[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            problem(f"openrpc.json{where}: $ref {target!r} does not resolve")
    comps = doc.get("components", {}).get("schemas", {})
    for name, schema in comps.items():
        if not re.fullmatch(r"[a-zA-Z0-9._-]+", name):
            problem(f"openrpc.json components.schemas: bad key {name!r}")
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as e:
            problem(f"openrpc.json components.schemas.{name}: invalid schema: {e.message}")
    for m in methods:
        if not isinstance(m, dict):
            continue
        for cd in (m.get("params") or []) + [m.get("result") or {}]:
            if isinstance(cd, dict) and "schema" in cd:
                try:
                    Draft202012Validator.check_schema(cd["schema"])
                except SchemaError as e:
                    problem(f"openrpc.json {m.get('name')} {cd.get('name')}: invalid schema: {e.message}")


def check_consistency(doc: dict, files: dict[str, object]) -> None:
    methods = {m["name"]: m for m in doc.get("methods", []) if isinstance(m, dict) and "name" in m}
    file_methods = {rel[len("methods/"):].rsplit(".", 2)[0] for rel in files if rel.startswith("methods/")}
    for name in sorted(set(methods) - file_methods):
        problem(f"{name}: no schemas/methods/{name}.*.json")
    for name in sorted(file_methods - set(methods)):
        problem(f"schemas/methods/{name}.*.json: method not in openrpc.json")
    for name, m in methods.items():
        pf, rf = files.get(f"methods/{name}.params.json"), files.get(f"methods/{name}.result.json")
        if not isinstance(pf, dict) or not isinstance(rf, dict):
            problem(f"{name}: params or result file missing")
            continue
        params = m.get("params", [])
        if pf.get("type") != "object" or pf.get("additionalProperties") is not False:
            problem(f"methods/{name}.params.json: must be an object with additionalProperties false")
        want_props = {cd["name"]: rewrite_refs(cd["schema"], "../components/") for cd in params}
        if strip_descriptions(pf.get("properties", {})) != strip_descriptions(want_props):
            problem(f"methods/{name}.params.json: properties differ from openrpc.json params")
        want_req = sorted(cd["name"] for cd in params if cd.get("required"))
        if sorted(pf.get("required", [])) != want_req:
            problem(f"methods/{name}.params.json: required {pf.get('required', [])} != openrpc {want_req}")
        extra = {k: v for k, v in strip_head(pf).items()
                 if k not in ("type", "properties", "required", "additionalProperties")}
        if extra != rewrite_refs(m.get("x-params-constraints", {}), "../components/"):
            problem(f"methods/{name}.params.json: extra constraints differ from x-params-constraints")
        want_result = rewrite_refs(m["result"]["schema"], "../components/")
        if strip_descriptions(strip_head(rf)) != strip_descriptions(strip_head(want_result)):
            problem(f"methods/{name}.result.json: differs from openrpc.json result schema")
    comps = doc.get("components", {}).get("schemas", {})
    file_comps = {rel[len("components/"):-5]: s for rel, s in files.items() if rel.startswith("components/")}
    for name in sorted(set(comps) ^ set(file_comps)):
        problem(f"component {name}: present in only one of openrpc.json and schemas/components/")
    for name in set(comps) & set(file_comps):
        if strip_descriptions(strip_head(file_comps[name])) != strip_descriptions(strip_head(rewrite_refs(comps[name], ""))):
            problem(f"components/{name}.json: differs from openrpc.json components.schemas.{name}")


def validators(doc: dict, registry: Registry):
    doc_registry = Registry().with_resource(DOC_URI, DRAFT202012.create_resource(doc))

    def file_validator(rel: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": ID_BASE + rel}, registry=registry)

    def doc_validator(pointer: str) -> Draft202012Validator:
        return Draft202012Validator({"$ref": DOC_URI + "#" + pointer}, registry=doc_registry)

    return file_validator, doc_validator


def check_examples(doc: dict, registry: Registry) -> None:
    file_validator, doc_validator = validators(doc, registry)
    for i, m in enumerate(doc.get("methods", [])):
        name = m.get("name")
        for ex in m.get("examples", []):
            params = {p["name"]: p["value"] for p in ex.get("params", [])}
            result = ex.get("result", {}).get("value")
            for label, v, value in (
                ("params file", file_validator(f"methods/{name}.params.json"), params),
                ("result file", file_validator(f"methods/{name}.result.json"), result),
                ("openrpc result", doc_validator(f"/methods/{i}/result/schema"), result),
            ):
                for err in v.iter_errors(value):
                    problem(f"{name} example {ex.get('name')!r} fails {label}: {err.message}")
            for j, cd in enumerate(m.get("params", [])):
                if cd["name"] in params:
                    for err in doc_validator(f"/methods/{i}/params/{j}/schema").iter_errors(params[cd["name"]]):
                        problem(f"{name} example {ex.get('name')!r} param {cd['name']}: {err.message}")
                elif cd.get("required"):
                    problem(f"{name} example {ex.get('name')!r} lacks required param {cd['name']}")


# Known instances: (schema file, instance, should_be_valid). Guards the strictness the daemon relies on.
HOST_REQ = {"kind": "host", "count": 2}
LEASE_PARAMS = {"name": "l", "project_id": "p", "start": "now", "end": "2030-01-01T12:00:00+02:00",
                "reservations": [HOST_REQ]}
SELF_TESTS = [
    ("methods/lease.create.params.json", LEASE_PARAMS, True),
    ("methods/lease.create.params.json", {**LEASE_PARAMS, "bogus": 1}, False),
    ("methods/lease.create.params.json", {**LEASE_PARAMS, "reservations": []}, False),
    ("methods/lease.create.params.json", {**LEASE_PARAMS, "start": "tomorrow"}, False),
    ("methods/lease.create.params.json", {**LEASE_PARAMS, "reservations": [{"kind": "host", "min": 1, "max": 3}]},
     True),
    ("methods/lease.create.params.json", {**LEASE_PARAMS, "reservations": [{"kind": "host", "count": 1, "min": 1,
                                                                            "max": 2}]}, False),
    ("methods/lease.create.params.json", {**LEASE_PARAMS, "reservations": [{"kind": "host", "min": 1}]}, False),
    ("methods/lease.create.params.json", {**LEASE_PARAMS, "reservations": [{"kind": "host", "count": 0}]}, False),
    ("methods/lease.create.params.json", {**LEASE_PARAMS, "reservations": [{"kind": "host", "count": 1.5}]}, False),
    ("methods/lease.create.params.json", {**LEASE_PARAMS, "reservations": [{"kind": "vm", "count": 1}]}, False),
    ("methods/lease.create.params.json", {**LEASE_PARAMS, "reservations": [
        {"kind": "host", "count": 1,
         "properties": ["and", [">=", "$memory_mb", 4096], ["==", "$ib", "true"], ["not", ["in", "$rack", ["r9"]]]]}]},
     True),
    ("methods/lease.create.params.json", {**LEASE_PARAMS, "reservations": [
        {"kind": "host", "count": 1, "properties": ["~=", "$rack", "r1"]}]}, False),
    ("methods/lease.create.params.json", {**LEASE_PARAMS, "reservations": [
        {"kind": "instance", "vcpus": 4, "memory_mb": 8192, "disk_gb": 0, "count": 3, "affinity": None}]}, True),
    ("methods/lease.create.params.json", {**LEASE_PARAMS, "reservations": [
        {"kind": "gpu", "profile": "1g.5gb", "count": 1, "slot": 0}]}, False),
    ("methods/host.create.params.json", {"name": "-bad", "vcpus": 1, "memory_mb": 1, "disk_gb": 0}, False),
    ("methods/host.create.params.json", {"name": "n1", "vcpus": 1, "memory_mb": 1, "disk_gb": 0,
                                         "state": "up"}, False),
    ("methods/host.delete.params.json", {"name": "n1", "idempotency_key": "k"}, True),
    ("methods/clock.advance.params.json", {"seconds": -1}, False),
    ("methods/system.health.params.json", {}, True),
    ("methods/system.health.params.json", {"x": 1}, False),
    ("methods/preemptible.horizon.params.json", {}, False),
    ("methods/preemptible.horizon.params.json", {"host": "n1", "id": "x"}, False),
    ("methods/preemptible.horizon.params.json", {"host": "n1"}, True),
    ("methods/events.list.params.json", {"types": ["lease.*", "host.down", "*"]}, True),
    ("methods/events.list.params.json", {"limit": 1001}, False),
    ("methods/clock.now.result.json", {"now": "2030-01-01T10:00:00Z"}, True),
    ("methods/clock.now.result.json", {"now": "2030-01-01T10:00:00+00:00"}, False),
    ("methods/clock.now.result.json", {"now": "2030-01-01T10:00:00.5Z"}, False),
    ("methods/credits.balance.result.json", {c: {"granted": 1, "spent": 0, "available": 1, "expired": 0}
                                             for c in ("host_hours", "gpu_slice_hours", "vcpu_hours")}, True),
    ("methods/credits.balance.result.json", {"gpu_slice_hours": {"granted": 1, "spent": 2, "available": -1,
                                                                 "expired": 0}}, True),
    ("methods/credits.balance.result.json", {}, True),  # a project with no account
    ("methods/credits.balance.result.json", {"host_hours": {"granted": 1, "spent": 0, "available": 1}}, False),
    ("methods/credits.balance.result.json", {"cpu_hours": {"granted": 1, "spent": 0, "available": 1,
                                                           "expired": 0}}, False),
    ("components/Error.json", {"code": -32602, "message": "Invalid params",
                               "data": {"reason": "invalid_params",
                                        "errors": [{"path": "reservations[0].count", "message": "must be >= 1"}]}},
     True),
    ("components/Error.json", {"code": -32602, "message": "Invalid params", "data": {"reason": "invalid_params"}},
     False),
    ("components/Error.json", {"code": -32001, "message": "x", "data": {"reason": "conflict"}}, False),
    ("components/Error.json", {"code": -32003, "message": "x", "data": {
        "reason": "insufficient_credits", "resource_class": "host_hours", "required": 8, "available": 2}}, True),
    ("notifications/event.json", {"jsonrpc": "2.0", "method": "event",
                                  "params": {"seq": 3, "type": "host.down", "at": "2030-01-01T10:00:00Z",
                                             "host": "n1"}}, True),
    ("notifications/event.json", {"jsonrpc": "2.0", "method": "event",
                                  "params": {"seq": 4, "type": "host.created", "at": "2030-01-01T10:00:00Z",
                                             "host": "n1"}}, True),
    ("methods/lease.update.params.json", {"id": "l1", "reservations": [
        {"id": "r1", "kind": "host", "count": 2}, {"kind": "host", "min": 1, "max": 2}]}, True),
    ("methods/lease.update.params.json", {"id": "l1", "reservations": [{"id": "", "kind": "host", "count": 2}]},
     False),
    ("methods/lease.create.params.json", {**LEASE_PARAMS, "reservations": [{"id": "r1", "kind": "host", "count": 1}]},
     False),
    ("components/Error.json", {"code": -32600, "message": "too long",
                               "data": {"reason": "request_too_large", "limit": 1048576}}, True),
    ("components/Error.json", {"code": -32602, "message": "x", "data": {"reason": "request_too_large",
                                                                       "errors": [{"path": "", "message": "x"}]}},
     False),
    ("notifications/event.json", {"jsonrpc": "2.0", "method": "event", "id": 1,
                                  "params": {"seq": 3, "type": "host.down", "at": "2030-01-01T10:00:00Z"}}, False),
]


def check_self_tests(registry: Registry) -> None:
    for rel, instance, ok in SELF_TESTS:
        v = Draft202012Validator({"$ref": ID_BASE + rel}, registry=registry)
        try:
            valid = v.is_valid(instance)
        except Unresolvable as e:
            problem(f"self-test {rel}: unresolvable reference {e}")
            continue
        if valid != ok:
            problem(f"self-test {rel}: expected {'valid' if ok else 'invalid'}: {json.dumps(instance)}")


def check_generators() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    import gen_gpu_models_swift
    import gen_contract
    import gen_schemas
    import contextlib
    import io

    for mod in (gen_schemas, gen_contract, gen_gpu_models_swift):
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            rc = mod.main(["--check"])
        if rc != 0:
            for line in err.getvalue().splitlines() or [f"{mod.__name__} --check failed"]:
                problem(f"{mod.__name__}: {line}")


def check_prose(doc: dict) -> None:
    candidates = [os.environ.get("BERTH_API_MD"), ROOT / "docs" / "api.md", ROOT.parent / "shared" / "spec" / "api.md"]
    api = next((Path(c) for c in candidates if c and Path(c).is_file()), None)
    if api is None:
        print("note: api.md not found; skipped the method coverage check against the prose contract")
        return
    text = api.read_text()
    section = text.split("## Methods", 1)[-1].split("## Security", 1)[0]
    prefixes = "rpc|system|clock|host|lease|availability|calendar|preemptible|credits|events|actions"
    named = set(re.findall(rf"`((?:{prefixes})\.[a-z_]+)(?=[` ])", section))
    documented = {m.get("name") for m in doc.get("methods", [])}
    for name in sorted(named - documented):
        problem(f"{api}: method {name} is not in openrpc.json")
    for name in sorted(documented - named):
        problem(f"openrpc.json: method {name} is not named in {api}")


def main() -> int:
    files, doc = load_files()
    registry = check_schema_files(files)
    if isinstance(doc, dict):
        check_openrpc(doc)
        check_consistency(doc, files)
        check_examples(doc, registry)
        check_prose(doc)
    check_self_tests(registry)
    check_generators()
    if problems:
        for line in problems:
            print(f"FAIL {line}", file=sys.stderr)
        print(f"{len(problems)} problem(s)", file=sys.stderr)
        return 1
    n_methods = len(doc.get("methods", [])) if isinstance(doc, dict) else 0
    print(f"ok: {len(files)} schema files, openrpc.json with {n_methods} methods, "
          f"{len(SELF_TESTS)} self-tests")
    return 0


if __name__ == "__main__":
    sys.exit(main())
