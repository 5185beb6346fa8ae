"""deploy/k8s: a kustomize base and overlays, rendered by ``kubectl kustomize`` and checked
against the Kubernetes API's schemas (kubernetes-validate, strict), KEDA's and
prometheus-operator's CRDs (tests/data), and the rules an operator expects: probes and
resources for every container, no service links, no replicas where KEDA owns them, Redis
with a password, a volume and a NetworkPolicy, the metrics port open only beside one."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from producer_tasks.settings import PROVIDERS
from tests.deploycheck import DEPLOY, check_command, check_env_names, deploy_tool

K8S = DEPLOY / "k8s"
DATA = Path(__file__).resolve().parents[1] / "data"
OVERLAYS = ("base", "overlays/keda", "overlays/monitoring", "overlays/production")
CRD_SCHEMAS = {
    "ScaledObject": "keda-scaledobject.schema.json",
    "ServiceMonitor": "servicemonitor.schema.json",
    "PrometheusRule": "prometheusrule.schema.json",
}


def render(overlay: str) -> list[dict[str, Any]]:
    """What ``kubectl apply -k deploy/k8s/<overlay>`` would send."""
    kubectl = deploy_tool("kubectl", installed_by_make=False)
    result = subprocess.run(
        [kubectl, "kustomize", str(K8S / overlay)], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    return [d for d in yaml.safe_load_all(result.stdout) if d]


def validate(documents: list[dict[str, Any]]) -> list[str]:
    version = kubernetes_validate.latest_version()
    checked = []
    for doc in documents:
        schema = CRD_SCHEMAS.get(doc["kind"])
        if schema is not None:
            jsonschema.validate(doc, json.loads((DATA / schema).read_text()))
        else:
            kubernetes_validate.validate(doc, version, strict=True)
        checked.append(f"{doc['kind']}/{doc['metadata']['name']}")
    return checked


def pods(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == "Deployment"}


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


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlay_renders_and_passes_the_schemas(overlay: str) -> None:
    documents = render(overlay)
    checked = validate(documents)
    assert "Deployment/bridge" in checked and "NetworkPolicy/redis-from-the-fleet" in checked
    assert all(d["metadata"].get("namespace") == "producer" for d in documents if d["kind"] != "Namespace")
    assert not [d for d in documents if d["kind"] == "Secret"]  # created by kubectl, never overwritten
    kinds = {d["kind"] for d in documents}
    assert ("ScaledObject" in kinds) == (overlay in ("overlays/keda", "overlays/production"))
    assert ({"ServiceMonitor", "PrometheusRule"} <= kinds) == (
        overlay in ("overlays/monitoring", "overlays/production")
    )


def test_the_schemas_catch_a_typo() -> None:
    documents = render("overlays/production")
    for kind in ("Deployment", "ScaledObject", "ServiceMonitor", "PrometheusRule"):
        bad = json.loads(json.dumps(next(d for d in documents if d["kind"] == kind)))
        bad["spec"]["replicaz"] = 2
        with pytest.raises((kubernetes_validate.ValidationError, jsonschema.ValidationError)):
            validate([bad])


def test_every_container_has_probes_resources_and_no_service_links() -> None:
    documents = render("overlays/production")
    for name, deployment in pods(documents).items():
        spec = deployment["spec"]["template"]["spec"]
        assert spec["enableServiceLinks"] is False, name  # a Service "flower" would be FLOWER_PORT=tcp://…
        (container,) = spec["containers"]
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"], name
        assert "livenessProbe" in container, name
        if name != "beat":  # beat serves nothing: alive is all it can be
            assert "readinessProbe" in container, name
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            command = container.get(probe, {}).get("exec", {}).get("command")
            if command and command[0] == "producer":
                assert check_command(command) == "healthcheck" and command[2] in ("worker", "beat"), name
    bridge = pods(documents)["bridge"]["spec"]["template"]["spec"]["containers"][0]
    assert bridge["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert bridge["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_keda_owns_the_worker_replicas() -> None:
    documents = render("overlays/production")
    deployments = pods(documents)
    scaled = [d for d in documents if d["kind"] == "ScaledObject"]
    targets = {s["spec"]["scaleTargetRef"]["name"] for s in scaled}
    assert targets == {f"worker-{p}" for p in PROVIDERS}
    for target in targets:
        assert "replicas" not in deployments[target]["spec"], target
    services = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Service"}
    metrics_port = services["bridge-metrics"]["spec"]["ports"][0]["port"]
    for s in scaled:
        check_demand_trigger(s, deployments[s["spec"]["scaleTargetRef"]["name"]], metrics_port)
    assert deployments["bridge"]["spec"]["replicas"] == 1 and deployments["beat"]["spec"]["replicas"] >= 1


def test_redis_has_a_password_a_volume_and_admits_only_the_fleet() -> None:
    documents = render("base")
    redis = pods(documents)["redis"]["spec"]["template"]["spec"]
    (container,) = redis["containers"]
    assert "--requirepass" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "redis-auth"
    (volume,) = redis["volumes"]
    claims = {d["metadata"]["name"] for d in documents if d["kind"] == "PersistentVolumeClaim"}
    assert volume["persistentVolumeClaim"]["claimName"] in claims
    policies = {d["metadata"]["name"]: d["spec"] for d in documents if d["kind"] == "NetworkPolicy"}
    (rule,) = policies["redis-from-the-fleet"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app": "producer"}}}]
    for name, deployment in pods(documents).items():  # every fleet pod is labelled so, and has the URL
        spec = deployment["spec"]["template"]
        if name != "redis":
            assert spec["metadata"]["labels"]["app"] == "producer", name
            urls = [
                e.get("value", "") for e in spec["spec"]["containers"][0]["env"] if e["name"] == "REDIS_URL"
            ]
            assert urls == ["redis://:$(REDIS_PASSWORD)@redis:6379/0"], name


def test_the_metrics_port_is_open_only_beside_a_network_policy() -> None:
    documents = render("base")
    (config,) = [
        d for d in documents if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "producer-config"
    ]
    check_env_names(set(config["data"]))
    assert config["data"]["PRODUCER_METRICS_HOST"] == "0.0.0.0"
    policies = {d["metadata"]["name"]: d["spec"] for d in documents if d["kind"] == "NetworkPolicy"}
    bridge = policies["bridge-metrics-from-monitoring"]
    assert bridge["podSelector"]["matchLabels"] == {"app": "producer", "role": "bridge"}
    (rule,) = bridge["ingress"]
    assert rule["ports"] == [{"port": int(config["data"]["PRODUCER_METRICS_PORT"]), "protocol": "TCP"}]


def test_named_provider_template_makes_valid_manifests() -> None:
    """The template's own sed line, for a provider of a providers file, gives a worker that
    serves that queue and a ScaledObject on that list, both valid by the same schemas."""
    template = (K8S / "named-provider.yaml.template").read_text()
    assert "sed 's/PROVIDER_NAME/llama-a/g'" in template
    deployment, scaled = [d for d in yaml.safe_load_all(template.replace("PROVIDER_NAME", "llama-a")) if d]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    argv = container["command"]
    assert argv[argv.index("-Q") + 1] == "llama-a" and deployment["metadata"]["name"] == "worker-llama-a"
    assert "replicas" not in deployment["spec"] and "livenessProbe" in container
    check_demand_trigger(scaled, deployment, 9108)
    validate([deployment, scaled])
