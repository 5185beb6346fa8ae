"""Sockets whose timeouts the kernel keeps: what the Redis and HTTP connections share.

A socket with a Python timeout polls before every send and receive, and each of those
system calls lets go of the GIL: in a worker with hundreds of threads every such hand-off
costs CPU. A blocking socket with ``SO_RCVTIMEO`` / ``SO_SNDTIMEO`` makes one system call
where that made two; a send or receive that runs out of time then fails with
``BlockingIOError`` (``EAGAIN``) instead of ``TimeoutError``.
"""

from __future__ import annotations

import socket
import struct


def is_native(sock: object) -> bool:
    """A plain ``socket.socket``: not TLS (a TLS read may take several reads, which Python
    drives), not gevent's (its sockets wait in its hub, which a blocking call would stall)."""
    return type(sock).__module__ == "socket"  # gevent's patched ``socket.socket`` is its own class


def kernel_timeval(seconds: float | None) -> bytes:
    """``seconds`` as the ``struct timeval`` ``SO_RCVTIMEO`` takes (``None``: no timeout)."""
    seconds = seconds or 0.0
    whole = int(seconds)
    return struct.pack("ll", whole, int((seconds - whole) * 1_000_000))


def use_kernel_timeouts(sock: socket.socket, seconds: float) -> None:
    """``sock`` blocking, the kernel failing a send or receive after ``seconds``."""
    timeval = kernel_timeval(seconds)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    sock.settimeout(None)
