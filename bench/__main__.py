"""``python -m bench [NAME ...]``: run benchmarks and update docs/benchmarks.md."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

ALL = ("codec", "fleet", "scale", "rediscost", "bridge", "bloom", "adaptive", "startup", "neardup", "novelty")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run benchmarks (each against a baseline in the same run) and write their "
        "results to docs/benchmarks.md. BENCH_AB_BASE=DIR makes `scale` an A/B against another checkout.",
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"one of: {', '.join(ALL)} (default: all)")
    names = parser.parse_args(argv).names or list(ALL)
    unknown = [name for name in names if name not in ALL]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(ALL)}")
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(name, json.dumps(module.run(), indent=1, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
