"""The fleet as an operator builds, deploys and watches it (real processes, real Redis):
Celery's entry point speaks like ``producer``, the probes answer per their meaning, Flower
survives Kubernetes' service links, the README's hand-built fleet de-duplicates,
``--count`` costs what it says, and ``producer status`` finds a ``producer run``."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml

from orchestrator_bridge.cli import runfile
from orchestrator_bridge.cli.embedded import EmbeddedRedis, free_port
from producer_tasks.bloomhash import normalize
from producer_tasks.state.keys import Keys
from tests.conftest import provider_env
from tests.fakellm import FakeLLM
from tests.harness import CELERY, PRODUCER, ROOT, Processes, Terminal, clean_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture
def fleet(redis_url: str, tmp_path: Path) -> Iterator[Processes]:
    processes = Processes(
        tmp_path, {"REDIS_URL": redis_url, "PRODUCER_ID": "ops", "PRODUCER_HEALTH_DIR": str(tmp_path)}
    )
    try:
        yield processes
    finally:
        processes.stop_all()


def run(args: list[str], env: dict[str, str], timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=clean_env(**env), capture_output=True, text=True, timeout=timeout, check=False
    )


def http(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=15) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except (urllib.error.URLError, OSError):
        return 0, ""


def test_celery_says_a_bad_setting_in_one_line_and_exits_2(redis_url: str) -> None:
    for role in ("worker", "beat"):
        result = run([*CELERY, role], {"REDIS_URL": redis_url, "PRODUCER_CONCURENCY": "3"})
        assert result.returncode == 2, result.stderr[-2000:]
        assert result.stderr.strip().splitlines() == [
            "celery -A producer_tasks: unknown setting(s): PRODUCER_CONCURENCY (did you mean PRODUCER_CONCURRENCY?)"
        ]
    result = run([*CELERY, "worker"], {"REDIS_URL": redis_url, "PRODUCER_MAX_BACKLOG": "lots"})
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr[-2000:]
    assert "PRODUCER_MAX_BACKLOG" in result.stderr and "Traceback" not in result.stderr


def test_a_worker_with_nothing_to_serve_exits_unless_told_to_wait(fleet: Processes, redis_url: str) -> None:
    result = run([*CELERY, "worker", "-Q", "openai", "-P", "threads"], {"REDIS_URL": redis_url}, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("celery -A producer_tasks worker: this worker has no queue it can serve")
    assert "OPENAI_API_KEY is not set here" in last and "PRODUCER_WORKER_IDLE_OK" in last
    idle = fleet.worker("idle", "openai", extra_env={"PRODUCER_WORKER_IDLE_OK": "true"})
    wait_for(lambda: "ready." in fleet.log("idle"), timeout_s=120, what="the idle worker's start")
    assert idle.poll() is None and "not consuming queue 'openai'" in fleet.log("idle")


def healthcheck(fleet: Processes, *args: str) -> subprocess.CompletedProcess[str]:
    return run([PRODUCER, "healthcheck", *args], fleet.env)


def test_healthcheck_follows_the_worker_and_beat_heartbeats(fleet: Processes) -> None:
    assert healthcheck(fleet, "worker").returncode == 1  # nothing started yet
    worker = fleet.worker("w", "mock", concurrency=2)
    beat = fleet.beat()
    for role in ("worker", "beat"):
        wait_for(lambda r=role: healthcheck(fleet, r).returncode == 0, timeout_s=120, what=f"{role} alive")
    ok = healthcheck(fleet, "worker", "--redis")
    assert ok.returncode == 0 and ok.stdout.strip().endswith(": ok"), ok.stdout
    worker.send_signal(signal.SIGSTOP)  # a stuck worker: its heartbeat stops
    try:
        wait_for(
            lambda: healthcheck(fleet, "worker", "--max-age", "3").returncode == 1,
            timeout_s=30,
            what="the stopped worker to fail its probe",
        )
        assert "not alive (older than 3s)" in healthcheck(fleet, "worker", "--max-age", "3").stdout
    finally:
        worker.send_signal(signal.SIGCONT)
    wait_for(
        lambda: healthcheck(fleet, "worker", "--max-age", "3").returncode == 0,
        timeout_s=30,
        what="alive again",
    )
    fleet.stop(beat)  # a clean stop removes its note: not alive, and says why
    stopped = healthcheck(fleet, "beat")
    assert stopped.returncode == 1 and "no liveness file" in stopped.stdout


def test_the_bridge_probes_answer_per_their_meaning(tmp_path: Path) -> None:
    with EmbeddedRedis(unix_socket=False) as server:  # its own Redis: this test stops it
        orchestrator_port, metrics = free_port(), free_port()
        processes = Processes(
            tmp_path,
            {
                "REDIS_URL": server.url,
                "ORCHESTRATOR_ADDR": f"127.0.0.1:{orchestrator_port}",
                "PRODUCER_METRICS_PORT": str(metrics),
                "PRODUCER_RECONNECT_MAX_S": "1",
            },
        )
        base = f"http://127.0.0.1:{metrics}"
        try:
            processes.bridge()
            wait_for(lambda: http(f"{base}/healthz")[0] == 200, timeout_s=60, what="the bridge's /healthz")
            status, text = http(f"{base}/readyz")
            assert status == 503 and "not connected to the orchestrator" in text  # none yet
            listen = ("--listen", f"127.0.0.1:{orchestrator_port}", "--topic", "t", "--weight", "mock=1")
            orchestrator = processes.orchestrator("orch", *listen)
            wait_for(lambda: http(f"{base}/readyz")[0] == 200, timeout_s=60, what="ready: both fine")
            orchestrator.kill()  # the orchestrator gone
            orchestrator.wait(timeout=10)
            wait_for(
                lambda: http(f"{base}/readyz")[0] == 503, timeout_s=60, what="not ready: orchestrator gone"
            )
            assert http(f"{base}/healthz")[0] == 200  # alive all the same: nothing to restart
            processes.orchestrator("orch2", *listen)
            wait_for(lambda: http(f"{base}/readyz")[0] == 200, timeout_s=60, what="ready again")
            server.stop()  # Redis gone
            wait_for(lambda: http(f"{base}/readyz")[0] == 503, timeout_s=60, what="not ready: Redis down")
            assert "Redis does not answer" in http(f"{base}/readyz")[1]
            assert http(f"{base}/healthz")[0] == 200
        finally:
            processes.stop_all()


def test_flower_serves_with_a_kubernetes_service_link_in_its_environment(fleet: Processes) -> None:
    """The Flower container's own command (deploy/k8s/base/flower.yaml), with the variables
    Kubernetes injects for a Service named flower when service links are on."""
    manifest = next(yaml.safe_load_all((ROOT / "deploy" / "k8s" / "base" / "flower.yaml").read_text()))
    command = manifest["spec"]["template"]["spec"]["containers"][0]["command"]
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        *[f"--port={port}" if a == "--port=5555" else a for a in command],
        "--address=127.0.0.1",
    ]
    link = {
        "FLOWER_PORT": "tcp://10.0.0.1:5555",
        "FLOWER_SERVICE_HOST": "10.0.0.1",
        "FLOWER_SERVICE_PORT": "5555",
    }
    fleet.spawn("flower", argv, extra_env=link)
    wait_for(lambda: http(f"http://127.0.0.1:{port}/healthcheck") == (200, "OK"), timeout_s=90, what="Flower")
    assert "ignored Kubernetes service links: FLOWER_PORT" in fleet.log("flower")


def readme_fleet_settings() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- fleet-settings", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    return re.findall(r"^export (\w+)=", block, re.MULTILINE)


def test_the_readmes_hand_built_fleet_deduplicates(redis_url: str, tmp_path: Path) -> None:
    """Worker, beat, bridge and the reference orchestrator, by hand, with only the settings
    README lists (the mock needs no key): ≤ 2 % duplicates at the orchestrator, although the
    mock repeats itself far more than that."""
    names = readme_fleet_settings()
    assert {"REDIS_URL", "PRODUCER_ID", "ORCHESTRATOR_ADDR"} <= set(names)
    port = free_port()
    values = {
        "REDIS_URL": redis_url,
        "PRODUCER_ID": "readme",
        "ORCHESTRATOR_ADDR": f"127.0.0.1:{port}",
        "PRODUCER_METRICS_PORT": str(free_port()),
    }
    processes = Processes(tmp_path, {name: values[name] for name in names if name in values})
    batches = tmp_path / "batches.jsonl"
    try:
        orchestrator = processes.orchestrator(
            "orch", "--listen", f"127.0.0.1:{port}", "--topic", "cheeses", "--weight", "mock=1",
            "--count", "2500", "--batch-log", str(batches),
        )  # fmt: skip
        processes.worker("worker", "mock", concurrency=32)
        processes.beat()
        processes.bridge()
        orchestrator.wait(timeout=240)
        assert orchestrator.returncode == 0, processes.log("orch")[-2000:]
    finally:
        processes.stop_all()
    received = [a for line in batches.read_text().splitlines() for a in json.loads(line)["attributes"]]
    unique = {normalize(a) for a in received}  # as the orchestrator counts them
    duplicates = len(received) - len(unique)
    assert len(unique) >= 2500 and duplicates <= 0.02 * len(received), (len(received), duplicates)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    meta = client.hgetall(Keys("readme").bloom_meta)
    client.close()
    filtered = int(meta["filtered_candidates"])  # what the filter kept from the orchestrator
    assert filtered > 0.1 * len(received), (filtered, len(received))
    print(f"received {len(received)}, duplicates {duplicates}, filtered by the fleet {filtered}")


def test_run_count_starts_no_call_after_the_count_arrived(fake_llm: FakeLLM, tmp_path: Path) -> None:
    """--count 50 with --concurrency 8 against an OpenAI-compatible server at 50 ms that answers
    two names a call: no call starts after the 50th unique attribute reached the orchestrator,
    and at most the 8 in flight are answered after it."""
    fake_llm.set("openai", latency_ms=50, batch=2, vocabulary=3000)
    output = tmp_path / "unique.jsonl"
    result = subprocess.run(
        [PRODUCER, "run", "--topic", "fake", "--count", "50", "--concurrency", "8", "--batch-size", "5",
         "--output", str(output)],
        env=clean_env(**{k: v for k, v in provider_env(fake_llm).items() if k.startswith("OPENAI_")}),
        cwd=tmp_path, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    times = [json.loads(line)["time"] for line in output.read_text().splitlines()]
    assert len(times) == 50
    reached = times[-1]  # when the 50th unique attribute reached the orchestrator
    calls = [r for r in fake_llm.requests if "chat/completions" in r.path]
    started_after = [r for r in calls if r.at > reached]
    answered_after = [r for r in calls if r.done is not None and r.done > reached]
    assert calls and started_after == [], (len(calls), len(started_after))
    assert len(answered_after) <= 8, len(answered_after)
    found = re.search(r"calls in flight when the count was reached: (\d+)", result.stderr)
    assert found and int(found.group(1)) <= 8, result.stderr[-2000:]
    print(f"{len(calls)} calls; answered after the count: {len(answered_after)}; {found.group(0)}")


def test_status_in_a_second_terminal_finds_the_run(tmp_path: Path) -> None:
    """`producer run` in one tmux pane (its Redis on a private socket), `producer status` in
    another, with nothing in common but the machine: status shows the run's fleet."""
    env = clean_env(PRODUCER_MOCK_LATENCY_MS="50", PRODUCER_ID="tmux-run")
    run_pane = Terminal(f"{PRODUCER} run --topic towns --duration 120", env, tmp_path)
    try:
        wait_for(
            lambda: re.search(r"\b[1-9]\d* unique", run_pane.screen()) is not None,
            timeout_s=90,
            what="the run",
        )
        # another shell: no REDIS_URL, only the same PRODUCER_ID (several runs may share this machine)
        status_pane = Terminal(f"{PRODUCER} status", clean_env(PRODUCER_ID="tmux-run"), tmp_path, width=100)
        try:
            wait_for(lambda: "exit=" in status_pane.screen(), timeout_s=60, what="status to answer")
            shown = status_pane.screen()
            assert "exit=0" in shown, shown
            assert "reading the producer run on this machine" in shown
            assert "producer tmux-run: running, topic 'towns'" in shown
        finally:
            status_pane.close()
        run_pane.ctrl_c()
        wait_for(lambda: "exit=130" in run_pane.screen(), timeout_s=60, what="the run's end")
    finally:
        run_pane.close()
    assert "tmux-run" not in {r.producer_id for r in runfile.running()}  # removed as the run ended
    after = run([PRODUCER, "status"], {"PRODUCER_ID": "tmux-run"})  # the run's file went with it
    assert after.returncode == 1 and "cannot read producer 'tmux-run'" in after.stderr
