"""The service's error contract: one JSON body for every error, a request id on every answer, and what is logged.

Every error answer, whichever layer gives it (the ASGI middleware in `scopeml.serving.limits`, BentoML's
input parsing, a handler, the router's 404 and 405), has one body:

    {"error": {"status": 422, "code": "beyond_full_scale", "field": "audio", "request_id": "3f2c...",
               "message": "audio: peak sample 1e+30 is beyond full scale ..."}}

`status` repeats the HTTP status, `code` is a stable identifier (CODES), `field` names the request field at
fault (`audio`, `samples`, `clips[1].sample_rate`) or is null when the fault is not one field's, `message`
says what is wrong for a person, and `request_id` is the `x-request-id` the response carries (the client's, or
one generated here). Server errors say only that the server failed and give the request id: the details stay
in the server log. No message carries an internal object's repr.

Logging: a client error (4xx, or a deliberate answer such as 503 shed under overload) is one WARNING line with
the method, path, status, code, field, request id and message; BentoML's own ERROR-with-traceback for it is
filtered out. An unexpected exception (a 500) keeps BentoML's traceback, tagged with the request id.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import uuid
from dataclasses import dataclass
from http import HTTPStatus

from bentoml.exceptions import BentoMLException

log = logging.getLogger("scopeml.serving")

# code -> (status, when): the codes the service answers with (docs/deployment.md has the same table).
CODES: dict[str, tuple[int, str]] = {
    "invalid_json": (400, "the body is not JSON, or not a JSON object"),
    "malformed_multipart": (400, "the multipart body cannot be parsed"),
    "missing_field": (400, "a required field is absent (a misnamed field is reported as the one missing)"),
    "unknown_field": (400, "a multipart part the endpoint does not take"),
    "invalid_field": (400, "a field of the wrong type or form (text where a file part is expected, a part sent twice)"),
    "invalid_header": (400, "a Content-Length that is not a number"),
    "empty_file": (400, "an empty audio file"),
    "corrupt_audio": (400, "a WAV or FLAC file that cannot be decoded"),
    "not_found": (404, "no such endpoint"),
    "method_not_allowed": (405, "the endpoints take POST"),
    "body_too_large": (413, "a body over deploy.max_body_mb"),
    "unsupported_media_type": (415, "a Content-Type the endpoint does not take"),
    "unsupported_audio": (415, "a file that is not WAV or FLAC"),
    "invalid_sample_rate": (422, "a sample rate outside 1000-192000 Hz"),
    "no_samples": (422, "audio with no samples"),
    "too_many_channels": (422, "more than 8 channels"),
    "non_finite_samples": (422, "NaN or infinite samples"),
    "beyond_full_scale": (422, "a sample beyond +-4.0 (full scale is +-1.0; see MAX_PEAK)"),
    "too_long": (422, "audio longer than deploy.max_clip_seconds (or max_long_audio_seconds for /segments)"),
    "silent": (422, "no sample above -60 dBFS"),
    "too_many_clips": (422, "no clips, or more than deploy.max_clips_per_request"),
    "non_finite_result": (422, "the model gave non-finite probabilities for the clip (nothing is answered or logged)"),
    "busy": (429, "more than deploy.max_concurrency requests in flight; Retry-After says when to retry"),
    "internal_error": (500, "a server fault; the server log has the traceback under the request id"),
    "unavailable": (503, "the batched model is overloaded; Retry-After says when to retry"),
    "log_unavailable": (503, "the prediction log cannot take the record now (nothing was answered); Retry-After"),
    "timeout": (504, "the request took longer than the service's deadline"),
}
_BY_STATUS = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "busy",
    500: "internal_error",
    503: "unavailable",
    504: "timeout",
}
SERVER_ERROR_MESSAGE = "the server failed on this request; its log has the details under the request id"
_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces; anything else gets a fresh id
_REPR = re.compile(r"<[^<>]*? at 0x[0-9a-fA-F]+>")


def default_code(status: int) -> str:
    return _BY_STATUS.get(status) or ("internal_error" if status >= 500 else "invalid_request")


@dataclass
class RequestState:
    """What the middleware knows about the request in flight: its id, and the error a handler chose, if any."""

    request_id: str
    error: dict | None = None


CURRENT: contextvars.ContextVar[RequestState | None] = contextvars.ContextVar("scopeml_request", default=None)


def request_id_from(headers) -> str:
    """The client's x-request-id if it is a sane one (printable ASCII, at most 128 characters), else a new one."""
    for key, value in headers:
        if key.lower() == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


class ClientError(BentoMLException):
    """A deliberate error answer from a handler: BentoML answers with this status, and the middleware shapes the
    body from the code, field and message recorded here (BentoML itself only passes the message on)."""

    def __init__(
        self,
        status: HTTPStatus | int,
        message: str,
        *,
        code: str | None = None,
        field: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.error_code = HTTPStatus(status)
        self.code = code or default_code(int(status))
        self.field = field
        if (state := CURRENT.get()) is not None:  # headers: BentoML's error answer drops ctx.response.headers
            state.error = {
                "status": int(status),
                "code": self.code,
                "message": message,
                "field": field,
                "headers": dict(headers or {}),
            }


def clean(message: str, limit: int = 600) -> str:
    """A message fit for a client: no object reprs, bounded length."""
    text = _REPR.sub("the upload", str(message)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def body(status: int, code: str, message: str, field: str | None, request_id: str) -> bytes:
    error = {"status": status, "code": code, "message": clean(message), "field": field, "request_id": request_id}
    return json.dumps({"error": error}).encode()


# ------------------------------------------------------------------ BentoML's and Starlette's own error bodies
def _field_path(loc) -> str | None:
    """pydantic's error location as a field path: ("clips", 0, "samples") -> "clips[0].samples"; stops at a
    union member's tag ("list[float]")."""
    path = ""
    for part in loc or ():
        if isinstance(part, int):
            path += f"[{part}]"
        elif isinstance(part, str) and part.isidentifier():
            path += f".{part}" if path else part
        else:
            break
    return path or None


def from_validation(details: list[dict]) -> tuple[str, str, str | None]:
    """BentoML's 400 for a pydantic ValidationError: the first error names the field; the rest are counted."""
    first = details[0]
    field = _field_path(first.get("loc"))
    kind = first.get("type", "")
    if kind == "json_invalid" or field is None:
        code = "invalid_json"
    else:
        code = "missing_field" if kind == "missing" else "invalid_field"
    parts = list(dict.fromkeys(f"{_field_path(d.get('loc')) or 'body'}: {d.get('msg', 'invalid')}" for d in details))
    more = f"; and {len(parts) - 3} more" if len(parts) > 3 else ""
    parts = parts[:3]
    return code, "; ".join(parts) + more, field


def translate(status: int, raw: bytes, method: str, path: str) -> tuple[str, str, str | None]:
    """(code, message, field) for an error body that BentoML or Starlette wrote."""
    if status >= 500 and status != 504:
        return default_code(status), SERVER_ERROR_MESSAGE, None
    try:
        data = json.loads(raw) if raw else None
    except ValueError:
        data = None
    if isinstance(data, list) and len(data) == 1:  # BentoML's 4xx for a BentoMLException: [{"error": message}]
        data = data[0]
    if isinstance(data, dict):
        if isinstance(data.get("detail"), list) and data["detail"]:
            return from_validation(data["detail"])
        if isinstance(data.get("error"), dict):  # already ours
            err = data["error"]
            return err.get("code") or default_code(status), str(err.get("message", "")), err.get("field")
        if isinstance(data.get("error"), str):
            return default_code(status), data["error"], None
    if status == 404:
        return "not_found", f"no endpoint {path}; the service's endpoints are listed at /docs.json", None
    if status == 405:
        return "method_not_allowed", f"{method} is not allowed on {path}", None
    text = raw.decode("utf-8", "replace").strip() if raw else ""
    return default_code(status), text or HTTPStatus(status).phrase, None


# ------------------------------------------------------------------ logging
class QuietClientErrors(logging.Filter):
    """On BentoML's exception logger: drop the ERROR-with-traceback for a client's error (pydantic validation,
    a BentoMLException under 500, or our ClientError), which the middleware logs as one line instead; tag the
    tracebacks that remain (server errors) with the request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        from pydantic import ValidationError

        exc = record.exc_info[1] if isinstance(record.exc_info, tuple) else None
        if isinstance(exc, (ValidationError, ClientError)):
            return False
        if isinstance(exc, BentoMLException) and int(exc.error_code) < 500:
            return False
        if (state := CURRENT.get()) is not None and isinstance(record.msg, str) and "request_id=" not in record.msg:
            record.msg = f"{record.msg} (request_id={state.request_id.replace('%', '%%')})"
        return True


_FILTER = QuietClientErrors()


def install_log_filter() -> None:
    """Idempotent; BentoML's handler logs through bentoml._internal.server.http_app (a child of the `bentoml`
    logger its server logging config sets up, so the filter survives that config)."""
    logger = logging.getLogger("bentoml._internal.server.http_app")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    log.setLevel(logging.INFO)


def log_error(method: str, path: str, status: int, code: str, field: str | None, request_id: str, message: str):
    """One line per error answer; a 5xx that was not deliberate has BentoML's traceback above it."""
    level = logging.ERROR if status >= 500 and code == "internal_error" else logging.WARNING
    log.log(
        level,
        "%s %s -> %d %s%s request_id=%s: %s",
        method,
        path,
        status,
        code,
        f" field={field}" if field else "",
        request_id,
        message,
    )


# ------------------------------------------------------------------ the OpenAPI schema
ERROR_SCHEMA = {
    "type": "object",
    "title": "Error",
    "description": "Every error answer of the service, from any endpoint, at any status.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["status", "code", "message", "field", "request_id"],
            "properties": {
                "status": {"type": "integer", "description": "the HTTP status, repeated"},
                "code": {
                    "type": "string",
                    "description": "a stable identifier: " + ", ".join(f"{c} ({s})" for c, (s, _) in CODES.items()),
                },
                "message": {"type": "string", "description": "what is wrong, for a person"},
                "field": {
                    "type": "string",
                    "nullable": True,
                    "description": "the request field at fault (audio, samples, clips[1].sample_rate), or null",
                },
                "request_id": {"type": "string", "description": "the x-request-id header of the response"},
            },
        }
    },
}
ERROR_STATUSES = (400, 404, 413, 415, 422, 429, 500, 503, 504)


def document_errors(spec: dict, strict_multipart: set[str] = frozenset()) -> dict:
    """The service's OpenAPI spec (/docs.json) with the error contract: the Error schema, referenced by every error
    status of every POST endpoint (in place of BentoML's per-exception schemas, which are not what it sends);
    multipart inputs of `strict_multipart` routes take no other parts (the middleware refuses them)."""
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for stale in ("InvalidArgument", "NotFound", "InternalServerError"):
        schemas.pop(stale, None)
    schemas["Error"] = ERROR_SCHEMA
    ref = {"$ref": "#/components/schemas/Error"}
    for route, item in spec.get("paths", {}).items():
        post = item.get("post")
        if not isinstance(post, dict):
            continue
        responses = {s: r for s, r in post.get("responses", {}).items() if int(s) < 400}
        for status in ERROR_STATUSES:
            responses[str(status)] = {
                "description": HTTPStatus(status).phrase,
                "content": {"application/json": {"schema": ref}},
            }
        post["responses"] = responses
        if route in strict_multipart:
            body = post.get("requestBody", {}).get("content", {}).get("multipart/form-data", {}).get("schema")
            if isinstance(body, dict):
                body["additionalProperties"] = False
    return spec
