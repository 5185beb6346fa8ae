"""The SDKs' HTTP stream: one send per request, the kernel's timeouts on plain sockets,
TLS and gevent's sockets as httpcore has them; real sockets, real SDK clients."""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time
from collections.abc import Iterator

import gevent.socket
import httpcore2
import httpx2
import pytest
import trustme

from producer_tasks.errors import ProviderUnavailableError
from producer_tasks.generation import httpstream, providers
from producer_tasks.generation.providers import Clients, GenerationRequest
from producer_tasks.settings import load_settings
from producer_tasks.sockets import is_native, kernel_timeval
from tests.conftest import provider_env
from tests.fakellm import FakeLLM

REQUEST = GenerationRequest(prompt="List 3 cheeses", topic="cheese", temperature=0.7, max_tokens=50, batch_size=3)
PATHS = {"openai": "/chat/completions", "anthropic": "/messages"}
BODIES = {
    "openai": {"model": "m", "messages": [{"role": "user", "content": "List 3 cheeses"}]},
    "anthropic": {"model": "m", "max_tokens": 50, "messages": [{"role": "user", "content": "List 3 cheeses"}]},
}


@pytest.fixture
def pair() -> Iterator[tuple[httpstream.Stream, socket.socket]]:
    """Our stream over a real TCP connection, made as the SDKs' pools make theirs, and its peer."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        stream = httpstream.Backend().connect_tcp("127.0.0.1", listener.getsockname()[1], timeout=5)
        peer, _ = listener.accept()
    assert isinstance(stream, httpstream.Stream)
    yield stream, peer
    stream.close()
    peer.close()


@pytest.mark.parametrize("api", sorted(PATHS))
def test_the_sdk_clients_call_through_the_stream_with_the_kernels_timeouts(api: str, fake_llm: FakeLLM) -> None:
    clients = Clients(load_settings(provider_env(fake_llm, PRODUCER_REQUEST_TIMEOUT_S="0.5")))
    try:
        spec = clients.settings.spec(api)
        with clients.borrow(spec) as client:
            raw = client.post(PATHS[api], body=BODIES[api], cast_to=httpx2.Response)
        assert raw.status_code == 200 and raw.json()
        stream = raw.extensions["network_stream"]
        assert isinstance(stream, httpstream.Stream)
        sock = stream.get_extra_info("socket")
        assert sock.gettimeout() is None  # blocking: no poll before each send and receive
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16) == kernel_timeval(0.5)
    finally:
        clients.close()


def test_a_requests_head_and_body_leave_in_one_send_before_its_first_read(
    pair: tuple[httpstream.Stream, socket.socket],
) -> None:
    stream, peer = pair
    stream.write(b"POST / HTTP/1.1\r\n\r\n", timeout=1)
    stream.write(b'{"body": 1}', timeout=1)
    peer.setblocking(False)
    with pytest.raises(BlockingIOError):
        peer.recv(100)  # nothing sent yet
    peer.setblocking(True)
    peer.sendall(b"HTTP/1.1 200 OK\r\n")
    assert stream.read(100, timeout=1) == b"HTTP/1.1 200 OK\r\n"
    assert peer.recv(100) == b'POST / HTTP/1.1\r\n\r\n{"body": 1}'


def test_a_large_body_goes_out_as_it_is_written(pair: tuple[httpstream.Stream, socket.socket]) -> None:
    stream, peer = pair
    received = bytearray()
    size = httpstream.FLUSH_BYTES + 10

    def drain() -> None:
        while len(received) < size:
            received.extend(peer.recv(65536))

    reader = threading.Thread(target=drain)
    reader.start()
    stream.write(b"x" * size, timeout=5)
    reader.join(10)
    assert bytes(received) == b"x" * size


def test_a_silent_peer_is_a_read_timeout(pair: tuple[httpstream.Stream, socket.socket]) -> None:
    stream, _ = pair
    started = time.monotonic()
    with pytest.raises(httpcore2.ReadTimeout):
        stream.read(100, timeout=0.2)
    assert 0.15 < time.monotonic() - started < 5


def test_a_closed_peer_is_an_end_of_file_for_the_request(pair: tuple[httpstream.Stream, socket.socket]) -> None:
    stream, peer = pair
    peer.close()
    stream.write(b"GET / HTTP/1.1\r\n\r\n", timeout=1)  # its send fails (EPIPE): passed over,
    assert stream.read(100, timeout=1) == b""  # as httpcore does, for the read: "server disconnected"


def _one_shot_server(answer: bytes) -> tuple[socket.socket, threading.Thread]:
    """A TCP server reading one request, sending ``answer`` and closing the connection."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener, thread


@pytest.mark.parametrize(
    "answer",
    [b"", b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n{\"choices\": [", b"garbage\r\n\r\n"],
    ids=["closed without an answer", "closed mid-body", "not http"],
)
def test_a_dropped_or_garbled_connection_is_a_provider_that_is_unavailable(answer: bytes) -> None:
    listener, thread = _one_shot_server(answer)
    port = listener.getsockname()[1]
    env = {"OPENAI_API_KEY": "k", "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "PRODUCER_REQUEST_TIMEOUT_S": "5"}
    clients = Clients(load_settings(env))
    try:
        with pytest.raises(ProviderUnavailableError):
            providers.generate(clients, "openai", REQUEST)
    finally:
        clients.close()
        thread.join(5)
        listener.close()


def test_tls_keeps_pythons_timeouts_and_sends_one_write() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    seen: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            seen.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    client = httpx2.Client(transport=httpstream.Transport(client_context), timeout=3)
    try:
        for n in range(2):  # the second on the kept-alive connection
            response = client.post(f"https://127.0.0.1:{server.server_port}/", content=b"body %d" % n)
            assert response.status_code == 200 and response.content == b"ok"
        stream = response.extensions["network_stream"]
        assert isinstance(stream, httpstream.Stream)
        sock = stream.get_extra_info("socket")
        # Python keeps its timeout (the read timeout, cut to what is left of the call's deadline)
        assert isinstance(sock, ssl.SSLSocket) and 2.5 < (sock.gettimeout() or 0) <= 3
        assert seen == [b"body 0", b"body 1"]
    finally:
        client.close()
        server.shutdown()
        server.server_close()


def test_only_plain_sockets_are_native() -> None:
    plain = socket.socket()
    cooperative = gevent.socket.socket()
    context = ssl.create_default_context()
    tls = context.wrap_socket(socket.socket(), do_handshake_on_connect=False, server_hostname="x")
    try:
        assert is_native(plain)
        assert not is_native(cooperative)  # gevent waits in its hub: it keeps its own timeouts
        assert not is_native(tls)
    finally:
        for sock in (plain, cooperative, tls):
            sock.close()


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (httpcore2.ConnectTimeout("t"), httpx2.ConnectTimeout),
        (httpcore2.ReadTimeout("t"), httpx2.ReadTimeout),
        (httpcore2.PoolTimeout("t"), httpx2.PoolTimeout),
        (httpcore2.ConnectError("refused"), httpx2.ConnectError),
        (httpcore2.ReadError("reset"), httpx2.ReadError),
        (httpcore2.RemoteProtocolError("garbled"), httpx2.RemoteProtocolError),
    ],
)
def test_httpcores_errors_reach_the_sdk_as_httpxs_own(failure: Exception, expected: type[Exception]) -> None:
    """The SDKs tell timeouts from connection errors by httpx's classes: our transport maps
    httpcore's as httpx's own transport does, the most specific class first."""

    class Failing(httpcore2.SyncBackend):
        def connect_tcp(self, *args: object, **kwargs: object) -> httpcore2.NetworkStream:
            raise failure

    transport = httpstream.Transport(ssl.create_default_context(), network_backend=Failing())
    with httpx2.Client(transport=transport) as client, pytest.raises(expected) as raised:
        client.get("http://127.0.0.1:9/")
    assert type(raised.value) is expected and raised.value.__cause__ is failure


def test_a_client_left_open_at_interpreter_exit_closes_without_a_traceback() -> None:
    """A warm shutdown leaves the SDK clients to their finaliser, which may run after the
    interpreter has emptied our module's globals (it printed one traceback a client:
    ``'NoneType' object has no attribute 'suppress'``). Emptied here as teardown does."""
    import subprocess
    import sys

    code = (
        "import openai, ssl\n"
        "from producer_tasks.generation import httpstream\n"
        "clients = [httpstream.sdk_http_client(openai, ssl.create_default_context()) for _ in range(4)]\n"
        "for name in list(vars(httpstream)):\n"
        "    if not name.startswith('__'): setattr(httpstream, name, None)\n"
        "del clients\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "Exception ignored" not in done.stderr and "Traceback" not in done.stderr, done.stderr
