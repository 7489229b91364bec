#!/usr/bin/env python3
"""Check that docs/architecture.md's map of targets is the package's real one.

The table under "## Targets" in docs/architecture.md lists every target of Package.swift (tests
included) with the project's own targets it depends on. This script compares it with the manifest
(`swift package dump-package`) and with the sources' imports: a target that imports one of the
project's modules must declare it, and must not declare one it never imports. Exits 1 on any
difference, naming it.

Usage:
  python3 scripts/check_architecture.py                 runs `swift package dump-package`
  python3 scripts/check_architecture.py --manifest F    reads that command's JSON from F
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"
IMPORT = re.compile(r"^\s*(?:@testable\s+|@_spi\(\w+\)\s+)?import\s+(\w+)", re.MULTILINE)


def manifest(argv: list[str]) -> dict:
    if "--manifest" in argv:
        return json.loads(Path(argv[argv.index("--manifest") + 1]).read_text())
    out = subprocess.run(["swift", "package", "dump-package"], cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def declared(pkg: dict) -> dict[str, tuple[str, set[str], Path]]:
    """target -> (type, the project's targets it depends on, its source folder)."""
    names = {t["name"] for t in pkg["targets"]}
    out = {}
    for t in pkg["targets"]:
        deps = set()
        for d in t.get("dependencies", []):
            kind, value = next(iter(d.items()))
            if kind in ("byName", "target") and value[0] in names:
                deps.add(value[0])
        default = "Tests" if t["type"] == "test" else "Sources"
        out[t["name"]] = (t["type"], deps, ROOT / (t.get("path") or f"{default}/{t['name']}"))
    return out


def documented() -> dict[str, set[str]]:
    """The "## Targets" table: `| \\`Name\\` | dep, dep | what |` rows."""
    text = DOC.read_text()
    if "\n## Targets" not in text:
        return {}
    section = text.split("\n## Targets", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\|\s*`([\w-]+)`\s*\|([^|]*)\|", line)
        if m:
            rows[m.group(1)] = {d.strip(" `") for d in m.group(2).split(",") if d.strip(" `—-")}
    return rows


def imports(folder: Path, modules: set[str]) -> set[str]:
    found: set[str] = set()
    for f in folder.rglob("*.swift"):
        found |= {m for m in IMPORT.findall(f.read_text()) if m in modules}
    return found


def main(argv: list[str]) -> int:
    targets = declared(manifest(argv))
    doc = documented()
    problems = []
    if not doc:
        problems.append(f"{DOC.relative_to(ROOT)}: no '## Targets' table")
    for name in sorted(set(targets) - set(doc)):
        problems.append(f"{name}: in Package.swift, not in the architecture table")
    for name in sorted(set(doc) - set(targets)):
        problems.append(f"{name}: in the architecture table, not in Package.swift")
    modules = set(targets)
    for name, (kind, deps, folder) in sorted(targets.items()):
        if name in doc and doc[name] != deps:
            problems.append(f"{name}: the table says {sorted(doc[name])}, Package.swift says {sorted(deps)}")
        if kind == "system":
            continue
        used = imports(folder, modules) - {name}
        for m in sorted(used - deps):
            problems.append(f"{name}: imports {m} without declaring it")
        for m in sorted(deps - used):
            problems.append(f"{name}: declares {m} but never imports it")
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"architecture: {len(targets)} targets, table and imports agree with Package.swift")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
