"""The installed ``producer`` command, Flower and the metrics endpoint, as a user runs them."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from base64 import b64encode
from pathlib import Path

import pytest

from orchestrator_bridge.cli.embedded import EmbeddedRedis, free_port
from producer_tasks.bloomhash import normalize
from tests.conftest import provider_env, write_providers_file
from tests.fakellm import FakeLLM
from tests.harness import PRODUCER, ROOT, Terminal, clean_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]
SUMMARY_HEADER = re.compile(r"provider +requests +failures +tokens +cost +unique +mean latency")


def processes_with(marker: str) -> list[int]:
    """PIDs whose environment carries ``marker`` (what a run started and left behind)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def temp_redis_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("producer-redis-*")}


def test_producer_run_writes_unique_attributes_and_leaves_nothing_behind(tmp_path: Path) -> None:
    marker = f"run-{uuid.uuid4().hex[:12]}"
    output = tmp_path / "unique.jsonl"
    before = temp_redis_dirs()
    result = subprocess.run(
        [PRODUCER, "run", "--topic", "x", "--count", "200", "--output", str(output)],
        env=clean_env(PRODUCER_ID=marker, PRODUCER_MOCK_LATENCY_MS="20"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "using the built-in mock provider" in result.stderr
    assert SUMMARY_HEADER.search(result.stderr)
    assert "\r" not in result.stderr and "\x1b[" not in result.stderr  # not a terminal: plain lines
    records = [json.loads(line) for line in output.read_text().splitlines()]
    keys = {normalize(r["text"]) for r in records}
    assert len(keys) == len(records) == 200  # exactly what was asked for; the rest is counted
    assert "beyond the count, not written" in result.stderr or "200 unique" in result.stderr
    assert {r["producer_id"] for r in records} == {marker}
    time.sleep(0.5)
    assert processes_with(marker) == []  # workers, beat, bridge, redis-server: all gone
    assert (
        temp_redis_dirs() - before == set()
    )  # the private socket's folder was removed (others may come and go)


def test_status_json_during_a_run_and_ctrl_c(tmp_path: Path) -> None:
    with EmbeddedRedis(unix_socket=False) as redis:
        env = clean_env(REDIS_URL=redis.url, PRODUCER_MOCK_LATENCY_MS="200", PRODUCER_ID="status-test")
        run = subprocess.Popen(
            [PRODUCER, "run", "--topic", "towns", "--duration", "120"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:

            def status() -> dict[str, object]:
                answer = subprocess.run(
                    [PRODUCER, "status", "--json"], env=env, capture_output=True, text=True, timeout=30
                )
                assert answer.returncode == 0, answer.stderr
                return dict(json.loads(answer.stdout))

            wait_for(
                lambda: status()["phase"] == "running" and status()["counters"] != {},
                timeout_s=60,
                interval_s=1,
                what="a running fleet",
            )
            seen = status()
            assert seen["topic"] == "towns" and seen["producer_id"] == "status-test"
            providers = seen["providers"]
            assert isinstance(providers, dict) and providers["mock"]["requests"] > 0
            assert seen["workers"] and seen["cycles_in_flight"] >= 0
            text = subprocess.run(
                check=False, args=[PRODUCER, "status"], env=env, capture_output=True, text=True, timeout=30
            )
            assert "producer status-test: running, topic 'towns'" in text.stdout
            run.send_signal(signal.SIGINT)  # Ctrl-C
            _, stderr = run.communicate(timeout=60)
            assert run.returncode == 130
            assert "interrupted: stopping" in stderr and "mock" in stderr
            assert status()["phase"] == "stopped"
        finally:
            if run.poll() is None:
                run.kill()
                run.wait()


def test_run_rejects_a_weight_for_a_provider_without_key(tmp_path: Path) -> None:
    result = subprocess.run(
        [PRODUCER, "run", "--topic", "x", "--count", "5", "--weight", "openai=1"],
        env=clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--weight names openai but OPENAI_API_KEY is not set" in result.stderr
    bad = subprocess.run(
        [PRODUCER, "run", "--topic", "x", "--weight", "openai"],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "is not provider=weight" in bad.stderr


def test_a_typo_in_a_setting_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [PRODUCER, "status"],
        env=clean_env(PRODUCER_CONCURENCY="4"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "PRODUCER_CONCURENCY (did you mean PRODUCER_CONCURRENCY?)" in result.stderr


def test_flower_runs_with_authentication(redis_url: str, tmp_path: Path) -> None:
    port = free_port()
    flower = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "producer_tasks",
            "flower",
            f"--port={port}",
            "--address=127.0.0.1",
        ],
        cwd=ROOT,
        env=clean_env(REDIS_URL=redis_url, FLOWER_BASIC_AUTH="admin:s3cret"),  # as the deploy files set it
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def code(auth: str | None, path: str = "/") -> int:
            request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
            if auth:
                request.add_header("Authorization", "Basic " + b64encode(auth.encode()).decode())
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    return int(answer.status)
            except urllib.error.HTTPError as exc:
                return exc.code
            except OSError:
                return 0

        wait_for(lambda: code(None, "/healthcheck") == 200, timeout_s=60, interval_s=0.5, what="flower")
        assert code("admin:s3cret") == 200
        assert code(None) == 401
        assert code("admin:wrong") == 401
    finally:
        flower.terminate()
        flower.wait(timeout=20)


def test_run_against_an_external_orchestrator(tmp_path: Path) -> None:
    port = free_port()
    output = tmp_path / "orchestrator.jsonl"
    orchestrator = subprocess.Popen(
        [
            PRODUCER,
            "orchestrator",
            "--listen",
            f"127.0.0.1:{port}",
            "--topic",
            "rivers",
            "--duration",
            "60",
            "--output",
            str(output),
        ],
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        result = subprocess.run(
            [
                PRODUCER,
                "run",
                "--orchestrator",
                f"127.0.0.1:{port}",
                "--duration",
                "10",
            ],
            env=clean_env(PRODUCER_MOCK_LATENCY_MS="20"),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert "attributes generated" in result.stderr
        records = [json.loads(line) for line in output.read_text().splitlines()]
        assert len(records) > 20  # the external orchestrator's topic was generated and delivered
    finally:
        orchestrator.terminate()
        orchestrator.wait(timeout=30)


def test_ctrl_c_in_a_terminal_stops_the_run_with_its_summary(tmp_path: Path) -> None:
    """A terminal's Ctrl-C reaches the whole foreground process group, the embedded
    redis-server included unless it has a session of its own."""
    marker = f"ctrl-c-{uuid.uuid4().hex[:12]}"
    output = tmp_path / "unique.jsonl"
    before = temp_redis_dirs()
    run = subprocess.Popen(
        [PRODUCER, "run", "--topic", "x", "--duration", "120", "--output", str(output)],
        env=clean_env(PRODUCER_ID=marker, PRODUCER_MOCK_LATENCY_MS="50"),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a shell gives a foreground job
    )
    try:
        wait_for(
            lambda: output.exists() and output.stat().st_size > 0, timeout_s=90, what="attributes written"
        )
        os.killpg(run.pid, signal.SIGINT)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 130, stderr[-2000:]
    assert "interrupted: stopping" in stderr
    assert SUMMARY_HEADER.search(stderr)  # the summary
    assert "Traceback" not in stderr and "connecting to" not in stderr
    time.sleep(0.5)
    assert processes_with(marker) == []
    assert temp_redis_dirs() - before == set()  # no folder of this run is left (others may come and go)


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["status"], {"REDIS_URL": "notaurl"}, "is not a Redis URL"),
        (["run", "--topic", "x", "--count", "5"], {"REDIS_URL": "notaurl"}, "is not a Redis URL"),
        (["run", "--topic", "x", "--output", "/nonexistent/dir/x.jsonl"], {}, "cannot write"),
        (["--log-level", "bogus", "status"], {}, "is not one of DEBUG"),
        (["run", "--topic", "x", "--temperature", "-5"], {}, "between 0 and 2"),
        (["run", "--topic", "x", "--weight", "mock=-1"], {}, "a weight is a number of 0 or more"),
        (["run", "--topic", "x", "--count", "5", "--weight", "mock=0"], {}, "every --weight is 0"),
    ],
)
def test_a_bad_input_is_a_one_line_error(args: list[str], env: dict[str, str], says: str) -> None:
    result = subprocess.run(
        [PRODUCER, *args], env=clean_env(**env), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len([line for line in lines if not line.startswith(("usage:", " "))]) == 1  # after the usage


def test_a_run_that_cannot_progress_ends_within_30_s_saying_why(tmp_path: Path, fake_llm: FakeLLM) -> None:
    """Each case runs at once, in its own embedded Redis; and --duration without an
    orchestrator ends. (How soon is set by ``UNREACHABLE_AFTER_S`` and ``UNHEALTHY_FOR_S``
    from the moment the workers registered; not timed here, the machine may be slow.)"""
    fake_llm.set("openai", mode="status", status=400)  # e.g. a wrong OPENAI_MODEL
    cases = {
        "rejected": (["--topic", "x", "--max-tokens", "100000"], {}, "the producer rejected the topic"),
        "unreachable": (
            ["--orchestrator", "127.0.0.1:1", "--duration", "120"],
            {},
            "the bridge could not reach",
        ),
        "unhealthy": (
            ["--topic", "x", "--weight", "openai=1", "--duration", "120"],
            provider_env(fake_llm),
            "every provider in use is unhealthy (openai:",
        ),
        "duration": (["--topic", "x", "--duration", "5"], {}, ""),
    }
    runs = {
        name: subprocess.Popen(
            [PRODUCER, "run", *args],
            env=clean_env(**env),
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (args, env, _) in cases.items()
    }
    try:
        for name, run in runs.items():
            _, stderr = run.communicate(timeout=120)
            _, _, says = cases[name]
            if name == "duration":
                assert run.returncode == 0, stderr[-2000:]
            else:
                assert run.returncode == 1, (name, stderr[-2000:])
                assert f"no progress: {says}" in stderr, (name, stderr[-2000:])
    finally:
        for run in runs.values():
            if run.poll() is None:
                run.kill()
                run.wait()


def test_weights_hold_from_the_first_cycle_of_a_short_run(tmp_path: Path, fake_llm: FakeLLM) -> None:
    """The topic starts once every worker registered, so the first provider up does not
    take every lane."""
    fake_llm.set("openai", latency_ms=40, vocabulary=10_000_000)
    fake_llm.set("anthropic", latency_ms=40, vocabulary=10_000_000)
    result = subprocess.run(
        [
            PRODUCER,
            "run",
            "--topic",
            "x",
            "--count",
            "400",
            "--batch-size",
            "4",
            "--weight",
            "openai=2",
            "--weight",
            "anthropic=1",
        ],
        env=clean_env(**provider_env(fake_llm)),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    calls = [r.api for r in sorted(fake_llm.requests, key=lambda r: r.at) if "/models" not in r.path]
    assert len(calls) >= 100
    for window in (calls[:30], calls):  # the first cycles too, not only on average
        share = window.count("openai") / len(window)
        assert 0.4 < share < 0.93, (share, window[:30])


def test_ctrl_c_in_a_real_terminal_shows_the_summary_on_screen(tmp_path: Path) -> None:
    """As a person does it: `producer run` in an 80-column terminal (tmux), Ctrl-C typed,
    the screen read back."""
    env = clean_env(PRODUCER_MOCK_LATENCY_MS="50")
    terminal = Terminal(f"{PRODUCER} run --topic x --duration 120", env, tmp_path)
    try:
        wait_for(  # attributes are arriving: Ctrl-C mid-run
            lambda: re.search(r"\b[1-9]\d* unique", terminal.screen()) is not None,
            timeout_s=90,
            what="the live line",
        )
        live = [line for line in terminal.screen().splitlines() if "unique" in line]
        assert len(live) == 1 and len(live[0]) < 80  # one live line that never wraps
        terminal.ctrl_c()
        wait_for(lambda: "exit=130" in terminal.screen(), timeout_s=60, what="the run's end")
        shown = terminal.screen()
        assert SUMMARY_HEADER.search(shown) and "interrupted: stopping" in shown and "Traceback" not in shown
    finally:
        terminal.close()


def test_status_watch_redraws_in_place_in_a_real_terminal(tmp_path: Path) -> None:
    with EmbeddedRedis(unix_socket=False) as redis:
        env = clean_env(REDIS_URL=redis.url, PRODUCER_MOCK_LATENCY_MS="100", PRODUCER_ID="watch-test")
        run = subprocess.Popen(
            [PRODUCER, "run", "--topic", "towns", "--duration", "120"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        terminal = Terminal(f"{PRODUCER} status --watch", env, tmp_path, width=100)
        try:

            def requests_shown() -> int:
                found = re.search(r"^mock +\w+ +\S+ +\d+ +(\d+) ", terminal.screen(), re.MULTILINE)
                return int(found.group(1)) if found else 0

            wait_for(lambda: requests_shown() > 0, timeout_s=90, what="a status with requests")
            first = requests_shown()
            wait_for(lambda: requests_shown() > first, timeout_s=30, what="a redrawn status")
            shown = terminal.screen()
            assert shown.count("producer watch-test: running") == 1  # redrawn in place, not appended
            assert "Ctrl-C to stop" in shown
            terminal.ctrl_c()
            wait_for(lambda: "exit=" in terminal.screen(), timeout_s=30, what="status to exit")
            assert "exit=0" in terminal.screen() and "Traceback" not in terminal.screen()
        finally:
            terminal.close()
            run.send_signal(signal.SIGINT)
            try:
                run.wait(timeout=60)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()


def test_run_with_a_budget_stops_when_it_is_spent(tmp_path: Path) -> None:
    """A named mock provider with a price (a providers file): --budget-usd ends the run
    with its summary and cost once the budget is spent; calls in flight may add a little.
    Only input tokens are priced: the prompt's length is nearly the same every cycle, so a
    call's cost is too (the mock's answers vary in length: with output priced, one CI run's
    two calls in flight cost 3.2x the mean call, and the bound below failed)."""
    env = write_providers_file(
        tmp_path / "providers.toml",
        {"paid": {"kind": "mock", "price_input_per_mtok": 2000.0, "price_output_per_mtok": 0.0}},
    )
    result = subprocess.run(
        [
            PRODUCER,
            "run",
            "--topic",
            "cheeses",
            "--weight",
            "paid=1",
            "--duration",
            "120",
            "--concurrency",
            "2",
            "--budget-usd",
            "0.5",
            "--providers-file",
            env["PRODUCER_PROVIDERS_FILE"],
        ],
        env=clean_env(PRODUCER_MOCK_LATENCY_MS="20"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = re.search(r"budget reached: spent US\$([\d.]+) of US\$0.5", result.stderr)
    assert found, result.stderr[-2000:]
    spent = float(found.group(1))
    calls = re.search(r"^paid +(\d+) ", result.stderr, re.MULTILINE)  # the summary table's row
    assert calls, result.stderr[-2000:]
    per_call = spent / int(calls.group(1))
    # beyond the budget: at most the 2 calls in flight (prompts vary a little: 1.5x the mean)
    assert 0.5 <= spent < 0.5 + 2 * 1.5 * per_call, (spent, per_call)
    assert re.search(r"cost: US\$[\d.]+, [\d,]+ unique attributes per US\$", result.stderr)
    assert SUMMARY_HEADER.search(result.stderr) and "Traceback" not in result.stderr
