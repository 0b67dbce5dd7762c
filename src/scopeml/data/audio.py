"""Reading and shaping audio. Every problem names the file it came from."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class AudioError(ValueError):
    """A clip that cannot be used; the message starts with the file (or field) at fault."""

    def __init__(self, source: str, problem: str):
        self.source, self.problem = source, problem
        super().__init__(f"{source}: {problem}")


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode a file to float32 samples shaped (channels, frames) and its sample rate."""
    import soundfile as sf  # soundfile, not torchaudio.load: torchaudio 2.9+ needs torchcodec for I/O

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise AudioError(str(path), f"cannot be read ({exc.strerror or exc})") from None
    if size == 0:
        raise AudioError(str(path), "is an empty (zero-length) file")
    try:
        samples, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError or TypeError by format
        raise AudioError(str(path), f"is not readable audio ({exc})") from None
    return check_samples(samples.T, str(path)), int(sr)


def check_samples(samples: np.ndarray, source: str) -> np.ndarray:
    """Reject clips that would silently poison training or a prediction."""
    if samples.size == 0 or samples.shape[-1] == 0:
        raise AudioError(source, "has no samples")
    if not np.isfinite(samples).all():
        raise AudioError(source, "has NaN or infinite samples")
    return samples


def to_mono(samples: np.ndarray) -> np.ndarray:
    return samples.mean(axis=0) if samples.ndim == 2 else samples


# torchaudio's sinc resampler builds one kernel of (target, source + 2 * width) taps for the reduced ratio: small for
# the usual rates (44.1 kHz -> 16 kHz reduces to 441/160: 76k taps), but a rate with no common factor is not
# (16001 -> 16000 Hz: 16000 x 16000 taps, measured 4.8 GB and 23 s; 191999 Hz would need ~50 GB). Past this many
# taps the clip is resampled through its spectrum instead: any ratio, O(n log n) time, O(n) memory.
MAX_SINC_TAPS = 4_000_000


def resample(samples: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample along the last axis: torchaudio's sinc interpolation, or for an awkward ratio (see MAX_SINC_TAPS)
    band-limited resampling by FFT."""
    if orig_sr == target_sr:
        return samples.astype(np.float32, copy=False)
    import math

    import torch
    import torchaudio.functional as F

    x = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32))
    g = math.gcd(int(orig_sr), int(target_sr))
    src, dst = int(orig_sr) // g, int(target_sr) // g
    width = math.ceil(6 * src / (0.99 * min(src, dst)))  # torchaudio's lowpass_filter_width=6, rolloff=0.99
    if dst * (src + 2 * width) <= MAX_SINC_TAPS:
        return F.resample(x, orig_sr, target_sr).numpy()
    n = x.shape[-1]
    m = math.ceil(n * target_sr / orig_sr)  # the length torchaudio gives
    if n == 0 or m == 0:
        return np.zeros((*x.shape[:-1], m), np.float32)
    # irfft keeps the bins below the lower Nyquist frequency (zero-pads or drops the rest); m / n keeps the level
    out = torch.fft.irfft(torch.fft.rfft(x.double(), dim=-1), n=m, dim=-1) * (m / n)
    return out.float().numpy()


def fix_length(samples: np.ndarray, n: int, mode: str = "center") -> np.ndarray:
    """Zero-pad or crop to exactly n samples; `mode` says where the audio sits.

    center (default): the word stays in the middle. start: audio first, zeros after (a crop keeps
    the beginning). end: zeros first, audio last (a crop keeps the ending).
    """
    if mode not in ("center", "start", "end"):
        raise ValueError(f"mode must be 'center', 'start' or 'end', got {mode!r}")
    length = samples.shape[-1]
    if length == n:
        return samples
    excess = abs(length - n)
    lead = {"center": excess // 2, "start": 0, "end": excess}[mode]
    if length > n:
        return samples[..., lead : lead + n]
    pad = [(0, 0)] * (samples.ndim - 1) + [(lead, excess - lead)]
    return np.pad(samples, pad)
