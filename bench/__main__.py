"""``python -m bench [NAME ...]``: run benchmarks and update docs/benchmarks.md."""

from __future__ import annotations

import importlib
import json
import sys

ALL = ("codec", "fleet", "scale", "rediscost", "bridge", "bloom", "adaptive", "startup", "neardup", "novelty")


def main(argv: list[str]) -> int:
    names = argv or list(ALL)
    for name in names:
        if name not in ALL:
            print(f"unknown benchmark {name!r}; known: {', '.join(ALL)}", file=sys.stderr)
            return 2
        module = importlib.import_module(f"bench.{name}")
        print(name, json.dumps(module.run(), indent=1, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
