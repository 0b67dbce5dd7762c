"""The built-in data set: keywords spoken by eSpeak NG voices, made offline and deterministically.

Each (voice, word, pitch, rate) gives one clip; the voice is the speaker, so
splits by speaker test on voices never heard in training. Random leading
silence, gain and pink background noise are drawn from a per-clip seed, so the
same config always produces the same audio whatever order clips are made in.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from scopeml.config.schema import SynthKeywordsData
from scopeml.data import espeak
from scopeml.data.fingerprint import hash_array


def source_info(cfg: SynthKeywordsData) -> dict:
    """What besides the config decides the audio: the synthesizer's version."""
    from importlib.metadata import version

    return {"espeakng_loader": version("espeakng-loader")}


def content_hash(cfg: SynthKeywordsData, manifest: pd.DataFrame, waves: np.ndarray) -> str:
    """Generated data has no files: the audio it produced is its content."""
    return hash_array(waves)


def make_clips(cfg: SynthKeywordsData, progress: bool = True) -> tuple[pd.DataFrame, np.ndarray]:
    import torch
    import torchaudio

    voices = list(cfg.voices) or espeak.list_voices(cfg.language)
    sr_out = cfg.audio.sample_rate
    n_out = int(round(cfg.audio.clip_seconds * sr_out))
    resampler = torchaudio.transforms.Resample(espeak.sample_rate(), sr_out)
    combos = list(itertools.product(voices, cfg.words, cfg.pitches, cfg.rates))

    waves = np.zeros((len(combos), n_out), dtype=np.float32)
    rows = []
    for i, (voice, word, pitch, rate) in enumerate(_track(combos, "Synthesizing keywords", progress)):
        rng = np.random.default_rng([cfg.seed, i])
        speech = _trim(espeak.synthesize(word, voice=voice, pitch=pitch, rate=rate))
        with torch.no_grad():
            speech = resampler(torch.from_numpy(speech)).numpy()
        lead = int(rng.uniform(*cfg.lead_silence_ms) / 1000 * sr_out)
        speech = speech[: max(n_out - lead, 0)]  # a slow voice may not fit after a long lead-in
        clip = np.zeros(n_out, dtype=np.float32)
        clip[lead : lead + len(speech)] = 0.5 * speech / max(np.abs(speech).max(), 1e-6)
        snr_db = rng.uniform(*cfg.noise_snr_db)
        clip += _pink_noise(rng, n_out) * _rms(clip[lead : lead + len(speech)]) / 10 ** (snr_db / 20)
        gain_db = rng.uniform(*cfg.gain_db)
        waves[i] = np.clip(clip * 10 ** (gain_db / 20), -1.0, 1.0)
        rows.append(
            {
                "clip_id": f"{voice}/{word}/p{pitch}/r{rate}",
                "source": f"espeak:{voice}:{word}:p{pitch}:r{rate}",
                "raw_label": word,
                "speaker": voice,
                "voice": voice,
                "pitch": pitch,
                "rate": rate,
                "lead_ms": 1000 * lead / sr_out,
                "speech_ms": 1000 * len(speech) / sr_out,
                "trail_ms": 1000 * (n_out - lead - len(speech)) / sr_out,
                "gain_db": gain_db,
                "snr_db": snr_db,
            }
        )
    return pd.DataFrame(rows), waves


def _trim(x: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """Drop eSpeak's own leading/trailing silence so the lead-in we add is the only one."""
    loud = np.flatnonzero(np.abs(x) > threshold * max(np.abs(x).max(), 1e-6))
    return x[loud[0] : loud[-1] + 1] if len(loud) else x


def _pink_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """1/f noise, closer to room and street noise than white noise, scaled to unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    noise = np.fft.irfft(spectrum, n).astype(np.float32)
    return noise / max(_rms(noise), 1e-9)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if len(x) else 0.0


def _track(items, description: str, enabled: bool):
    if not enabled:
        return items
    from rich.progress import track

    return track(items, description=description, transient=True)
