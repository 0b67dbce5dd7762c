"""The built-in data set: keywords spoken by eSpeak NG voices, made offline and deterministically.

Each (voice, word, pitch, rate) gives one clip; the voice is the speaker, so
splits by speaker test on voices never heard in training. Random leading and
trailing silence, gain and pink background noise are drawn from a per-clip
seed, so the same config always produces the same audio whatever order clips
are made in. The raw recording then goes through the configured preprocessing,
exactly as a file from disk would.
"""

from __future__ import annotations

import itertools
import re

import numpy as np
import pandas as pd

from scopeml.config.schema import SynthKeywordsData
from scopeml.data import espeak, preprocess
from scopeml.data.fingerprint import hash_array


def source_info(cfg: SynthKeywordsData) -> dict:
    """What besides the config decides the audio: the synthesizer's version and its voice list."""
    from importlib.metadata import version

    return {"espeakng_loader": version("espeakng-loader"), "voices": select_voices(cfg)}


def select_voices(cfg: SynthKeywordsData) -> list[str]:
    voices = list(cfg.voices) or espeak.list_voices(cfg.language)
    return [v for v in voices if v not in set(cfg.exclude_voices)]


def voice_family(voice: str) -> str:
    """The speaker a voice belongs to: numbered variants of one voice (steph, steph2, steph3) are one speaker.

    scopeml-data found them near-identical across splits; splitting them apart leaks the voice into test.
    Short names with a number (m1, f3) are distinct voices and stay apart.
    """
    match = re.match(r"^(?P<lang>[^+]+)\+(?P<base>[A-Za-z]{3,}?)\d+$", voice)
    return f"{match['lang']}+{match['base'].lower()}" if match else voice.lower()


def content_hash(cfg: SynthKeywordsData, manifest: pd.DataFrame, waves: np.ndarray) -> str:
    """Generated data has no files: the audio it produced is its content."""
    return hash_array(waves)


def make_clips(cfg: SynthKeywordsData, progress: bool = True) -> tuple[pd.DataFrame, np.ndarray, list[dict]]:
    """Speak every (voice, word, pitch, rate), build a raw recording around it, then preprocess it like any file."""
    voices = select_voices(cfg)
    sr = espeak.sample_rate()
    combos = list(itertools.product(voices, cfg.words, cfg.pitches, cfg.rates))
    waves, rows = [], []
    for i, (voice, word, pitch, rate) in enumerate(_track(combos, "Synthesizing keywords", progress)):
        # Seeded per clip: the same clip whatever else is generated.
        raw, meta = render(
            word,
            voice,
            pitch,
            rate,
            [cfg.seed, i],
            list(cfg.lead_silence_ms),
            list(cfg.noise_snr_db),
            list(cfg.gain_db),
        )
        waves.append(preprocess.apply(raw, sr, cfg.preprocess))
        rows.append(
            {
                "clip_id": f"{voice}/{word}/p{pitch}/r{rate}",
                "source": f"espeak:{voice}:{word}:p{pitch}:r{rate}",
                "raw_label": word,
                "speaker": voice_family(voice),
                "orig_sample_rate": sr,
                "orig_channels": 1,
                **preprocess.measure(raw, sr, cfg.preprocess.trim.threshold_db),
                "voice": voice,
                "pitch": pitch,
                "rate": rate,
                **meta,
            }
        )
    return pd.DataFrame(rows), np.stack(waves), []


def render(
    word: str, voice: str, pitch: int, rate: int, seed: list[int], lead_silence_ms, noise_snr_db, gain_db
) -> tuple[np.ndarray, dict]:
    """One raw recording at eSpeak's rate: silence, the word, silence, pink noise at an SNR, a gain.

    The single definition of a synthesized clip: the recipe and scopeml-simulate both call it.
    """
    rng = np.random.default_rng(seed)
    sr = espeak.sample_rate()
    speech = _trim(espeak.synthesize(word, voice=voice, pitch=pitch, rate=rate))
    speech = 0.5 * speech / max(np.abs(speech).max(), 1e-6)
    lead, trail = (int(rng.uniform(*lead_silence_ms) / 1000 * sr) for _ in range(2))
    raw = np.concatenate([np.zeros(lead, np.float32), speech, np.zeros(trail, np.float32)])
    snr_db = rng.uniform(*noise_snr_db)
    raw += _pink_noise(rng, len(raw)) * _rms(speech) / 10 ** (snr_db / 20)
    gain = rng.uniform(*gain_db)
    raw = np.clip(raw * 10 ** (gain / 20), -1.0, 1.0).astype(np.float32)
    return raw, {
        "planted_lead_ms": 1000 * lead / sr,
        "planted_trail_ms": 1000 * trail / sr,
        "gain_db": gain,
        "snr_db": snr_db,
    }


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
