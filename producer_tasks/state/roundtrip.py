"""One round trip of commands on one pooled connection, without redis-py's pipeline.

redis-py's ``Pipeline`` packs each argument in Python (type checks and encoding per
argument), and wraps each reply in its callbacks and bookkeeping: for the ~25 commands
and scripts of a cycle's two pipelines that was a tenth of the cycle's own CPU
(docs/benchmarks.md, scale). Here the commands are packed by hiredis in C, sent in one
write, and their replies read in order; what redis-py's pipeline guarantees is kept:
a reply that is an error comes back as its exception (``NoScriptError`` for a script the
server lost), the client's response callbacks apply to plain commands, and a connection
error or timeout disconnects and sends the whole trip again under the connection's retry
policy (as redis-py retries a pipeline: every script a cycle pipelines is idempotent by
its call id or token).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from hiredis import pack_command
from redis.exceptions import ResponseError

Command = tuple[str | bytes | int | float, ...]


def pack(commands: Sequence[Command]) -> bytes:
    """The RESP bytes of ``commands`` (text as UTF-8, numbers as their ``repr``)."""
    return b"".join([pack_command(command) for command in commands])  # type: ignore[arg-type]  # hiredis stubs a 1-tuple


def execute(client: Any, commands: Sequence[Command]) -> list[Any]:
    """Each command's reply (an error reply as its ``ResponseError``); raises redis-py's
    ``ConnectionError``/``TimeoutError`` when the trip fails after its retries."""
    callbacks = client.response_callbacks
    replies = send(client, pack(commands), len(commands))
    for i, (command, reply) in enumerate(zip(commands, replies, strict=True)):
        name = command[0]
        callback = callbacks.get(name) if isinstance(name, str) else None
        if callback is not None and not isinstance(reply, ResponseError):
            replies[i] = callback(reply)
    return replies


def send(client: Any, payload: bytes, replies: int) -> list[Any]:
    """Send pre-packed commands (``replies`` of them) and read their replies, raw."""
    pool: redis.ConnectionPool = client.connection_pool
    connection: Any = pool.get_connection()
    try:
        return list(
            connection.retry.call_with_retry(
                lambda: _trip(connection, payload, replies), lambda _error: connection.disconnect()
            )
        )
    except BaseException:  # replies may be left unread: the connection is not reusable
        connection.disconnect()
        raise
    finally:
        pool.release(connection)


def _trip(connection: Any, payload: bytes, replies: int) -> list[Any]:
    connection.send_packed_command([payload])
    read: list[Any] = []
    for _ in range(replies):
        try:
            read.append(connection.read_response())
        except ResponseError as error:
            read.append(error)
    return read
