"""A real bridge process, the orchestrator's end of its connection, and the bridge's memory
as the kernel counts it (RSS, and its peak since a reset), for the adversarial tests."""

from __future__ import annotations

import os
import socket
import struct
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator_bridge import (
    ConnectionClosedError,
    ProducerMessage,
    ProducerStatus,
    ProducerStatusType,
    decode,
    frame,
)
from tests.harness import Processes, wait_for

MB = 1024 * 1024


def memory(pid: int, field_name: str) -> int:
    """A ``/proc/PID/status`` figure in bytes: VmRSS (now) or VmHWM (peak since the reset)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field_name}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field_name} for process {pid}")


def reset_peak(pid: int) -> None:
    """The kernel's peak RSS of ``pid`` starts again from its RSS now (clear_refs, 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


@dataclass
class Peer:
    """The orchestrator's end: a listening socket the bridge connects to, blocking I/O."""

    listener: socket.socket = field(default_factory=lambda: socket.create_server(("127.0.0.1", 0)))
    conn: socket.socket | None = None

    @property
    def port(self) -> int:
        return int(self.listener.getsockname()[1])

    def accept(self, timeout_s: float = 60) -> None:
        self.listener.settimeout(timeout_s)
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(30)

    def drop(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def send(self, payload: bytes) -> None:
        assert self.conn is not None
        self.conn.sendall(frame(payload))

    def _exactly(self, n: int) -> bytes:
        assert self.conn is not None
        chunks, left = [], n
        while left:
            chunk = self.conn.recv(min(left, 1 << 20))
            if not chunk:
                raise ConnectionClosedError("the bridge closed the connection")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def receive(self) -> tuple[ProducerMessage, int]:
        """The next message and its frame's size in bytes."""
        (length,) = struct.unpack(">I", self._exactly(4))
        return decode(self._exactly(length)), 4 + length

    def status(
        self,
        want: type | ProducerStatusType | frozenset[ProducerStatusType] | None = None,
        timeout_s: float = 30,
    ) -> ProducerStatus:
        """The next ProducerStatus (batches skipped); with ``want`` (a status, one of a set, or
        a type), the next one that matches."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            message, _ = self.receive()
            if not isinstance(message, ProducerStatus):
                continue
            status = message.status
            if isinstance(want, frozenset):
                if status in want:
                    return message
            elif want is None or status == want or (isinstance(want, type) and isinstance(status, want)):
                return message
        raise AssertionError(f"no status {want} within {timeout_s}s")

    def close(self) -> None:
        self.drop()
        self.listener.close()


@dataclass
class BridgeProcess:
    """``python -m orchestrator_bridge`` against a Redis and a Peer; its log read by line."""

    processes: Processes
    peer: Peer
    pid: int

    @classmethod
    def start(cls, log_dir: Path, redis_url: str, *, nofile: int | None = None, **env: str) -> BridgeProcess:
        peer = Peer()
        processes = Processes(
            log_dir,
            {
                "REDIS_URL": redis_url,
                "ORCHESTRATOR_ADDR": f"127.0.0.1:{peer.port}",
                "PRODUCER_RECONNECT_MAX_S": "1",
                **env,
            },
        )
        argv = [sys.executable, "-m", "orchestrator_bridge"]
        if nofile is not None:  # the file limit of the bridge alone, as `ulimit -n` sets it
            argv = ["sh", "-c", f'ulimit -n {nofile} && exec "$@"', "sh", *argv]
        process = processes.spawn("bridge", argv)
        made = cls(processes, peer, process.pid)
        peer.accept()
        return made

    def log_lines(self) -> list[str]:
        return self.processes.log("bridge").splitlines()

    def alive(self) -> bool:
        return self.processes.started[0][1].poll() is None

    def descriptors(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def wait_log(self, text: str, *, after: int = 0, timeout_s: float = 30) -> None:
        wait_for(
            lambda: any(text in line for line in self.log_lines()[after:]), timeout_s=timeout_s, what=text
        )

    def stop(self) -> None:
        self.processes.stop_all()
        self.peer.close()
