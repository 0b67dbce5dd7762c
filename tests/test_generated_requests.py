"""Generated requests against the real server: schemathesis reads the service's own OpenAPI schema at /docs.json
and sends thousands of requests, valid and invalid, to every operation of a real `bentoml serve` (issue 13).

Whatever it sends, the answer is never a server error (>= 500), every 4xx has the one error body, and the
server is still ready afterwards. The run is bounded (a fixed number of examples per operation and mode,
derandomized, generation only: no shrinking, no example database), so it takes the same time every run.
"""

from __future__ import annotations

import json
import time
from collections import Counter

import httpx
import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable

pytestmark = pytest.mark.slow

# Examples per operation and generation mode. An operation whose inputs give fewer distinct requests (the GET
# endpoints take no parameters) ends sooner; the POST endpoints carry the count.
EXAMPLES = {"positive": 250, "negative": 250}
MIN_REQUESTS = 2000
ERROR_KEYS = {"status", "code", "message", "field", "request_id"}


def header(response, name: str) -> str:
    """One header of schemathesis' response (its headers map lower-cased names to lists of values)."""
    values = response.headers.get(name.lower()) or [""]
    return values[0]


def error_shape_problem(response) -> str | None:
    """Why a 4xx answer is not the service's one error body, or None when it is."""
    if not header(response, "content-type").startswith("application/json"):
        return f"content-type {header(response, 'content-type')!r}"
    try:
        body = json.loads(response.content)
    except ValueError:
        return "body is not JSON"
    if not (isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], dict)):
        return f"body is not {{'error': {{...}}}}: {body!r:.200}"
    err = body["error"]
    if set(err) != ERROR_KEYS:
        return f"error keys {sorted(err)}"
    if err["status"] != response.status_code or not err["code"] or not err["message"]:
        return f"error body {err!r:.200}"
    if err["request_id"] != header(response, "x-request-id"):
        return "request_id differs from the x-request-id header"
    return None


def test_schemathesis_every_operation_thousands_of_requests_no_5xx(server):
    import schemathesis
    from schemathesis import GenerationMode
    from schemathesis.checks import not_a_server_error
    from schemathesis.core.failures import FailureGroup
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    schema = schemathesis.openapi.from_url(f"{server.url}/docs.json", timeout=30)
    operations = [result.ok() for result in schema.get_all_operations()]
    declared = {(method.upper(), path) for path, item in schema.raw_schema["paths"].items() for method in item}
    assert {(op.method.upper(), op.path) for op in operations} == declared
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]

    sent: Counter = Counter()  # (method, path) -> requests sent
    statuses: Counter = Counter()  # (method path, status) -> count
    server_errors: list[str] = []  # curl commands that reproduce a >= 500
    bad_bodies: list[str] = []
    nonconforming: list[str] = []
    no_negative: list[str] = []
    session = requests.Session()
    started = time.monotonic()

    def sender(op, mode):
        """A hypothesis test that sends `op`'s generated requests of this mode and records every answer."""
        label = f"{op.method.upper()} {op.path}"

        @settings(
            max_examples=EXAMPLES[mode.value],
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=op.as_strategy(generation_mode=mode))
        def send(case):
            response = case.call(base_url=server.url, session=session, timeout=30)
            sent[(op.method.upper(), op.path)] += 1
            statuses[(label, response.status_code)] += 1
            if response.status_code >= 500:
                server_errors.append(f"{response.status_code}: {case.as_curl_command()}"[:600])
            elif 400 <= response.status_code < 500 and (problem := error_shape_problem(response)):
                bad_bodies.append(f"{label} {response.status_code}: {problem}")
            try:
                case.validate_response(response, checks=checks)
            except FailureGroup as exc:  # the checks that failed, each with a curl command to reproduce
                nonconforming.append(f"{label} {response.status_code}: {str(exc)[:400]}")

        return send

    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                sender(op, mode)()
            except Unsatisfiable:  # no invalid request exists for an operation that takes no input (GET /livez)
                assert mode == GenerationMode.NEGATIVE and not op.body and not list(op.iter_parameters()), op.label
                no_negative.append(op.label)
    elapsed = time.monotonic() - started
    print(f"\n{sum(sent.values())} generated requests in {elapsed:.0f} s (no invalid input exists for {no_negative}):")
    for (method, path), n in sorted(sent.items()):
        codes = {s: c for (lab, s), c in sorted(statuses.items()) if lab == f"{method} {path}"}
        print(f"  {method:4} {path:16} {n:5}  {codes}")

    assert set(sent) == declared, f"operations without a request: {declared - set(sent)}"
    assert sum(sent.values()) >= MIN_REQUESTS, sent
    assert not server_errors, f"{len(server_errors)} responses >= 500, e.g.:\n" + "\n".join(server_errors[:5])
    assert not bad_bodies, "\n".join(bad_bodies[:10])
    assert not nonconforming, f"{len(nonconforming)} responses off the schema:\n" + "\n".join(nonconforming[:5])
    assert httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200
