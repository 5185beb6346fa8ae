"""The lock (requirements/*.txt) and pyproject.toml agree: a change to the dependencies
changes the lock in the same commit (``make lock``), and every install checks hashes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
LOCKS = ROOT / "requirements"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(name: str) -> dict[str, Version]:
    found: dict[str, Version] = {}
    for line in (LOCKS / name).read_text().splitlines():
        match = PIN.match(line)
        if match:
            found[canonicalize_name(match.group(1))] = Version(match.group(2))
    return found


def requirements(*extras: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in extras:
        declared += project["optional-dependencies"][extra]
    return [Requirement(text) for text in declared]


def unmet(lock: str, *extras: str) -> list[str]:
    locked = pins(lock)
    environment = {**default_environment(), "python_version": "3.11", "extra": ""}
    problems = []
    for requirement in requirements(*extras):
        if requirement.marker is not None and not requirement.marker.evaluate(environment):
            continue
        version = locked.get(canonicalize_name(requirement.name))
        if version is None:
            problems.append(f"{requirement.name}: not in requirements/{lock}")
        elif not requirement.specifier.contains(version, prereleases=True):
            problems.append(f"{requirement.name}=={version} in requirements/{lock} is outside {requirement.specifier}")
    return problems


def test_the_dev_lock_satisfies_every_range_of_pyproject() -> None:
    assert unmet("dev.txt", "dev", "local") == [], "run `make lock` and commit requirements/"


def test_the_runtime_lock_satisfies_the_runtime_ranges() -> None:
    assert unmet("runtime.txt") == [], "run `make lock` and commit requirements/"


def test_every_pin_of_every_lock_carries_hashes() -> None:
    for lock in sorted(LOCKS.glob("*.txt")):
        blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.read_text())
        pinned = [block for block in blocks if PIN.match(block)]
        assert pinned, lock.name
        for block in pinned:
            assert "--hash=sha256:" in block, f"{lock.name}: {block.splitlines()[0]} has no hash"


def test_the_build_backend_is_locked_for_installs_without_build_isolation() -> None:
    backend = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    for lock in ("dev.txt", "runtime.txt"):
        locked = pins(lock)
        for text in backend:
            requirement = Requirement(text)
            assert requirement.specifier.contains(locked[canonicalize_name(requirement.name)]), (lock, text)
