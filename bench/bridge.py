"""Batches per second from the Redis stream to a socket, against raw writes (upper bound).

The stream is pre-filled with 20-attribute batches; the bridge drains it into a sink
process that reads and discards. Upper bound: the same frames, pre-encoded, written to
the same kind of sink with ``sendall``.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time

from bench.report import write_section
from orchestrator_bridge.bridge import Bridge
from orchestrator_bridge.cli.embedded import EmbeddedRedis, free_port
from orchestrator_bridge.convert import batch_message
from orchestrator_bridge.protocol import codec
from orchestrator_bridge.protocol.framing import frame
from producer_tasks.records import BatchRecord, MetadataRecord, ProviderStatus
from producer_tasks.settings import load_settings
from producer_tasks.state import control, stream
from producer_tasks.state.fleet import Fleet

BATCHES = 5000
SINK = """
import socket, sys
server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1]))); server.listen(8)
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    while conn.recv(1 << 20):
        pass
    conn.close()
"""


class Recorder:
    def send(self, *, provider: str, epoch: int, lane: int, token: str) -> None:
        pass


def make_batch(epoch: int, n: int) -> BatchRecord:
    return BatchRecord(
        epoch=epoch,
        topic="cheese",
        attributes=[f"Attribute {n}-{i} de Comté" for i in range(20)],
        provider_used="mock",
        metadata=MetadataRecord(
            response_time_ms=120,
            prompt_tokens=50,
            completion_tokens=200,
            provider_status=ProviderStatus.HEALTHY,
        ),
    )


def start_sink(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", SINK, str(port)], stdout=subprocess.PIPE)
    assert process.stdout is not None
    process.stdout.readline()
    return process


def raw_rate(port: int, frames: list[bytes]) -> float:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.perf_counter()
        for data in frames:
            sock.sendall(data)
        return len(frames) / (time.perf_counter() - started)


async def bridge_rate(fleet: Fleet, settings: object, epoch: int) -> float:
    bridge = Bridge(settings, fleet, Recorder())  # type: ignore[arg-type]
    task = asyncio.create_task(bridge.run())
    started = time.perf_counter()
    while await asyncio.to_thread(fleet.backlog) > 0:
        await asyncio.sleep(0.02)
    elapsed = time.perf_counter() - started
    bridge.stopping.set()
    await asyncio.wait_for(task, timeout=10)
    return bridge.counters.batches_forwarded / elapsed


def run() -> dict[str, float]:
    port = free_port()
    sink = start_sink(port)
    try:
        with EmbeddedRedis(unix_socket=False) as redis:
            settings = load_settings({"REDIS_URL": redis.url, "ORCHESTRATOR_ADDR": f"127.0.0.1:{port}"})
            fleet = Fleet.from_settings(settings)
            control.start_topic(
                fleet,
                settings,
                topic="cheese",
                prompt="p",
                weights={"mock": 1.0},
                temperature=0.7,
                max_tokens=100,
                batch_size=20,
            )
            epoch = fleet.read_state().epoch
            batches = [make_batch(epoch, n) for n in range(BATCHES)]
            for start in range(0, BATCHES, 500):
                fleet.run(*(stream.append_call(fleet, b) for b in batches[start : start + 500]))
            ours = asyncio.run(bridge_rate(fleet, settings, epoch))
            frames = [frame(codec.encode(batch_message("producer-1", b))) for b in batches]
            upper = raw_rate(port, frames)
    finally:
        sink.terminate()
        sink.wait(timeout=10)
    write_section(
        "bridge",
        f"""
## Bridge: batches per second from the stream to a socket (20 attributes each)

{BATCHES} batches pre-filled in the Redis stream; the bridge reads them through its consumer
group, decodes the JSON records, encodes AttributeBatch frames, writes them to a sink
process and acknowledges (and deletes) each entry after the write. Upper bound: the same
frames pre-encoded and written with `sendall` to the same sink.

| | batches/s |
| --- | ---: |
| raw socket writes of pre-encoded frames (upper bound) | {upper:,.0f} |
| bridge (ours) | {ours:,.0f} |

**Ours / upper bound = {ours / upper:.3f}**. At {ours:,.0f} batches/s (≈ {ours * 20:,.0f} attributes/s) one
bridge outpaces any realistic fleet of LLM calls by orders of magnitude.
""",
    )
    return {"ours": ours, "upper_bound": upper, "ratio": ours / upper}


if __name__ == "__main__":
    print(run())
