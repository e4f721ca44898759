"""The service's ASGI middleware (bentos/middleware.py) on plain ASGI calls: bodies over the limit
get a 413 before the app reads them, declared or chunked; other media types a 415."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from fixtures.env import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))  # bentos/ lives at the repository root, beside plugins/
from bentos.middleware import BodySizeLimit, JsonBodiesOnly  # noqa: E402

LIMIT = 100


class EchoApp:
    """Reads the whole body and answers 200 with its length (what BentoML would parse)."""

    def __init__(self):
        self.called = False

    async def __call__(self, scope, receive, send):
        self.called = True
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})


def call(
    middleware, chunks: list[bytes], headers: dict[str, str], path: str = "/predict_batch", method: str = "POST", left: list | None = None
) -> tuple[int, bytes]:
    """One ASGI request through `middleware`; `left`, when given, receives the body messages nobody read."""
    scope = {"type": "http", "method": method, "path": path, "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
    messages = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)]
    if left is not None:
        left.append(messages)
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize("path", ["/predict", "/predict_batch"])
def test_a_declared_body_over_the_limit_gets_a_413_with_a_json_reason_and_the_app_never_runs(path):
    app = EchoApp()
    status, body = call(BodySizeLimit(app, max_bytes=LIMIT), [b"x" * 101], {"content-length": "101"}, path=path)
    assert status == 413 and not app.called
    reason = json.loads(body)
    assert reason["max_body_bytes"] == LIMIT and "101 bytes" in reason["error"] and path in reason["error"]


def test_a_chunked_body_over_the_limit_gets_a_413():
    app = EchoApp()
    status, body = call(BodySizeLimit(app, max_bytes=LIMIT), [b"x" * 60, b"x" * 60, b"x" * 60], {})
    assert status == 413 and not app.called and "chunked" in json.loads(body)["error"]


def test_bodies_within_the_limit_reach_the_app_whole():
    app = EchoApp()
    assert call(BodySizeLimit(app, max_bytes=LIMIT), [b"x" * 100], {"content-length": "100"}) == (200, b"100")
    # Chunked: read up to the limit, then replayed to the app.
    assert call(BodySizeLimit(app, max_bytes=LIMIT), [b"x" * 40, b"x" * 40, b""], {}) == (200, b"80")


def test_other_paths_and_methods_are_not_limited():
    assert call(BodySizeLimit(EchoApp(), max_bytes=LIMIT), [b"x" * 500], {"content-length": "500"}, path="/ops/reload") == (200, b"500")
    assert call(BodySizeLimit(EchoApp(), max_bytes=LIMIT), [b"x" * 500], {}, method="PUT") == (200, b"500")


def test_a_body_that_is_not_json_by_its_content_type_gets_a_415():
    status, body = call(JsonBodiesOnly(EchoApp()), [b"a=1"], {"content-type": "application/x-www-form-urlencoded"})
    assert status == 415 and "application/x-www-form-urlencoded" in json.loads(body)["error"]
    assert call(JsonBodiesOnly(EchoApp()), [b"{}"], {"content-type": "application/json; charset=utf-8"}) == (200, b"2")
    assert call(JsonBodiesOnly(EchoApp()), [b"{}"], {}) == (200, b"2")


@pytest.mark.parametrize("headers", [{"content-length": "300"}, {}])
def test_a_refused_body_is_read_to_its_end_before_the_413(headers):
    # A client that sends its whole body before reading the answer (urllib, requests) must get
    # the 413, not a connection reset: the rest of the body is read and dropped.
    left = []
    status, _ = call(BodySizeLimit(EchoApp(), max_bytes=LIMIT), [b"x" * 60] * 5, headers, left=left)
    assert status == 413 and left[0] == []
