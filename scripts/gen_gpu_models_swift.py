#!/usr/bin/env python3
"""Embed data/gpu-models.json in Sources/BerthCore/Placement/GPUModelTableData.swift (see swift_embed.py).

`GPUModelTable.builtIn` parses `builtInGPUModelTableJSONText`. Operators extend or override the
table through `gpu_models_file` in berthd's config, without a release.

Usage:
  python3 scripts/gen_gpu_models_swift.py          write the Swift file
  python3 scripts/gen_gpu_models_swift.py --check  exit 1 if the Swift file is out of date
"""

from __future__ import annotations

import sys
from pathlib import Path

from swift_embed import ROOT, run


def validate(doc: object, path: Path) -> None:
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("models"), dict):
        raise ValueError(f"{path}: expected {{\"version\": 1, \"models\": {{...}}}}")


def main(argv: list[str]) -> int:
    return run(argv, source=ROOT / "data" / "gpu-models.json",
               target=ROOT / "Sources" / "BerthCore" / "Placement" / "GPUModelTableData.swift",
               variable="builtInGPUModelTableJSONText", script="gen_gpu_models_swift.py", validate=validate)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
