"""ASGI middleware of the prediction service (HTTP concerns stay beside the BentoML service)."""

from __future__ import annotations

import json


class JsonBodiesOnly:
    """ASGI middleware: a POST to one of `paths` must send JSON, or it gets a 415 naming the
    Content-Type it sent. BentoML parses other media types itself and answers a malformed one
    (e.g. `multipart/form-data` without a boundary) with a 500; the APIs take JSON only. A
    request without a Content-Type is let through (BentoML reads it as JSON)."""

    def __init__(self, app, paths: tuple[str, ...] = ("/predict", "/predict_batch")):
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] in self.paths:
            sent = next((v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"content-type"), "")
            media = sent.split(";")[0].strip().lower()
            if media and media != "application/json" and not media.endswith("+json"):
                body = json.dumps({"error": f"unsupported Content-Type {sent!r} for {scope['path']}: send the body as application/json"}).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 415,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
