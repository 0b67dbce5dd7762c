"""A hand-written FastAPI peer of the BentoML service, for bench/bench_serving.py.

    SCOPEML_MODEL_TAG=scopeml-kws:<version> BENTOML_HOME=... \
        uvicorn bench.fastapi_peer:app --host 127.0.0.1 --port 8001 --workers 1

What a user would write by hand around the same scopeml functions: POST /classify with a
multipart file `audio` is decoded, checked (length, silence), prepared with the training
preprocessing, scored, described, and logged with its monitoring features to a PredictionLog
(SQLite WAL, committed before the response) -- the same work the BentoML service does per
request, so the two are compared like for like. Client errors are JSON 4xx {"error": ...}.

Environment: SCOPEML_MODEL_TAG (default scopeml-kws:latest), BENTOML_HOME (the model store),
SCOPEML_PREDICTION_LOG (the log file; default a file in the temp folder), SCOPEML_PEER_NO_LOG=1
to skip the prediction log (a benchmark variant that shows what logging costs).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import bentoml
import numpy as np
from fastapi import FastAPI, File, Request, UploadFile
from fastapi.responses import JSONResponse

from scopeml.data.audio import to_mono
from scopeml.features import monitoring_features
from scopeml.serving.bundle import ServingBundle
from scopeml.serving.decode import RequestError, check_length, check_not_silent, decode_audio
from scopeml.serving.log import PredictionLog

MODEL_TAG = os.environ.get("SCOPEML_MODEL_TAG", "scopeml-kws:latest")
_stored = bentoml.models.get(MODEL_TAG)
BUNDLE = ServingBundle.load(_stored.path, str(_stored.tag))
DEPLOY = json.loads((Path(_stored.path) / "serving.json").read_text())["deploy"]
MAX_BODY = int(DEPLOY["max_body_mb"] * 1024 * 1024)
LOG = (
    None
    if os.environ.get("SCOPEML_PEER_NO_LOG") == "1"
    else PredictionLog(
        os.environ.get("SCOPEML_PREDICTION_LOG", str(Path(tempfile.gettempdir()) / "scopeml_fastapi_peer.sqlite"))
    )
)

app = FastAPI(title="scopeml-kws (FastAPI peer)")


@app.exception_handler(RequestError)
async def _client_error(_request: Request, exc: RequestError) -> JSONResponse:
    return JSONResponse({"error": str(exc)}, status_code=int(exc.status))


@app.get("/readyz")
def readyz() -> dict:
    return {"ok": True, "model": BUNDLE.tag}


@app.post("/classify")
def classify(request: Request, audio: UploadFile = File(...)) -> dict:  # noqa: B008 (FastAPI's idiom for a form file)
    """Plain `def`: FastAPI runs it in its threadpool, as a user would write a blocking model call."""
    started = time.perf_counter()
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        return JSONResponse(
            {"error": f"request body of {declared} bytes is over the {MAX_BODY} byte limit"}, status_code=413
        )
    samples, sr = decode_audio(audio.file.read(), "audio")
    check_length(samples, sr, DEPLOY["max_clip_seconds"], "audio")
    mono = to_mono(samples)
    check_not_silent(mono, "audio")
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    waves = np.stack([BUNDLE.prepare(samples, sr)])
    (probs,) = BUNDLE.predict(waves)
    result = {"request_id": request_id, **BUNDLE.describe(probs)}
    if LOG is not None:
        LOG.append(
            [
                {
                    "time_utc": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                    "request_id": request_id,
                    "model_tag": BUNDLE.tag,
                    "endpoint": "classify",
                    "source": "audio",
                    "label": result["label"],
                    "confidence": result["confidence"],
                    "probabilities": result["probabilities"],
                    **monitoring_features(mono, sr),
                }
            ]
        )
    result["latency_ms"] = 1000 * (time.perf_counter() - started)
    return result
