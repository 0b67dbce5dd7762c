"""ASGI middleware in front of the service: the request id, the limits, the input's shape, and every error's body.

For every request it settles the request id (the client's `x-request-id` or a new one), passes it on to the
handlers and returns it on every response. For the POST endpoints it answers, before BentoML reads or parses
anything: a body over the size limit (413), more requests in flight than the concurrency limit (429 with
Retry-After), a Content-Type the endpoint does not take (415), a malformed multipart body, and a multipart body
without the endpoint's file field, with a part it does not take, or with text where the file belongs (400,
naming the field). BentoML would turn those into 500s (its multipart parser's errors, a part that is not UTF-8)
or, for a text value in a file field, try to download it as a URL; here they never reach it.

Every error answer, its own or BentoML's or the router's, leaves through `_Answer`, which writes the one error
body of `scopeml.serving.errors` and logs it as one line. GET /docs.json gets the error contract added.
"""

from __future__ import annotations

import asyncio
import json
import logging

from scopeml.serving.errors import (
    CURRENT,
    RequestState,
    body,
    document_errors,
    log_error,
    request_id_from,
    translate,
)

WORKER_HEADER = b"x-scopeml-worker"
EXEMPT = {"/livez", "/readyz", "/healthz", "/metrics"}
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


class RequestLimits:
    """endpoints: route -> {"files": [...], "fields": [...], "required": [...]}, the input of each POST endpoint
    (service.py derives it from the BentoML APIs). deadline_s: a request not answered by then gets 504 (set below
    BentoML's own traffic timeout, whose 504 would not have the service's error body)."""

    def __init__(
        self,
        app,
        max_body_bytes: int,
        max_concurrency: int,
        endpoints: dict[str, dict] | None = None,
        deadline_s: float | None = None,
    ):
        self.app, self.max_body, self.max_concurrency = app, max_body_bytes, max_concurrency
        self.endpoints = endpoints or {}
        self.deadline_s = deadline_s
        self.strict_multipart = {route for route, spec in self.endpoints.items() if spec["files"]}
        self.in_flight = 0
        # which API worker answered (BentoML's worker id, 1..N), on every response: how the load spreads
        # over the workers is visible from outside (bench/bench_serving.py counts it per worker)
        from bentoml import server_context

        self.worker = None if server_context.worker_index is None else str(server_context.worker_index).encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state = RequestState(request_id_from(scope.get("headers") or []))
        headers = [(k, v) for k, v in scope.get("headers") or [] if k.lower() != b"x-request-id"]
        scope = {**scope, "headers": [*headers, (b"x-request-id", state.request_id.encode())]}
        docs = scope["path"] == "/docs.json" and scope["method"] == "GET"
        answer = _Answer(send, scope, state, docs and self.strict_multipart, self.worker)
        token = CURRENT.set(state)
        try:
            if scope["path"] in EXEMPT or scope["method"] in ("GET", "HEAD", "OPTIONS"):
                await self.app(scope, receive, answer)
            else:
                await self._post(scope, receive, answer)
        except Exception:
            if answer.started:
                raise
            logging.getLogger("scopeml.serving").exception(
                "%s %s: request_id=%s", scope["method"], scope["path"], state.request_id
            )
            await _reply(answer, 500, "internal_error", "internal error", None)
        finally:
            CURRENT.reset(token)

    async def _post(self, scope, receive, send):
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await _reply(send, 400, "invalid_header", "content-length header is not a number", None)
            if int(declared) > self.max_body:
                return await _reply(
                    send,
                    413,
                    "body_too_large",
                    f"request body of {int(declared)} bytes is over the {self.max_body} byte limit",
                    None,
                )
        if self.in_flight >= self.max_concurrency:
            return await _reply(
                send,
                429,
                "busy",
                f"server busy: {self.in_flight} requests in flight (limit {self.max_concurrency}); retry shortly",
                None,
                [(b"retry-after", b"1")],
            )
        self.in_flight += 1
        try:
            spec = self.endpoints.get(scope["path"])
            media = headers.get(b"content-type", b"").decode("latin-1").split(";")[0].strip().lower()
            if spec is not None and (problem := _media_problem(media, spec)):
                return await _reply(send, 415, "unsupported_media_type", *problem)
            multipart = media.startswith("multipart/")
            if declared is None or multipart:  # count chunked uploads ourselves; multipart is checked below
                raw, too_big = await _read_limited(receive, self.max_body)
                if too_big:
                    return await _reply(
                        send, 413, "body_too_large", f"request body is over the {self.max_body} byte limit", None
                    )
                if multipart and (problem := await _form_problem(scope, raw, spec)):
                    return await _reply(send, 400, *problem)
                receive = _replay(raw)
            if self.deadline_s is None:
                return await self.app(scope, receive, send)
            try:
                await asyncio.wait_for(self.app(scope, receive, send), self.deadline_s)
            except asyncio.TimeoutError:
                if send.started:
                    raise
                await _reply(send, 504, "timeout", f"not answered within {self.deadline_s:g} s; retry later", None)
        finally:
            self.in_flight -= 1


def _media_problem(media: str, spec: dict) -> tuple[str, str] | None:
    """(message, field) when the Content-Type is not one this endpoint takes."""
    if spec["files"]:
        if media != "multipart/form-data":
            name = spec["files"][0]
            return f"{name}: send multipart/form-data with the file in field `{name}` (got {media or 'no type'})", name
    elif media in FORM_TYPES or media.startswith("multipart/"):
        return f"send application/json (got {media})", None
    return None


async def _form_problem(scope, raw: bytes, spec: dict | None) -> tuple[str, str, str | None] | None:
    """(code, message, field) for a multipart body this endpoint cannot take. The body is parsed once here:
    BentoML turns the parser's own 400 (no boundary, bad part headers) into a 500."""
    from starlette.datastructures import UploadFile
    from starlette.requests import Request

    try:
        form = await Request(scope, _replay(raw)).form()
    except Exception as exc:  # MultiPartException, HTTPException(400), decoding errors: all the client's body
        return "malformed_multipart", f"malformed multipart body: {getattr(exc, 'detail', None) or exc}", None
    try:
        if spec is None:
            return None
        names = list(dict.fromkeys(form.keys()))
        takes = [*spec["files"], *spec["fields"]]
        unknown = [n for n in names if n not in takes]
        missing = [n for n in spec["required"] if n not in names]
        if missing:
            name = missing[0]
            has = f"; the body has {', '.join(f'`{n}`' for n in names)}" if names else "; the body has no parts"
            how = f"the multipart file field `{name}`" if name in spec["files"] else f"the field `{name}`"
            return "missing_field", f"{name}: missing; send it as {how}{has}", name
        if unknown:
            name = unknown[0]
            return "unknown_field", f"{name}: not a field of {scope['path']} (it takes {', '.join(takes)})", name
        for name in spec["files"]:
            values = form.getlist(name)
            if len(values) > 1:
                return "invalid_field", f"{name}: sent {len(values)} times; send one file", name
            if values and not isinstance(values[0], UploadFile):
                return (
                    "invalid_field",
                    f"{name}: must be a file part (with a filename), not a text value",
                    name,
                )
        for name in spec["fields"]:
            if any(isinstance(v, UploadFile) for v in form.getlist(name)):
                return "invalid_field", f"{name}: must be a text value, not a file", name
        return None
    finally:
        await form.close()


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


def _replay(raw: bytes):
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return receive


async def _reply(
    send, status: int, code: str, message: str, field: str | None, extra_headers: list | None = None
) -> None:
    """An error answered here: recorded as the request's error, so _Answer writes its body and log line."""
    if (state := CURRENT.get()) is not None:
        state.error = {"status": status, "code": code, "message": message, "field": field}
    await send({"type": "http.response.start", "status": status, "headers": list(extra_headers or [])})
    await send({"type": "http.response.body", "body": b""})


class _Answer:
    """The `send` the app sees: adds x-request-id (and x-scopeml-worker) to every response, and holds back an
    error response (status >= 400; for HEAD, headers only) until its body is complete, to write the service's
    error body in its place and log it. With `docs` (a set of routes), GET /docs.json's spec is held back to add
    the error contract."""

    def __init__(self, send, scope, state: RequestState, docs, worker: bytes | None = None):
        self.send, self.scope, self.state, self.docs = send, scope, state, docs
        self.extra = [(b"x-request-id", state.request_id.encode())]
        if worker is not None:
            self.extra.append((WORKER_HEADER, worker))
        self.started = False
        self.held: dict | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message):
        kind = message["type"]
        if kind == "http.response.start":
            self.started = True
            ours = {k for k, _ in self.extra}
            headers = [(k, v) for k, v in message.get("headers") or [] if k.lower() not in ours]
            message = {**message, "headers": [*headers, *self.extra]}
            status = message["status"]
            if self.scope["method"] != "HEAD" and (status >= 400 or (self.docs and status == 200)):
                self.held = message
                return
            return await self.send(message)
        if kind == "http.response.body" and self.held is not None:
            self.chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            start, self.held = self.held, None
            raw = b"".join(self.chunks)
            content = self._error(start["status"], raw) if start["status"] >= 400 else self._docs(raw)
            headers = [(k, v) for k, v in start["headers"] if k.lower() not in (b"content-length", b"content-type")]
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
            if start["status"] >= 400 and self.state.error and self.state.error["status"] == start["status"]:
                present = {k.lower() for k, _ in headers}
                for name, value in (self.state.error.get("headers") or {}).items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), str(value).encode()))
            await self.send({**start, "headers": headers})
            return await self.send({"type": "http.response.body", "body": content})
        return await self.send(message)

    def _error(self, status: int, raw: bytes) -> bytes:
        method, path = self.scope["method"], self.scope["path"]
        error = self.state.error
        if error is not None and error["status"] == status:
            code, message, field = error["code"], error["message"], error["field"]
        else:
            code, message, field = translate(status, raw, method, path)
        log_error(method, path, status, code, field, self.state.request_id, message)
        return body(status, code, message, field, self.state.request_id)

    def _docs(self, raw: bytes) -> bytes:
        try:
            return json.dumps(document_errors(json.loads(raw), self.docs)).encode()
        except (ValueError, TypeError, AttributeError):
            return raw
