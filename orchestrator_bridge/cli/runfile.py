"""The runtime file of a ``producer run``: how ``producer status`` in another shell finds it.

``producer run`` without ``REDIS_URL`` keeps its Redis on a private Unix socket; while it runs
it leaves a small file (mode 0600, in ``$XDG_RUNTIME_DIR`` or the temporary folder, named
after the user and the producer id) saying where, and removes it when it ends. A file whose
process is gone (kill -9) is ignored and removed by the next reader.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunFile:
    pid: int
    producer_id: str
    redis_url: str
    path: Path


def runtime_dir() -> Path:
    return Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())


def _name(producer_id: str) -> str:
    return f"producer-run-{os.getuid()}-{producer_id}.json"


@contextlib.contextmanager
def announced(producer_id: str, redis_url: str) -> Iterator[Path]:
    """The run's file exists for the duration of the block."""
    path = runtime_dir() / _name(producer_id)
    body = json.dumps({"pid": os.getpid(), "producer_id": producer_id, "redis_url": redis_url})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(body)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            if json.loads(path.read_text()).get("pid") == os.getpid():  # not a later run's
                path.unlink()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running() -> list[RunFile]:
    """The runs of this user on this machine that are still alive (stale files removed)."""
    found = []
    for path in sorted(runtime_dir().glob(_name("*"))):
        try:
            body = json.loads(path.read_text())
            record = RunFile(int(body["pid"]), str(body["producer_id"]), str(body["redis_url"]), path)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if _alive(record.pid):
            found.append(record)
        else:
            with contextlib.suppress(OSError):
                path.unlink()
    return found
