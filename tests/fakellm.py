"""A local fake of the OpenAI and Anthropic HTTP APIs, for tests and benchmarks.

The official SDKs talk to it over real HTTP (keep-alive, HTTP/1.1). What it answers is
scripted per API ("openai" or "anthropic"): success with usage, latency, a status code
with Retry-After, HTML with status 200, garbage JSON, an empty body, or a hang. Every
request is recorded (time, API, path) so tests count what reached the "provider".
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from producer_tasks.generation import mock
from producer_tasks.generation.prompt import AVOID_HEADER, AVOID_SEPARATOR, FACETS_MARK, focus_of

API_KEY = "sk-test-fake-0123456789"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # many SDK connections open at once


@dataclass
class Behaviour:
    mode: str = "ok"  # ok | status | html | garbage | empty | raw | hang | no_choices | huge | drip
    status: int = 500
    retry_after: str | None = None
    latency_ms: float = 0.0
    hang_s: float = 60.0
    size: int = 0  # huge: the body's bytes, streamed (the fake never holds them)
    drip_s: float = 1.0  # drip: seconds between the bytes of a normal answer
    vocabulary: int = 1000
    topic: str = "fake"
    count: int | None = None  # requests this behaviour applies to; then back to "ok"
    seconds: float | None = None  # how long it applies (from the first request); then "ok"
    first_at: float | None = None
    text: str | None = None  # a fixed answer instead of drawn items
    batch: int = 10  # items per answer
    skew: float = mock.SKEW  # higher: the model's favourites come up more often
    obey: float = 0.0  # chance that an item the prompt lists as known is drawn again instead
    usage_from_text: bool = False  # usage counts the prompt and the answer (4 characters a token)
    # the model knows this many facets of the topic (equal blocks of its vocabulary): lists them
    # when asked, writes one facet's names when a prompt focuses on it, and unprompted draws a
    # facet first, the popular ones far more often (P ∝ 1/(k+1)²), then a name within it
    facets: int = 0
    follow_focus: bool = True  # False: a focus line is read as if it were not there
    # with a "do not repeat" list in the prompt, the model leaves its favourites for the less
    # known names (a flatter draw, this skew), as a model that takes the list as "these are
    # known, go further" does; None: the list changes only the listed names (``obey``)
    listed_skew: float | None = None


@dataclass
class Request:
    at: float
    api: str
    path: str
    body: dict[str, Any]
    peer: int = 0  # the client's port: one per connection
    done: float | None = None  # when its answer was written (None: not yet, or never)


@dataclass
class FakeLLM:
    behaviours: dict[str, Behaviour] = field(
        default_factory=lambda: {"openai": Behaviour(), "anthropic": Behaviour()}
    )
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    closing: threading.Event = field(default_factory=threading.Event)
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    server: ThreadingHTTPServer | None = None
    require_key: bool = True  # False: a local server that takes any key (or none)
    active: int = 0  # requests being answered now
    peak: int = 0  # the most answered at once

    # --- control ----------------------------------------------------------------------
    def set(self, api: str, **changes: Any) -> None:
        with self.lock:
            self.behaviours[api] = Behaviour(**changes)

    def count(self, api: str | None = None, *, kind: str | None = None) -> int:
        with self.lock:
            return sum(
                1 for r in self.requests if (api is None or r.api == api) and (kind is None or kind in r.path)
            )

    def times(self, api: str) -> list[float]:
        with self.lock:
            return [r.at for r in self.requests if r.api == api]

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeLLM:
        fake = self

        class Handler(_Handler):
            owner = fake

        self.server = _Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.closing.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    # --- answering --------------------------------------------------------------------
    def take(self, api: str, path: str, body: dict[str, Any], peer: int = 0) -> tuple[Behaviour, Request]:
        with self.lock:
            request = Request(time.time(), api, path, body, peer)
            self.requests.append(request)
            behaviour = self.behaviours[api]
            if behaviour.seconds is not None:
                now = time.time()
                behaviour.first_at = behaviour.first_at or now
                if now - behaviour.first_at > behaviour.seconds:
                    behaviour = self.behaviours[api] = Behaviour(
                        latency_ms=behaviour.latency_ms,
                        vocabulary=behaviour.vocabulary,
                        topic=behaviour.topic,
                    )
            if behaviour.count is not None:
                behaviour.count -= 1
                if behaviour.count <= 0:
                    self.behaviours[api] = Behaviour(
                        latency_ms=behaviour.latency_ms,
                        vocabulary=behaviour.vocabulary,
                        topic=behaviour.topic,
                    )
            return behaviour, request

    def content(self, behaviour: Behaviour, batch: int, prompt: str = "") -> str:
        if behaviour.text is not None:
            return behaviour.text
        avoid: set[str] = set()
        skew = behaviour.skew
        if (behaviour.obey or behaviour.listed_skew) and AVOID_HEADER in prompt:  # it follows the list
            listed = prompt[prompt.index(AVOID_HEADER) + len(AVOID_HEADER) :].split("\n", 1)[0]
            avoid = {item.strip() for item in listed.split(AVOID_SEPARATOR.strip())}
            skew = behaviour.listed_skew or skew
        facets = behaviour.facets
        if facets and FACETS_MARK in prompt:
            names = mock.facet_names(behaviour.topic, facets)
            return "Here are the parts of it:\n" + "\n".join(f"- {name}" for name in names)
        facet = mock.focused_facet(prompt, behaviour.topic, facets) if behaviour.follow_focus else None
        # unprompted: mostly the popular facets (P ∝ 1/(k+1)²)
        unprompted = facets and (focus_of(prompt) is None or not behaviour.follow_focus)
        flat = skew != behaviour.skew  # a list made it leave its favourite facets too
        popularity = [1.0 if flat else (i + 1) ** -2 for i in range(facets)]
        items: list[str] = []
        with self.lock:
            for _ in range(batch * 200):
                if unprompted:
                    facet = (self.rng.choices(range(facets), weights=popularity)[0], facets)
                (item,) = mock.draw(
                    behaviour.topic,
                    1,
                    vocabulary=behaviour.vocabulary,
                    rng=self.rng,
                    skew=skew,
                    facet=facet,
                )
                if item in avoid and self.rng.random() < behaviour.obey:
                    continue
                items.append(item)
                if len(items) == batch:
                    break
        return "Here you go:\n" + "\n".join(f"{i}. {t}" for i, t in enumerate(items, 1))


class _Handler(BaseHTTPRequestHandler):
    owner: FakeLLM
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        # headers and body are two writes: without this, Nagle holds the body until the client's
        # delayed ACK of the headers (40 ms a request on Linux), which no real server adds
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _api(self) -> str:
        if self.path.endswith("/chat/completions"):
            return "openai"
        if self.path.endswith("/messages"):
            return "anthropic"
        return "anthropic" if self.headers.get("anthropic-version") else "openai"

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/_stats":  # request counts, for benchmarks that run us as a process
            with self.owner.lock:
                counts: dict[str, int] = {}
                for request in self.owner.requests:
                    counts[request.api] = counts.get(request.api, 0) + 1
                counts["active"] = self.owner.active
            self._send(200, json.dumps(counts).encode())
            return
        self._handle({})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        self._handle(body)

    def _authorised(self) -> bool:
        return (
            not self.owner.require_key
            or self.headers.get("Authorization") == f"Bearer {API_KEY}"
            or self.headers.get("x-api-key") == API_KEY
        )

    def _handle(self, body: dict[str, Any]) -> None:
        owner = self.owner
        api = self._api()
        # a model with a behaviour of its own (named providers on one server): counted as it
        key = str(body["model"]) if body.get("model") in owner.behaviours else api
        behaviour, request = owner.take(key, self.path, body, int(self.client_address[1]))
        with owner.lock:
            owner.active += 1
            owner.peak = max(owner.peak, owner.active)
        try:
            self._answer(api, body, behaviour)
        finally:
            with owner.lock:
                owner.active -= 1
                request.done = time.time()

    def _answer(self, api: str, body: dict[str, Any], behaviour: Behaviour) -> None:
        owner = self.owner
        if behaviour.latency_ms:
            owner.closing.wait(behaviour.latency_ms / 1000)
        if not self._authorised():
            self._send(
                401,
                json.dumps(
                    {"error": {"message": "invalid api key", "type": "authentication_error"}}
                ).encode(),
            )
            return
        mode = behaviour.mode
        if mode == "hang":
            owner.closing.wait(behaviour.hang_s)
            self.close_connection = True
            return
        if mode == "status":
            headers = {"Retry-After": behaviour.retry_after} if behaviour.retry_after else {}
            error = {"type": "error", "error": {"type": "api_error", "message": f"fake {behaviour.status}"}}
            self._send(behaviour.status, json.dumps(error).encode(), headers=headers)
            return
        if mode == "html":
            self._send(200, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html")
            return
        if mode == "garbage":
            self._send(200, b'{"choices": [{"message": ')
            return
        if mode == "empty":
            self._send(200, b"")
            return
        if mode == "huge":  # an answer of ``size`` bytes, written 64 KiB at a time
            self._stream_body(b'{"choices": [{"message": {"content": "', behaviour.size)
            return
        if mode == "drip":  # a normal answer, one byte every ``drip_s``
            self._drip(json.dumps(self._success(api, body, behaviour)).encode(), behaviour.drip_s)
            return
        if mode == "raw":  # ``text`` is the whole JSON body
            self._send(200, (behaviour.text or "").encode())
            return
        self._send(200, json.dumps(self._success(api, body, behaviour)).encode())

    def _stream_body(self, head: bytes, size: int) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        self.wfile.write(head)
        chunk, left = b"x" * 65536, size - len(head)
        try:
            while left > 0 and not self.owner.closing.is_set():
                self.wfile.write(chunk[:left])
                left -= min(left, len(chunk))
        except OSError:  # the client gave up: what it should do
            self.close_connection = True

    def _drip(self, payload: bytes, every_s: float) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        try:
            for i in range(len(payload)):
                self.wfile.write(payload[i : i + 1])
                self.wfile.flush()
                if self.owner.closing.wait(every_s):
                    return
        except OSError:
            self.close_connection = True

    def _success(self, api: str, body: dict[str, Any], behaviour: Behaviour) -> dict[str, Any]:
        if "/models" in self.path:
            model = self.path.rsplit("/", 1)[-1]
            if api == "openai":
                return {"id": model, "object": "model", "created": 0, "owned_by": "fake"}
            return {"id": model, "type": "model", "display_name": model, "created_at": "2025-01-01T00:00:00Z"}
        prompt = str((body.get("messages") or [{}])[0].get("content", ""))
        text = (
            self.owner.content(behaviour, behaviour.batch, prompt) if behaviour.mode != "no_choices" else ""
        )
        model = str(body.get("model", "fake-model"))
        usage = (11, 42) if api == "openai" else (13, 40)
        if behaviour.usage_from_text:
            usage = (len(prompt) // 4 + 1, len(text) // 4 + 1)
        if api == "openai":
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": []
                if behaviour.mode == "no_choices"
                else [
                    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                ],
                "usage": {
                    "prompt_tokens": usage[0],
                    "completion_tokens": usage[1],
                    "total_tokens": sum(usage),
                },
            }
        return {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": text}] if text else [],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": usage[0], "output_tokens": usage[1]},
        }


def main() -> None:
    """Serve as a separate process (benchmarks): ``python -m tests.fakellm --port N``."""
    import argparse

    parser = argparse.ArgumentParser(description="fake OpenAI/Anthropic server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--vocabulary", type=int, default=1000)
    args = parser.parse_args()
    fake = FakeLLM()
    for api in fake.behaviours:
        fake.set(api, latency_ms=args.latency_ms, vocabulary=args.vocabulary)

    class Handler(_Handler):
        owner = fake

    server = _Server(("127.0.0.1", args.port), Handler)
    fake.server = server
    print(f"listening on {fake.url}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
