"""Which packages moved between two requirement files (``make test-latest``): the lock
against the newest versions the ranges allow.

    python scripts/lockdiff.py requirements/dev.txt .venv-latest.txt
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def pins(path: Path) -> dict[str, str]:
    """``name -> version`` of every ``name==version`` line (names normalised as PEP 503 does)."""
    found: dict[str, str] = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return found


def moved(locked: dict[str, str], latest: dict[str, str]) -> list[str]:
    lines = []
    for name in sorted(locked.keys() | latest.keys()):
        old, new = locked.get(name), latest.get(name)
        if old != new:
            lines.append(f"  {name}: {old or '(not in the lock)'} -> {new or '(gone)'}")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    lines = moved(pins(Path(argv[1])), pins(Path(argv[2])))
    if lines:
        print(f"{len(lines)} package(s) moved from {argv[1]} to {argv[2]}:")
        print("\n".join(lines))
    else:
        print(f"nothing moved: {argv[2]} resolves to the versions of {argv[1]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
