"""Checks shared by the deploy tests: commands, settings and tools named by deploy/."""

from __future__ import annotations

import importlib.util
import os
import platform
import shlex
import shutil
from pathlib import Path

import pytest

from orchestrator_bridge.cli.main import COMMANDS
from producer_tasks.settings import PROVIDERS, env_names

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
EXTRA_ENV = {"FLOWER_BASIC_AUTH", "REDIS_PASSWORD", "REDISCLI_AUTH"}  # read by Flower, Kubernetes, redis-cli


def check_command(argv: list[str]) -> str:
    """Validate one command line; return the role it runs."""
    program = Path(argv[0]).name
    if program in ("sh", "bash") and argv[1] == "-c":
        return check_command(shlex.split(argv[2].removeprefix("exec ")))
    if program == "celery":
        assert argv[1:3] == ["-A", "producer_tasks"], argv
        role = argv[3]
        assert role in ("worker", "beat", "flower"), argv
        if role == "worker":
            queues = argv[argv.index("-Q") + 1].split(",")
            assert all(q in PROVIDERS or q == "%i" for q in queues), argv
        return role
    if program in ("python", "python3"):
        assert argv[1] == "-m" and importlib.util.find_spec(argv[2]) is not None, argv
        return argv[2]
    if program == "producer":
        assert argv[1] in COMMANDS, argv
        return argv[1]
    if program == "redis-server":
        return "redis"
    raise AssertionError(f"unknown command {argv}")


def check_env_names(names: set[str]) -> None:
    unknown = names - set(env_names()) - EXTRA_ENV
    assert not unknown, f"settings that do not exist: {sorted(unknown)}"


def deploy_tool(name: str, *, installed_by_make: bool = True) -> str:
    """A deploy checker from `make deploy-tools` (or PATH). Under `make test` (which sets
    DEPLOY_TOOLS_DIR) a missing tool that `make deploy-tools` installs fails the test, except
    hadolint where its wheel does not exist (not x86_64); otherwise the test skips."""
    tools = os.environ.get("DEPLOY_TOOLS_DIR")
    found = shutil.which(name, path=tools or str(DEPLOY.parent / ".venv-tools" / "bin")) or shutil.which(name)
    if found is None:
        no_wheel = name == "hadolint" and platform.machine() != "x86_64"
        if tools and installed_by_make and not no_wheel:
            pytest.fail(f"{name} is missing from {tools}: make deploy-tools did not install it")
        pytest.skip(f"{name} is not installed")
    return found
