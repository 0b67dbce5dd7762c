"""The built-in data set: keywords spoken by eSpeak NG voices, made offline and deterministically.

Each (voice, word, pitch, rate) gives one clip; the voice is the speaker, so
splits by speaker test on voices never heard in training. Random leading and
trailing silence, gain and pink background noise are drawn from a per-clip
seed, so the same config always produces the same audio whatever order clips
are made in. The raw recording then goes through the configured preprocessing,
exactly as a file from disk would.

Two classes are not words: `unknown` is every other word (near-misses such as "yet" for "yes" among
them), spoken by the same voices, and `silence` is background noise with no word in it.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from scopeml.data import espeak
from scopeml.data.fingerprint import hash_config


class SynthKeywords:
    """Keywords spoken by eSpeak NG voices: every (voice, word, pitch, rate) once, made offline.

    A data source (scopeml.data.source) that generates its audio: the voice is the speaker, and
    each clip carries its voice, pitch, rate and the silence, noise and gain planted in it.
    `voices` empty means every variant of `language`; `exclude_voices` drops variants that only
    duplicate another voice. Ranges are [low, high].

    A word equal to `unknown_label` is not spoken as itself: each of its clips says one of
    `unknown_words` (`unknown_clips` per voice, pitch and rate); a word equal to `silence_label` is a
    clip of background noise at a level in `silence_dbfs` (RMS) with no word in it.
    """

    def __init__(
        self,
        words: list[str],
        language: str = "en",
        voices: list[str] = (),
        exclude_voices: list[str] = (),
        pitches: list[int] = (35, 50, 65),
        rates: list[int] = (140, 175, 210),
        lead_silence_ms: list[float] = (20.0, 250.0),
        gain_db: list[float] = (-18.0, 0.0),
        noise_snr_db: list[float] = (10.0, 40.0),
        unknown_words: list[str] = (),
        unknown_clips: int = 2,
        unknown_label: str = "unknown",
        silence_label: str = "silence",
        silence_dbfs: list[float] = (-55.0, -25.0),
        seed: int = 1234,
        progress: bool = True,
    ):
        self.words, self.language, self.seed, self.progress = list(words), language, seed, progress
        self.unknown_words, self.unknown_clips = list(unknown_words), unknown_clips
        self.unknown_label, self.silence_label, self.silence_dbfs = unknown_label, silence_label, list(silence_dbfs)
        self.voices, self.exclude_voices = list(voices), list(exclude_voices)
        self.pitches, self.rates = list(pitches), list(rates)
        self.lead_silence_ms, self.gain_db, self.noise_snr_db = list(lead_silence_ms), list(gain_db), list(noise_snr_db)
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(f"{key}: {why}" for key, why in problems))

    def problems(self) -> list[tuple[str, str]]:
        problems = []
        if not self.words:
            problems.append(("words", "needs at least one word to synthesize"))
        if self.unknown_label in self.words and not self.unknown_words:
            problems.append(("unknown_words", f"the class {self.unknown_label!r} needs other words to speak"))
        clash = sorted(set(self.unknown_words) & set(self.words))
        if clash:
            problems.append(("unknown_words", f"{clash} are keywords: a clip cannot be both"))
        if self.unknown_clips < 1:
            problems.append(("unknown_clips", "must be >= 1"))
        for key in ("lead_silence_ms", "gain_db", "noise_snr_db", "silence_dbfs"):
            lo_hi = getattr(self, key)
            if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
                problems.append((key, "must be [low, high] with low <= high"))
        if any(not 0 <= p <= 99 for p in self.pitches):
            problems.append(("pitches", "eSpeak pitch is 0..99"))
        if any(not 80 <= r <= 450 for r in self.rates):
            problems.append(("rates", "eSpeak rate is 80..450 words per minute"))
        return problems

    def fingerprint(self) -> str:
        """What besides the config decides the audio: the synthesizer's version and its voice list."""
        from importlib.metadata import version

        return hash_config({"espeakng_loader": version("espeakng-loader"), "voices": self.selected_voices()})

    def selected_voices(self) -> list[str]:
        voices = self.voices or espeak.list_voices(self.language)
        return [v for v in voices if v not in set(self.exclude_voices)]

    def clips(self) -> Iterator[dict]:
        """Speak every (voice, word, pitch, rate) and build a raw recording around it; scopeml preprocesses it."""
        sr, voices = espeak.sample_rate(), self.selected_voices()
        takes = [range(self.unknown_clips) if w == self.unknown_label else [0] for w in self.words]
        combos = [
            (voice, word, take, pitch, rate)
            for voice in voices
            for word, word_takes in zip(self.words, takes)
            for take in word_takes
            for pitch, rate in itertools.product(self.pitches, self.rates)
        ]
        # Each voice says the unknown words in its own shuffled order, without repeats until all are said.
        said_by: dict[str, int] = {}
        order = {
            v: np.random.default_rng([self.seed, k]).permutation(max(len(self.unknown_words), 1))
            for k, v in enumerate(voices)
        }
        for i, (voice, label, take, pitch, rate) in enumerate(_track(combos, "Synthesizing keywords", self.progress)):
            spoken = None
            if label == self.unknown_label:
                said_by[voice] = said_by.get(voice, -1) + 1
                spoken = self.unknown_words[order[voice][said_by[voice] % len(self.unknown_words)]]
            # Seeded per clip: the same clip whatever else is generated.
            raw, meta = self.speak(label, voice, pitch, rate, [self.seed, i], spoken)
            said = f"{label}:{meta['spoken']}" if meta["spoken"] not in (label, "") else label
            yield {
                "samples": raw,
                "sample_rate": sr,
                "label": label,
                "speaker": voice_family(voice),
                "clip_id": f"{voice}/{said}/p{pitch}/r{rate}" + (f"/t{take}" if take else ""),
                "voice": voice,
                "pitch": pitch,
                "rate": rate,
                **meta,
            }

    def speak(
        self, label: str, voice: str, pitch: int, rate: int, seed: list[int], spoken: str | None = None, **ranges
    ) -> tuple[np.ndarray, dict]:
        """One raw recording of a class at eSpeak's rate: the word itself, one of the unknown words (`spoken`,
        or drawn from the seed), or background noise for silence. `ranges` replaces lead_silence_ms,
        noise_snr_db or gain_db (a scenario's own). The meta says what was spoken ("" for silence)."""
        lead, snr, gain = (ranges.get(k) or getattr(self, k) for k in ("lead_silence_ms", "noise_snr_db", "gain_db"))
        rng = np.random.default_rng([*seed, 7])
        if label == self.silence_label:
            raw, meta = background(rng, espeak.sample_rate(), self.silence_dbfs, lead)
            return raw, {**meta, "spoken": ""}
        if label != self.unknown_label:
            spoken = label
        elif spoken is None:
            spoken = self.unknown_words[rng.integers(len(self.unknown_words))]
        raw, meta = render(spoken, voice, pitch, rate, seed, lead, snr, gain)
        return raw, {**meta, "spoken": spoken}


def from_source(source: Any) -> SynthKeywords | None:
    """The synthesized-speech source a data config's `source` mapping names (its defaults filled in by its
    constructor), or None when the data came from any other source: what monitoring borrows ranges from."""
    if not isinstance(source, dict) or "_target_" not in source:
        return None
    from scopeml.components import build

    built = build(source, "data.source", progress=False)
    return built if isinstance(built, SynthKeywords) else None


def voice_family(voice: str) -> str:
    """The speaker a voice belongs to: numbered variants of one voice (steph, steph2, steph3) are one speaker.

    scopeml-data found them near-identical across splits; splitting them apart leaks the voice into test.
    Short names with a number (m1, f3) are distinct voices and stay apart.
    """
    match = re.match(r"^(?P<lang>[^+]+)\+(?P<base>[A-Za-z]{3,}?)\d+$", voice)
    return f"{match['lang']}+{match['base'].lower()}" if match else voice.lower()


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


def background(rng: np.random.Generator, sr: int, level_dbfs, lead_silence_ms) -> tuple[np.ndarray, dict]:
    """A clip with no word in it: pink, white or brown noise at an RMS level in `level_dbfs`, as long as a
    word clip with its silences (so length says nothing about the class)."""
    n = int(sr * (rng.uniform(0.35, 0.8) + 2 * rng.uniform(*lead_silence_ms) / 1000))
    colour = ("pink", "white", "brown")[rng.integers(3)]
    noise = {"pink": _pink_noise(rng, n), "white": rng.standard_normal(n).astype(np.float32)}.get(colour)
    if noise is None:
        noise = np.cumsum(rng.standard_normal(n)).astype(np.float32)
        noise -= np.linspace(noise[0], noise[-1], n, dtype=np.float32)  # no drift: a rumble, not a ramp
    level = rng.uniform(*level_dbfs)
    raw = np.clip(noise / max(_rms(noise), 1e-9) * 10 ** (level / 20), -1.0, 1.0).astype(np.float32)
    return raw, {"planted_lead_ms": 1000 * n / sr, "planted_trail_ms": 0.0, "gain_db": level, "snr_db": float("nan")}


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
