"""Property tests of the decoder and the preprocessing, through the service's own handlers (issue 13).

Whatever bytes arrive as a file, and whatever array of samples (any shape, dtype, values) at whatever sample rate,
the service either answers a well-formed prediction (finite probabilities of every class, summing to 1) or a
client error (4xx): never another exception, which the server would answer with 500. The handlers are those of
the real service class, run in this process on the packaged tiny model: decode, input checks, the training
preprocessing, the model, the prediction log.
"""

from __future__ import annotations

import asyncio
import math
import time
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from serving_helpers import encode, tone

pytestmark = pytest.mark.slow

BOUNDED = settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module")
def service(packaged, tmp_path_factory):
    """The service class behind `bentoml serve`, instantiated here on the packaged tiny model."""
    import os

    saved = {k: os.environ.get(k) for k in ("BENTOML_HOME", "BENTOML_DO_NOT_TRACK", "SCOPEML_PREDICTION_LOG")}
    os.environ.update(
        BENTOML_HOME=str(packaged["home"]),
        BENTOML_DO_NOT_TRACK="True",
        SCOPEML_PREDICTION_LOG=str(tmp_path_factory.mktemp("properties") / "predictions.sqlite"),
    )
    try:
        from scopeml.serving.service import KeywordSpotting

        yield KeywordSpotting.inner()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def context() -> SimpleNamespace:
    """What the handlers read of BentoML's request context."""
    return SimpleNamespace(request=SimpleNamespace(headers={}), response=SimpleNamespace(headers={}))


def outcome(svc, call, events: bool = True) -> str:
    """Run one handler call: "ok" with a well-formed prediction, or the 4xx status of a client error. Any other
    exception propagates (the server would answer it with 500) and fails the test."""
    from scopeml.serving.errors import ClientError

    try:
        result = asyncio.run(call)
    except ClientError as exc:
        status = int(exc.error_code)
        assert 400 <= status < 500, (status, exc)
        if events:
            event(f"{status} {exc.code}")
        return str(status)
    probs = result.probabilities
    assert list(probs) == svc.bundle.classes
    values = np.array(list(probs.values()))
    assert np.isfinite(values).all() and (values >= 0).all() and abs(values.sum() - 1.0) <= 1e-5, probs
    assert result.label in probs and result.confidence == max(probs.values())
    if events:
        event("200 prediction")
    return "ok"


def valid_audio() -> dict[str, bytes]:
    clip = tone(seconds=0.4)
    return {
        "wav16": encode(clip),
        "wav_float": encode(np.stack([clip, -clip], axis=1), sr=8000, subtype="FLOAT"),
        "flac": encode(clip, sr=22050, fmt="FLAC"),
    }


def mutated(data: bytes):
    """A valid file cut short, with bytes overwritten, or with bytes inserted."""
    return st.tuples(
        st.integers(0, len(data)),
        st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)), max_size=12),
        st.binary(max_size=64),
        st.integers(0, len(data)),
    ).map(lambda t: _mutate(data, *t))


def _mutate(data: bytes, cut: int, edits, insert: bytes, at: int) -> bytes:
    out = bytearray(data)
    for i, value in edits:
        out[i] = value
    out[at:at] = insert
    return bytes(out[: max(cut, 12)])


ANY_BYTES = st.one_of(
    st.binary(max_size=2048),
    st.binary(max_size=512).map(lambda b: b"RIFF" + b[:4] + b"WAVE" + b[4:]),
    st.binary(max_size=512).map(lambda b: b"fLaC" + b),
    *[mutated(data) for data in valid_audio().values()],
)


@BOUNDED
@given(data=ANY_BYTES)
def test_any_bytes_decode_to_checked_audio_or_a_4xx_and_classify_likewise(service, tmp_path_factory, data):
    from scopeml.serving.decode import MAX_PEAK, RequestError, decode_audio

    try:
        samples, sr = decode_audio(data)
    except RequestError as exc:
        assert 400 <= exc.status < 500 and exc.code and exc.field == "audio", exc
    else:
        assert samples.dtype == np.float32 and samples.ndim == 2 and 1 <= samples.shape[0] <= 8, samples.shape
        assert samples.shape[1] >= 1 and np.isfinite(samples).all() and np.abs(samples).max() <= MAX_PEAK
        assert 1000 <= sr <= 192000
    path = tmp_path_factory.getbasetemp() / "upload.bin"
    path.write_bytes(data)
    outcome(service, service.classify(path, context()))


DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.float16, np.float32, np.float64, np.complex64]
# Half the draws in the accepted 1000-192000 Hz, so that most arrays reach the preprocessing and the model.
RATES = st.one_of(
    st.sampled_from([0, -1, -16000, 1, 999, 1000, 8000, 11025, 16000, 16001, 44100, 44101, 191999, 192000, 192001]),
    st.integers(-(2**63), 2**63),
    st.integers(1000, 192000),
    st.sampled_from([8000, 16000, 22050, 44100, 48000]),
)


@st.composite
def sample_arrays(draw):
    """Any dtype and any 0-3-d shape, sides 0 to 6000 (a clip of up to 6000 frames, or frames by channels),
    elements anywhere in the dtype's range, NaN, infinities and huge floats included."""
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(
        st.one_of(
            hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4),
            st.tuples(st.integers(0, 6000)),
            st.tuples(st.integers(1, 3), st.integers(0, 6000)),
            st.tuples(st.integers(0, 6000), st.integers(1, 10)),
        )
    )
    if dtype.kind in "fc":  # drawn as float64, then cast: beyond float16's range is infinity, as a client's would be
        level = draw(st.sampled_from([1e-6, 0.01, 0.5, 1.0, 4.0, 4.5, 1e30]))
        fill = st.floats(-level, level)
        elements = st.one_of(fill, st.sampled_from([math.nan, math.inf, -math.inf, 0.0]))
        array = draw(hnp.arrays(np.float64, shape, elements=elements, fill=fill if draw(st.booleans()) else elements))
        with np.errstate(over="ignore", invalid="ignore"):
            return array.astype(dtype)
    small = st.integers(-1 if dtype.kind == "i" else 0, 1).map(dtype.type)  # within full scale
    return draw(hnp.arrays(dtype, shape, elements=draw(st.sampled_from([hnp.from_dtype(dtype), small]))))


@pytest.mark.filterwarnings("ignore::numpy.exceptions.ComplexWarning", "ignore:overflow:RuntimeWarning")
@settings(BOUNDED, max_examples=600)
@given(samples=sample_arrays(), rate=RATES, as_list=st.booleans())
def test_any_samples_at_any_rate_give_probabilities_or_a_4xx(service, samples, rate, as_list):
    started = time.monotonic()
    outcome(service, service.classify_array(samples.tolist() if as_list else samples, rate, context()))
    assert time.monotonic() - started < 20, "one clip took over 20 s"


RAGGED = st.recursive(
    st.one_of(st.floats(allow_nan=True), st.integers(-(2**70), 2**70), st.text(max_size=3), st.none()),
    lambda inner: st.lists(inner, max_size=5),
    max_leaves=20,
)


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")
@BOUNDED
@given(samples=RAGGED, rate=RATES)
def test_any_nested_json_value_as_samples_gives_probabilities_or_a_4xx(service, samples, rate):
    outcome(service, service.classify_array(samples, rate, context()))


def test_an_awkward_sample_rate_is_resampled_in_bounded_time_and_memory():
    """Regression (found by the property test above): torchaudio's sinc kernel for a rate with no common factor
    with 16 kHz is huge (16001 Hz: 4.8 GB and 23 s; 191999 Hz: ~50 GB), so one request with such a sample_rate
    could take the server down. Such ratios are resampled by FFT now; the usual rates keep torchaudio's sinc."""
    import torch
    import torchaudio.functional as F

    from scopeml.data.audio import resample

    for sr in (16001, 44101, 191999):
        x = tone(seconds=1.0, sr=sr, freq=440.0)
        started = time.monotonic()
        y = resample(x, sr, 16000)
        assert time.monotonic() - started < 5 and y.dtype == np.float32 and y.shape == (16000,)
        assert np.argmax(np.abs(np.fft.rfft(y))) == 440 and abs(np.abs(y[1000:-1000]).max() - 0.3) < 0.01
    for sr in (8000, 11025, 22050, 44100, 48000):
        x = tone(seconds=0.5, sr=sr)
        assert np.array_equal(resample(x, sr, 16000), F.resample(torch.from_numpy(x), sr, 16000).numpy())


def test_a_wav_at_an_awkward_rate_is_classified(service, tmp_path):
    path = tmp_path / "clip.wav"
    path.write_bytes(encode(tone(sr=44101), sr=44101))
    assert outcome(service, service.classify(path, context()), events=False) == "ok"
