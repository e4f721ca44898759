"""ASGI middleware of the prediction service (HTTP concerns stay beside the BentoML service)."""

from __future__ import annotations

import json

API_PATHS = ("/predict", "/predict_batch")


async def _send_json(send, status: int, body: dict) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})


def _header(scope, name: bytes) -> str | None:
    return next((v.decode("latin-1") for k, v in scope["headers"] if k.lower() == name), None)


class JsonBodiesOnly:
    """ASGI middleware: a POST to one of `paths` must send JSON, or it gets a 415 naming the
    Content-Type it sent. BentoML parses other media types itself and answers a malformed one
    (e.g. `multipart/form-data` without a boundary) with a 500; the APIs take JSON only. A
    request without a Content-Type is let through (BentoML reads it as JSON)."""

    def __init__(self, app, paths: tuple[str, ...] = API_PATHS):
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            sent = _header(scope, b"content-type") or ""
            media = sent.split(";")[0].strip().lower()
            if media and media != "application/json" and not media.endswith("+json"):
                error = f"unsupported Content-Type {sent!r} for {scope['path']}: send the body as application/json"
                await _send_json(send, 415, {"error": error})
                return
        await self.app(scope, receive, send)


# A refused body is read and dropped up to this many times the limit, then the connection is left to close.
DISCARD_FACTOR = 16


class BodySizeLimit:
    """ASGI middleware: a POST to one of `paths` with a body over `max_bytes` gets a 413 with a
    JSON reason, before BentoML reads it (it would hold the whole body, then its parsed form).

    A declared Content-Length is checked at once (the server never hands the app more than it
    declares); a chunked body is read up to the limit, then replayed to the app."""

    def __init__(self, app, max_bytes: int, paths: tuple[str, ...] = API_PATHS):
        self.app = app
        self.max_bytes = max_bytes
        self.paths = frozenset(paths)

    async def __call__(self, scope, receive, send):
        if not (scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths):
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit():
            if int(declared) > self.max_bytes:
                await self._discard(receive)
                await self._refuse(scope, send, f"a body of {int(declared)} bytes")
                return
            await self.app(scope, receive, send)
            return
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":  # the client went away: let the app see it
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                if message.get("more_body", False):
                    await self._discard(receive)
                await self._refuse(scope, send, "a chunked body")
                return
            if not message.get("more_body", False):
                break
        pending = iter(messages)

        async def replay():
            return next(pending, None) or await receive()

        await self.app(scope, replay, send)

    async def _discard(self, receive) -> None:
        """Read the rest of a refused body without keeping it (up to DISCARD_FACTOR times the
        limit): a client that sends its whole body before reading the answer (urllib, requests)
        would otherwise see the connection reset instead of the 413."""
        budget = self.max_bytes * DISCARD_FACTOR
        while budget > 0:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            budget -= len(message.get("body", b""))

    async def _refuse(self, scope, send, what: str) -> None:
        path = scope["path"]
        hint = ": split the batch" if path == "/predict_batch" else ""
        error = f"{what} is over the limit of {self.max_bytes} bytes for {path}{hint}"
        await _send_json(send, 413, {"error": error, "max_body_bytes": self.max_bytes})
