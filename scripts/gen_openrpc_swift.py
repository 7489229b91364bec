#!/usr/bin/env python3
"""Embed schemas/openrpc.json in Sources/BerthService/OpenRPCDocument.swift (see swift_embed.py).

rpc.discover returns `openRPCDocumentText` verbatim.

Usage:
  python3 scripts/gen_openrpc_swift.py          write the Swift file
  python3 scripts/gen_openrpc_swift.py --check  exit 1 if the Swift file is out of date
"""

from __future__ import annotations

import sys

from swift_embed import ROOT, run


def main(argv: list[str]) -> int:
    return run(argv, source=ROOT / "schemas" / "openrpc.json",
               target=ROOT / "Sources" / "BerthService" / "OpenRPCDocument.swift",
               variable="openRPCDocumentText", script="gen_openrpc_swift.py")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
