"""ASGI middleware in front of the service: body-size limit (413) and concurrency limit (429 + Retry-After).

It answers before BentoML reads or parses anything, so an oversized or excess request
costs the server almost nothing and never reaches code that could fail on it.
"""

from __future__ import annotations

import json

EXEMPT = {"/livez", "/readyz", "/healthz", "/metrics"}


class RequestLimits:
    def __init__(self, app, max_body_bytes: int, max_concurrency: int):
        self.app, self.max_body, self.max_concurrency = app, max_body_bytes, max_concurrency
        self.in_flight = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in EXEMPT or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await _reply(send, 400, "content-length header is not a number")
            if int(declared) > self.max_body:
                return await _reply(
                    send, 413, f"request body of {int(declared)} bytes is over the {self.max_body} byte limit"
                )
        if self.in_flight >= self.max_concurrency:
            return await _reply(
                send,
                429,
                f"server busy: {self.in_flight} requests in flight (limit {self.max_concurrency}); retry shortly",
                [(b"retry-after", b"1")],
            )
        self.in_flight += 1
        try:
            multipart = headers.get(b"content-type", b"").lower().startswith(b"multipart/")
            if declared is None or multipart:  # count chunked uploads ourselves; multipart is checked below
                body, too_big = await _read_limited(receive, self.max_body)
                if too_big:
                    return await _reply(send, 413, f"request body is over the {self.max_body} byte limit")
                if multipart and (problem := await _multipart_problem(scope, body)):
                    return await _reply(send, 400, problem)
                receive = _replay(body)
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


async def _read_limited(receive, limit: int) -> tuple[bytes, bool]:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", True
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks), False


async def _multipart_problem(scope, body: bytes) -> str | None:
    """Parse a multipart body once here: BentoML turns the parser's own 400 (no boundary, bad part
    headers) into a 500, so malformed uploads must be answered before they reach it."""
    from starlette.requests import Request

    try:
        form = await Request(scope, _replay(body)).form()
        await form.close()
    except Exception as exc:  # MultiPartException, HTTPException(400), decoding errors: all the client's body
        return f"malformed multipart body: {getattr(exc, 'detail', None) or exc}"
    return None


def _replay(body: bytes):
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


async def _reply(send, status: int, message: str, extra_headers: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(extra_headers or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
