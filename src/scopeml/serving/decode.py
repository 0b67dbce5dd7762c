"""Turn a request body into checked audio, or a client error that says what is wrong."""

from __future__ import annotations

import io
from http import HTTPStatus

import numpy as np


class RequestError(ValueError):
    """A problem with the request itself: never a server error."""

    def __init__(self, status: HTTPStatus, message: str):
        self.status = status
        super().__init__(message)


def decode_audio(data: bytes, what: str = "audio") -> tuple[np.ndarray, int]:
    """WAV or FLAC bytes to (channels, frames) float32 samples and the sample rate."""
    import soundfile as sf

    if not data:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{what}: the file is empty")
    if not (data[:4] == b"RIFF" and data[8:12] == b"WAVE") and data[:4] != b"fLaC":
        raise RequestError(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"{what}: not WAV or FLAC audio (send a .wav or .flac file)"
        )
    try:
        samples, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile's errors for truncated or corrupt headers
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{what}: corrupt or truncated audio ({exc})") from None
    return check(samples.T, int(sr), what)


def from_array(samples, sample_rate: int, what: str = "samples") -> tuple[np.ndarray, int]:
    try:
        array = np.asarray(samples, dtype=np.float32)
    except (TypeError, ValueError):
        raise RequestError(
            HTTPStatus.BAD_REQUEST, f"{what}: must be a list of numbers (or one list per channel)"
        ) from None
    if array.ndim == 1:
        array = array[None, :]
    if array.ndim != 2:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"{what}: must be a list of numbers or a list of channels")
    if array.shape[0] > array.shape[1]:
        array = array.T  # (frames, channels) as most libraries write it
    return check(array, sample_rate, what)


def check(samples: np.ndarray, sr: int, what: str) -> tuple[np.ndarray, int]:
    if not 1000 <= sr <= 192000:
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"{what}: sample rate {sr} Hz is outside 1000-192000 Hz")
    if samples.size == 0 or samples.shape[-1] == 0:
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"{what}: has no samples")
    if samples.shape[0] > 8:
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"{what}: {samples.shape[0]} channels (at most 8)")
    if not np.isfinite(samples).all():
        raise RequestError(HTTPStatus.UNPROCESSABLE_ENTITY, f"{what}: contains NaN or infinite samples")
    return samples, sr


def check_length(samples: np.ndarray, sr: int, limit_s: float, what: str) -> None:
    seconds = samples.shape[-1] / sr
    if seconds > limit_s:
        raise RequestError(
            HTTPStatus.UNPROCESSABLE_ENTITY, f"{what}: {seconds:.1f} s is longer than the {limit_s:g} s limit"
        )


def check_not_silent(mono: np.ndarray, what: str, floor_dbfs: float = -60.0) -> None:
    if float(np.max(np.abs(mono))) <= 10 ** (floor_dbfs / 20):
        raise RequestError(
            HTTPStatus.UNPROCESSABLE_ENTITY,
            f"{what}: silent (no sample above {floor_dbfs:g} dBFS); nothing to classify",
        )
