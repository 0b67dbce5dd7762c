"""The BentoML service: `bentoml serve` at the repo root (bentofile.yaml) serves the packaged model.

Endpoints (POST): /classify (multipart `audio`: WAV or FLAC), /classify_array (JSON samples +
sample_rate), /classify_many (JSON list of clips), /segments (long audio: VAD first, then one
prediction per voiced segment), /info. BentoML adds /livez, /readyz and Prometheus /metrics.
Bad input gets a 4xx naming the field and the reason, in the one error body of scopeml.serving.errors (for every
endpoint and status); overload beyond deploy.max_concurrency gets 429 with Retry-After; every prediction is
committed to the prediction log before the response is sent, and no prediction with a non-finite number is
answered or logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
import uuid
from datetime import datetime, timezone
from http import HTTPStatus
from pathlib import Path

import bentoml
import numpy as np
from pydantic import BaseModel, Field

from scopeml.serving.errors import ClientError, install_log_filter
from scopeml.serving.limits import RequestLimits
from scopeml.serving.sockets import listen_per_worker

MODEL_TAG = os.environ.get("SCOPEML_MODEL_TAG", "scopeml-kws:latest")


def _settings() -> dict:
    """Deploy settings packaged with the model: batching and limits are fixed when the service is defined."""
    try:
        stored = bentoml.models.get(MODEL_TAG)
    except bentoml.exceptions.NotFound:
        raise RuntimeError(
            f"no model {MODEL_TAG} in the BentoML store ({os.environ.get('BENTOML_HOME', '~/bentoml')}); "
            "run scopeml-package <selection.json> first"
        ) from None
    return json.loads((Path(stored.path) / "serving.json").read_text())["deploy"]


DEPLOY = _settings()
BATCHING = DEPLOY["batching"]
PREDICTION_LOG = os.environ.get("SCOPEML_PREDICTION_LOG", DEPLOY["prediction_log"])
LOG_SETTING = "deploy.prediction_log" + (" (SCOPEML_PREDICTION_LOG)" if "SCOPEML_PREDICTION_LOG" in os.environ else "")


def _check_log() -> None:
    """A malformed URL or an unreachable database stops `bentoml serve` here, at start-up, naming the setting
    (within the connect timeout), instead of answering 500 to every request (issue 14)."""
    from scopeml.serving.log import check_log

    check_log(PREDICTION_LOG, LOG_SETTING)


_check_log()
TIMEOUT_S = 60  # BentoML's traffic timeout; the middleware answers 504 itself a little before it
install_log_filter()  # client errors: one line from the middleware, not BentoML's traceback


class Clip(BaseModel):
    samples: list[float] | list[list[float]] = Field(description="mono samples, or one list per channel")
    sample_rate: int = Field(description="Hz; resampled to the model's rate")


# Typed responses: BentoML serializes a pydantic model directly, where a plain dict return made it
# rebuild a JSON schema on every request (~10% of a request's CPU, profiled with py-spy).
class Prediction(BaseModel):
    request_id: str
    label: str
    confidence: float = Field(description="calibrated probability of the label")
    probabilities: dict[str, float] = Field(description="calibrated probability of every class")
    model: str = Field(description="the BentoML model tag that answered")


class Classified(Prediction):
    latency_ms: float = Field(description="server-side time for this request")


class Segment(Prediction):
    start_s: float
    end_s: float


class ManyClassified(BaseModel):
    results: list[Prediction]
    model: str
    latency_ms: float


class Segments(BaseModel):
    segments: list[Segment]
    duration_s: float
    model: str
    latency_ms: float


def _torch_threads() -> None:
    """Split the cores between the workers: N workers each spinning up all cores' threads thrash."""
    import torch

    torch.set_num_threads(DEPLOY.get("torch_threads") or max(1, (os.cpu_count() or 1) // DEPLOY["workers"]))


@bentoml.service(workers=1, traffic={"timeout": TIMEOUT_S})
class Classifier:
    """The model alone, behind BentoML's adaptive batching (used when deploy.batching.enabled)."""

    bento_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        from scopeml.serving.bundle import ServingBundle

        self.bundle = ServingBundle.load(self.bento_model.path, str(self.bento_model.tag), DEPLOY.get("device", "cpu"))

    @bentoml.api(batchable=True, max_batch_size=BATCHING["max_batch_size"], max_latency_ms=BATCHING["max_latency_ms"])
    def predict(self, waves: np.ndarray) -> np.ndarray:
        return self.bundle.predict(waves)


@bentoml.service(name="scopeml-kws", workers=DEPLOY["workers"], traffic={"timeout": TIMEOUT_S})
class KeywordSpotting:
    """Handlers are async: decoding, preprocessing and logging are short CPU steps run on the worker's
    event loop (one core per worker; deploy.workers scales across cores), and with batching on,
    many requests can wait on the batched Classifier at once, which is what lets batches form."""

    bento_model = bentoml.models.BentoModel(MODEL_TAG)
    if BATCHING["enabled"]:
        classifier = bentoml.depends(Classifier)

    def __init__(self) -> None:
        from scopeml.serving.bundle import ServingBundle
        from scopeml.serving.log import open_log

        _torch_threads()
        install_log_filter()
        self.bundle = ServingBundle.load(self.bento_model.path, str(self.bento_model.tag), DEPLOY.get("device", "cpu"))
        self.log = open_log(  # SQLite (a path) or a PostgreSQL server that other servers share (a URL)
            PREDICTION_LOG, list(self.bundle.custom_features), LOG_SETTING
        )
        from scopeml.serving.vad import from_settings

        # deploy.vad as packaged (a model packaged before it was configurable gets the default); loaded now,
        # not on the first /segments request
        self.vad = from_settings(DEPLOY.get("vad"))
        getattr(self.vad, "load", lambda: None)()
        self._vad_lock = threading.Lock()  # a user's detector need not be thread-safe: one call at a time

    # ------------------------------------------------------------------ endpoints
    @bentoml.api(route="/classify")
    async def classify(self, audio: Path, ctx: bentoml.Context) -> Classified:
        """One clip as a WAV or FLAC file (multipart field `audio`)."""
        return await self._classify_one(lambda: _decode_file(audio, "audio"), ctx, "classify", source="audio")

    @bentoml.api(route="/classify_array")
    async def classify_array(
        self, samples: list[float] | list[list[float]], sample_rate: int, ctx: bentoml.Context
    ) -> Classified:
        """One clip as JSON samples (mono list, or one list per channel) and its sample rate."""
        from scopeml.serving.decode import from_array

        return await self._classify_one(
            lambda: _guard(from_array, samples, sample_rate), ctx, "classify_array", source="array"
        )

    @bentoml.api(route="/classify_many")
    async def classify_many(self, clips: list[Clip], ctx: bentoml.Context) -> ManyClassified:
        """Several clips in one call; answered in order."""
        from scopeml.serving.decode import from_array

        started = time.perf_counter()
        if not clips or len(clips) > DEPLOY["max_clips_per_request"]:
            raise ClientError(
                HTTPStatus.UNPROCESSABLE_ENTITY,
                f"clips: send 1 to {DEPLOY['max_clips_per_request']} clips, got {len(clips)}",
                code="too_many_clips",
                field="clips",
            )
        decoded = [_guard(from_array, c.samples, c.sample_rate, f"clips[{i}]") for i, c in enumerate(clips)]
        results = await self._predict_and_log(decoded, ctx, "classify_many", [f"clips[{i}]" for i in range(len(clips))])
        return ManyClassified(
            results=[Prediction(**r) for r in results],
            model=self.bundle.tag,
            latency_ms=1000 * (time.perf_counter() - started),
        )

    @bentoml.api(route="/segments")
    async def segments(self, audio: Path, ctx: bentoml.Context) -> Segments:
        """Long audio: find voiced segments first, classify each; silence gives no segments, not a guess."""
        from scopeml.data.audio import to_mono

        started = time.perf_counter()
        samples, sr = _decode_file(audio, "audio", DEPLOY["max_long_audio_seconds"], allow_silence=True)
        mono = to_mono(samples)
        # in a thread: on two minutes of audio the detector takes about a second, and on the event loop that
        # second would stall every other request this worker holds
        spans = await asyncio.to_thread(self._find_segments, mono, sr)
        results = (
            await self._predict_and_log(
                [(mono[None, a:b], sr) for a, b in spans], ctx, "segments", [f"audio@{a / sr:.2f}s" for a, _ in spans]
            )
            if spans
            else []
        )
        return Segments(
            segments=[Segment(**r, start_s=a / sr, end_s=b / sr) for r, (a, b) in zip(results, spans)],
            duration_s=len(mono) / sr,
            model=self.bundle.tag,
            latency_ms=1000 * (time.perf_counter() - started),
        )

    @bentoml.api(route="/info")
    def info(self) -> dict:
        """The served model: tag, classes, preprocessing, scoping targets and offline metrics."""
        i = self.bundle.info
        return {
            "model": self.bundle.tag,
            "classes": self.bundle.classes,
            "preprocess": i["preprocess"],
            "temperature": self.bundle.temperature,
            "scoping": i["scoping"],
            "metrics": i["metrics"],
            "batching": BATCHING,
            "workers": DEPLOY["workers"],
            "device": self.bundle.device,
            "vad": self.vad.settings() if hasattr(self.vad, "settings") else DEPLOY.get("vad"),
            "limits": {k: DEPLOY[k] for k in ("max_body_mb", "max_clip_seconds", "max_concurrency")},
            "run_dir": i.get("run_dir"),
        }

    # ------------------------------------------------------------------ internals
    def _find_segments(self, mono: np.ndarray, sr: int) -> list[tuple[int, int]]:
        with self._vad_lock:
            return self.vad.segments(mono, sr)

    async def _classify_one(self, decode, ctx: bentoml.Context, endpoint: str, source: str) -> Classified:
        started = time.perf_counter()
        samples, sr = decode()
        from scopeml.data.audio import to_mono
        from scopeml.serving.decode import RequestError, check_length, check_not_silent

        try:
            check_length(samples, sr, DEPLOY["max_clip_seconds"], source)
            check_not_silent(to_mono(samples), source)
        except RequestError as exc:
            raise ClientError(exc.status, str(exc), code=exc.code, field=exc.field) from None
        (result,) = await self._predict_and_log([(samples, sr)], ctx, endpoint, [source])
        return Classified(**result, latency_ms=1000 * (time.perf_counter() - started))

    async def _batched_predict(self, waves: np.ndarray, ctx: bentoml.Context) -> np.ndarray:
        """The model call through the batched Classifier. The hop is a pooled HTTP connection that the
        Classifier's server may close under load (BentoML issues 3669, 4238: ServerDisconnectedError);
        the call has no side effects, so it is retried, and if it keeps failing the request is shed
        with 503 and a retry hint rather than a 500."""
        import aiohttp

        for attempt in range(3):
            try:
                return await self.classifier.to_async.predict(waves)
            except (aiohttp.ClientConnectionError, aiohttp.ServerDisconnectedError):
                if attempt == 2:
                    raise _retry_later("the batched model is overloaded; retry shortly", "unavailable") from None
        raise AssertionError("unreachable")

    async def _predict_and_log(
        self, clips: list[tuple[np.ndarray, int]], ctx: bentoml.Context, endpoint: str, sources: list[str]
    ) -> list[dict]:
        from scopeml.serving.decode import finite_record

        request_id = ctx.request.headers.get("x-request-id") or uuid.uuid4().hex  # the middleware's, normally
        waves = np.stack([self.bundle.prepare(s, sr) for s, sr in clips])
        probs = await self._batched_predict(waves, ctx) if BATCHING["enabled"] else self.bundle.predict(waves)
        for p, source in zip(probs, sources):  # the input checks make this unreachable; never answer or log NaN
            if not np.isfinite(p).all():
                raise ClientError(
                    HTTPStatus.UNPROCESSABLE_ENTITY,
                    f"{source}: the model gave non-finite probabilities for this clip; nothing was answered or logged",
                    code="non_finite_result",
                    field=source.split("@")[0],
                )
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        results, records = [], []
        for k, ((samples, sr), wave, p, source) in enumerate(zip(clips, waves, probs, sources)):
            rid = request_id if len(clips) == 1 else f"{request_id}-{k}"
            result = {"request_id": rid, **self.bundle.describe(p)}
            results.append(result)
            records.append(
                {
                    "time_utc": now,
                    "request_id": rid,
                    "model_tag": self.bundle.tag,
                    "endpoint": endpoint,
                    "source": source,
                    "label": result["label"],
                    "confidence": result["confidence"],
                    "probabilities": result["probabilities"],
                    **self.bundle.features(wave, samples.shape[-1] / sr),
                }
            )
        # committed before the response: an acknowledged prediction is never lost; a non-finite feature is NULL
        from scopeml.serving.log import LogUnavailable

        try:
            self.log.append([finite_record(r) for r in records])
        except LogUnavailable as exc:
            logging.getLogger("scopeml.serving").warning("%s", exc)  # the reason, for the operator only
            raise _retry_later(
                "the prediction log is unavailable, so nothing was answered; retry shortly", "log_unavailable"
            ) from None
        ctx.response.headers["x-request-id"] = request_id
        return results


def _decode_file(audio: Path, what: str, limit_s: float | None = None, allow_silence: bool = False):
    from scopeml.serving.decode import check_length, decode_audio

    samples, sr = _guard(decode_audio, Path(audio).read_bytes(), what)
    if limit_s is not None:
        _guard(check_length, samples, sr, limit_s, what)
    return samples, sr


def _retry_later(message: str, code: str) -> ClientError:
    """503 with a one-second retry hint: the request was fine, a part the service needs is not, for now."""
    return ClientError(HTTPStatus.SERVICE_UNAVAILABLE, message, code=code, headers={"retry-after": "1"})


def _guard(fn, *args):
    from scopeml.serving.decode import RequestError

    try:
        return fn(*args)
    except RequestError as exc:
        raise ClientError(exc.status, str(exc), code=exc.code, field=exc.field) from None


def _endpoints(service) -> dict[str, dict]:
    """Each POST endpoint's input, from its BentoML API: file fields (multipart), other fields, required ones."""
    endpoints = {}
    for api in service.apis.values():
        spec = api.input_spec
        files = list(getattr(spec, "multipart_fields", None) or [])
        endpoints[api.route] = {
            "files": files,
            "fields": [f for f in spec.model_fields if f not in files],
            "required": [f for f, info in spec.model_fields.items() if info.is_required()],
        }
    return endpoints


KeywordSpotting.add_asgi_middleware(
    RequestLimits,
    max_body_bytes=int(DEPLOY["max_body_mb"] * 1024 * 1024),
    max_concurrency=DEPLOY["max_concurrency"],
    endpoints=_endpoints(KeywordSpotting),
    deadline_s=TIMEOUT_S - 5,
)

# In each API worker, before BentoML starts uvicorn: a listening socket of the worker's own (SO_REUSEPORT), so
# that connections spread over the workers instead of all going to whichever woke first (scopeml.serving.sockets).
listen_per_worker(KeywordSpotting.name, int(KeywordSpotting.config.get("workers") or 1))
