"""A loopback HTTP server that speaks enough of the Gemini REST API for tests."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CASES_DIR",
    "CASE_STATUS",
    "DEFAULT_MODEL_VERSION",
    "GeminiServer",
    "RecordedRequest",
    "Reply",
]

CASES_DIR = Path(__file__).parent / "data" / "gemini_cases"
DEFAULT_MODEL_VERSION = "gemini-2.5-flash-001"

# HTTP status of each case file, as listed in tests/data/gemini_cases/README.md.
# Files not listed here are 200 (.json) or 502 (.html).
CASE_STATUS: dict[str, int] = {
    "error-429-retry-info.json": 429,
    "error-429-no-details.json": 429,
    "error-503-overloaded.json": 503,
    "error-400-schema-too-complex.json": 400,
    "error-502.html": 502,
}

_MODEL_PATH = re.compile(
    r"^/(?:(?P<version>v\d+[a-z0-9]*)/)?models/(?P<model>[^/:]+):(?P<action>[A-Za-z]+)$"
)


def _camel(key: str) -> str:
    """Return the camelCase spelling of a snake_case key."""
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _texts(content: object) -> list[str]:
    """Return the text parts of one Content dict."""
    if not isinstance(content, dict):
        return []
    parts = content.get("parts") or []
    return [p["text"] for p in parts if isinstance(p, dict) and "text" in p]


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as the server received it."""

    method: str
    path: str
    query: str
    model: str | None
    api_version: str | None
    action: str | None
    headers: dict[str, str]
    json: Any
    received_at: float

    @property
    def api_key(self) -> str | None:
        """Return the value of the x-goog-api-key header."""
        return self.headers.get("x-goog-api-key")

    @property
    def stream(self) -> bool:
        """Return whether this is a streamGenerateContent call."""
        return self.action == "streamGenerateContent"

    def _body_get(self, name: str) -> Any:
        """Return a top-level body field given in camelCase or snake_case."""
        if not isinstance(self.json, dict):
            return None
        value = self.json.get(name)
        if value is None:
            snake = re.sub(r"([A-Z])", r"_\1", name).lower()
            value = self.json.get(snake)
        return value

    @property
    def generation_config(self) -> dict[str, Any]:
        """Return generationConfig with its top-level keys in camelCase."""
        config = self._body_get("generationConfig") or {}
        return {_camel(k): v for k, v in config.items()}

    @property
    def system_text(self) -> str:
        """Return the text of systemInstruction, parts joined by newlines."""
        return "\n".join(_texts(self._body_get("systemInstruction")))

    @property
    def prompt_text(self) -> str:
        """Return the text of every part of every content, joined by newlines."""
        contents = self._body_get("contents") or []
        return "\n".join(t for c in contents for t in _texts(c))


@dataclass(frozen=True)
class Reply:
    """One scripted HTTP response; a dict body is serialised when sent."""

    status: int = 200
    body: bytes | dict[str, Any] = b""
    content_type: str = "application/json"
    delay: float = 0.0

    @classmethod
    def success(
        cls,
        obj_or_text: Any,
        *,
        finish_reason: str = "STOP",
        usage: dict[str, int] | None = None,
        model_version: str = DEFAULT_MODEL_VERSION,
    ) -> Reply:
        """Build a 200 answer whose candidate text is json.dumps(obj) or the str."""
        text = obj_or_text if isinstance(obj_or_text, str) else json.dumps(obj_or_text)
        body: dict[str, Any] = {
            "candidates": [
                {
                    "content": {"role": "model", "parts": [{"text": text}]},
                    "finishReason": finish_reason,
                    "index": 0,
                }
            ],
            "modelVersion": model_version,
            "responseId": uuid.uuid4().hex[:22],
        }
        if usage is not None:
            usage = {_camel(k): v for k, v in usage.items()}
            usage.setdefault(
                "totalTokenCount",
                sum(
                    usage.get(k, 0)
                    for k in (
                        "promptTokenCount",
                        "candidatesTokenCount",
                        "thoughtsTokenCount",
                    )
                ),
            )
            body["usageMetadata"] = usage
        return cls(200, body)

    @classmethod
    def raw(
        cls,
        status: int,
        body: bytes | str,
        content_type: str = "application/json",
        delay: float = 0.0,
    ) -> Reply:
        """Build any HTTP response from raw bytes or text."""
        data = body.encode() if isinstance(body, str) else body
        return cls(status, data, content_type, delay)

    @classmethod
    def error(
        cls,
        status_code: int,
        status: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
    ) -> Reply:
        """Build a Google-style JSON error response."""
        error: dict[str, Any] = {
            "code": status_code,
            "message": message,
            "status": status,
        }
        if details is not None:
            error["details"] = details
        return cls(status_code, {"error": error})

    @classmethod
    def case(cls, name: str) -> Reply:
        """Build the response stored in tests/data/gemini_cases/<name>."""
        path = CASES_DIR / name
        if not path.exists():
            matches = sorted(CASES_DIR.glob(f"{name}.*"))
            if not matches:
                raise FileNotFoundError(f"no Gemini case named {name!r} in {CASES_DIR}")
            path = matches[0]
        if path.suffix == ".html":
            return cls.raw(
                CASE_STATUS.get(path.name, 502), path.read_bytes(), "text/html"
            )
        return cls.raw(CASE_STATUS.get(path.name, 200), path.read_bytes())


Handler = Callable[[RecordedRequest], Reply]


def _usage_for(request: RecordedRequest, body: dict[str, Any]) -> dict[str, int]:
    """Return plausible token counts (about four characters a token)."""
    prompt = max(1, len(request.system_text + request.prompt_text) // 4)
    texts = [t for c in body.get("candidates") or [] for t in _texts(c.get("content"))]
    answer = sum(len(t) for t in texts) // 4 + (1 if texts else 0)
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": answer,
        "totalTokenCount": prompt + answer,
    }


def _split(text: str, pieces: int) -> list[str]:
    """Split text into at most `pieces` consecutive non-empty chunks."""
    size = max(1, -(-len(text) // max(1, pieces)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _sse_frames(body: dict[str, Any], pieces: int) -> list[dict[str, Any]]:
    """Split a one-candidate answer into streamGenerateContent chunks."""
    candidates = body.get("candidates") or []
    if len(candidates) != 1:
        return [body]
    candidate = candidates[0]
    texts = _texts(candidate.get("content"))
    chunks = _split("".join(texts), pieces) if texts else [""]
    frames: list[dict[str, Any]] = []
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        cand: dict[str, Any] = {
            "content": {"role": "model", "parts": [{"text": chunk}]},
            "index": candidate.get("index", 0),
        }
        if not texts:
            cand["content"] = candidate.get("content", {})
        if last and "finishReason" in candidate:
            cand["finishReason"] = candidate["finishReason"]
        frame = {k: v for k, v in body.items() if k != "usageMetadata"}
        frame["candidates"] = [cand]
        if last and "usageMetadata" in body:
            frame["usageMetadata"] = body["usageMetadata"]
        frames.append(frame)
    return frames


class _RequestHandler(BaseHTTPRequestHandler):
    """Route each request to the owning GeminiServer."""

    server: _HTTPServer
    timeout = 30.0

    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output quiet."""

    def do_POST(self) -> None:
        """Answer a POST request."""
        self.server.owner._handle(self)

    def do_GET(self) -> None:
        """Answer a GET request."""
        self.server.owner._handle(self)


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its GeminiServer."""

    daemon_threads = True
    block_on_close = True
    # socketserver's default backlog of 5 drops connections when a client opens
    # eight at once; the client then stalls a second before retrying.
    request_queue_size = 64

    def __init__(self, owner: GeminiServer) -> None:
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.owner = owner

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Ignore clients that hang up; report any other error as usual."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class GeminiServer:
    """A scripted Gemini REST server on 127.0.0.1, for use as a context manager."""

    def __init__(self, *, latency: float = 0.0, stream_chunks: int = 3) -> None:
        """Create a stopped server; `latency` seconds are added to every reply."""
        self.latency = latency
        self.stream_chunks = stream_chunks
        self._lock = threading.Lock()
        self._queue: deque[Reply] = deque()
        self._requests: list[RecordedRequest] = []
        self._handler: Handler | None = None
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> GeminiServer:
        """Bind an ephemeral port and serve in a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("GeminiServer already started")
        self._stopping.clear()
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"GeminiServer:{self._httpd.server_address[1]}",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, close the socket and join every server thread."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> GeminiServer:
        """Start the server."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.close()

    @property
    def url(self) -> str:
        """Return the base URL, e.g. http://127.0.0.1:PORT."""
        if self._httpd is None:
            raise RuntimeError("GeminiServer is not running")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # inspection

    @property
    def requests(self) -> list[RecordedRequest]:
        """Return a snapshot of the requests received so far."""
        with self._lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        """Return how many requests were received."""
        with self._lock:
            return len(self._requests)

    @property
    def pending(self) -> int:
        """Return how many queued replies are still unused."""
        with self._lock:
            return len(self._queue)

    def reset(self) -> None:
        """Forget recorded requests, queued replies and the handler."""
        with self._lock:
            self._requests.clear()
            self._queue.clear()
            self._handler = None

    # scripting

    def reply(self, reply: Reply) -> None:
        """Queue one reply for the next model call."""
        with self._lock:
            self._queue.append(reply)

    def reply_json(
        self,
        obj_or_text: Any,
        *,
        finish_reason: str = "STOP",
        usage: dict[str, int] | None = None,
        model_version: str = DEFAULT_MODEL_VERSION,
    ) -> None:
        """Queue a successful answer whose text is json.dumps(obj) or the str."""
        self.reply(
            Reply.success(
                obj_or_text,
                finish_reason=finish_reason,
                usage=usage,
                model_version=model_version,
            )
        )

    def reply_raw(
        self,
        status: int,
        body: bytes | str,
        content_type: str = "application/json",
        delay: float = 0.0,
    ) -> None:
        """Queue any raw HTTP response."""
        self.reply(Reply.raw(status, body, content_type, delay))

    def reply_error(
        self,
        status_code: int,
        status: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        """Queue a Google-style JSON error."""
        self.reply(Reply.error(status_code, status, message, details))

    def reply_case(self, name: str) -> None:
        """Queue the response stored in tests/data/gemini_cases/<name>."""
        self.reply(Reply.case(name))

    def set_handler(self, fn: Handler | None) -> None:
        """Compute replies with fn(request) once the queue is empty."""
        with self._lock:
            self._handler = fn

    # serving

    def _handle(self, http: _RequestHandler) -> None:
        """Record one request, choose its reply and send it."""
        received_at = time.time()
        length = int(http.headers.get("Content-Length") or 0)
        raw = http.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        split = urlsplit(http.path)
        match = _MODEL_PATH.match(split.path)
        request = RecordedRequest(
            method=http.command,
            path=split.path,
            query=split.query,
            model=match["model"] if match else None,
            api_version=match["version"] if match else None,
            action=match["action"] if match else None,
            headers={k.lower(): v for k, v in http.headers.items()},
            json=body,
            received_at=received_at,
        )
        with self._lock:
            self._requests.append(request)
            if http.command != "POST" or match is None:
                reply = Reply.error(
                    404, "NOT_FOUND", f"GeminiServer: no route {http.path}"
                )
                handler = None
            elif self._queue:
                reply, handler = self._queue.popleft(), None
            else:
                handler = self._handler
                reply = Reply.error(
                    500,
                    "INTERNAL",
                    f"GeminiServer: no scripted reply for {http.command} {http.path}",
                )
        if handler is not None:
            try:
                reply = handler(request)
            except Exception as exc:
                reply = Reply.error(
                    500, "INTERNAL", f"GeminiServer: handler raised {exc!r}"
                )
        self._send(http, request, reply)

    def _send(
        self, http: _RequestHandler, request: RecordedRequest, reply: Reply
    ) -> None:
        """Write a reply, as SSE frames when a 200 JSON answer is streamed."""
        if self._stopping.wait(self.latency + reply.delay):
            return
        content_type = reply.content_type
        if isinstance(reply.body, dict):
            body = dict(reply.body)
            if (
                reply.status == 200
                and "candidates" in body
                and "usageMetadata" not in body
            ):
                body["usageMetadata"] = _usage_for(request, body)
            if reply.status == 200 and request.stream:
                frames = _sse_frames(body, self.stream_chunks)
                data = b"".join(
                    b"data: " + json.dumps(f).encode() + b"\n\n" for f in frames
                )
                content_type = "text/event-stream"
            else:
                data = json.dumps(body).encode()
        else:
            data = reply.body
        if (
            content_type.startswith(("application/json", "text/"))
            and "charset" not in content_type
        ):
            content_type += "; charset=UTF-8"
        try:
            http.send_response(reply.status)
            http.send_header("Content-Type", content_type)
            http.send_header("Content-Length", str(len(data)))
            http.end_headers()
            http.wfile.write(data)
            http.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass
