"""Turn a request body into checked audio, or a client error that says what is wrong."""

from __future__ import annotations

import io
from http import HTTPStatus

import numpy as np

# Full scale is +-1.0. A float file may run a little over it (float headroom: a mix that was never limited), so
# peaks up to +-4.0 (+12 dBFS) are accepted as they are; beyond that the numbers are not audio at full scale
# (integer PCM values sent as floats, or garbage such as 1e30, which overflows the front end into NaN) and the
# request is refused with 422 `beyond_full_scale`, never answered or logged.
MAX_PEAK = 4.0


class RequestError(ValueError):
    """A problem with the request itself: never a server error. code: the error body's stable identifier
    (scopeml.serving.errors.CODES); field: the request field at fault."""

    def __init__(self, status: HTTPStatus, message: str, code: str | None = None, field: str | None = None):
        self.status = status
        self.code = code
        self.field = field
        super().__init__(message)


def decode_audio(data: bytes, what: str = "audio") -> tuple[np.ndarray, int]:
    """WAV or FLAC bytes to (channels, frames) float32 samples and the sample rate."""
    import soundfile as sf

    if not data:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{what}: the file is empty", "empty_file", what)
    if not (data[:4] == b"RIFF" and data[8:12] == b"WAVE") and data[:4] != b"fLaC":
        raise RequestError(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
            f"{what}: not WAV or FLAC audio (send a .wav or .flac file)",
            "unsupported_audio",
            what,
        )
    try:
        samples, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's errors for truncated or corrupt headers
        reason = getattr(exc, "error_string", None) or str(exc)  # the reason alone: str(exc) names the BytesIO
        raise RequestError(
            HTTPStatus.BAD_REQUEST, f"{what}: corrupt or truncated audio ({reason})", "corrupt_audio", what
        ) from None
    return check(samples.T, int(sr), what)


def from_array(samples, sample_rate: int, what: str = "samples") -> tuple[np.ndarray, int]:
    try:
        array = np.asarray(samples, dtype=np.float32)
    except (TypeError, ValueError):
        raise RequestError(
            HTTPStatus.BAD_REQUEST,
            f"{what}: must be a list of numbers (or one list per channel)",
            "invalid_field",
            what,
        ) from None
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise RequestError(
            HTTPStatus.BAD_REQUEST, f"{what}: must be a list of numbers or a list of channels", "invalid_field", what
        )
    if array.shape[0] > array.shape[1]:
        array = array.T  # (frames, channels) as most libraries write it
    return check(array, sample_rate, what)


def check(samples: np.ndarray, sr: int, what: str) -> tuple[np.ndarray, int]:
    if not 1000 <= sr <= 192000:
        raise RequestError(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            f"{what}: sample rate {sr} Hz is outside 1000-192000 Hz",
            "invalid_sample_rate",
            what,
        )
    if samples.size == 0 or samples.shape[-1] == 0:
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"{what}: has no samples", "no_samples", what)
    if samples.shape[0] > 8:
        raise RequestError(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            f"{what}: {samples.shape[0]} channels (at most 8)",
            "too_many_channels",
            what,
        )
    if not np.isfinite(samples).all():
        raise RequestError(
            HTTPStatus.UNPROCESSABLE_ENTITY, f"{what}: contains NaN or infinite samples", "non_finite_samples", what
        )
    peak = float(np.max(np.abs(samples)))
    if peak > MAX_PEAK:
        hint = "; integer PCM values must be divided by 32768" if peak >= 128 else ""
        raise RequestError(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            f"{what}: peak sample {peak:.3g} is beyond full scale (samples are floats in [-1, 1]; "
            f"up to +-{MAX_PEAK:g} is accepted as headroom){hint}",
            "beyond_full_scale",
            what,
        )
    return samples, sr


def check_length(samples: np.ndarray, sr: int, limit_s: float, what: str) -> None:
    seconds = samples.shape[-1] / sr
    if seconds > limit_s:
        raise RequestError(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            f"{what}: {seconds:.1f} s is longer than the {limit_s:g} s limit",
            "too_long",
            what,
        )


def check_not_silent(mono: np.ndarray, what: str, floor_dbfs: float = -60.0) -> None:
    if float(np.max(np.abs(mono))) <= 10 ** (floor_dbfs / 20):
        raise RequestError(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            f"{what}: silent (no sample above {floor_dbfs:g} dBFS); nothing to classify",
            "silent",
            what,
        )


def finite_record(record: dict, required: tuple[str, ...] = ("confidence",)) -> dict:
    """A prediction record checked at the log's door: its confidence and probabilities must be finite numbers
    (else ValueError: a non-finite prediction is never stored); any other float that is not finite (a monitoring
    feature that could not be measured) is stored as None (NULL), never as NaN or infinity."""
    probs = record.get("probabilities") or {}
    bad = [k for k in required if not _finite(record.get(k))]
    bad += [f"probabilities[{c}]" for c, p in probs.items() if not _finite(p)]
    if bad:
        raise ValueError(f"prediction {record.get('request_id')}: non-finite {', '.join(bad)}; not logged")
    return {k: None if isinstance(v, (float, np.floating)) and not np.isfinite(v) else v for k, v in record.items()}


def _finite(value) -> bool:
    return (
        isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and np.isfinite(value)
    )
