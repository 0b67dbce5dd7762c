"""A baseline that needs no training: PocketSphinx's off-the-shelf en-US recognizer, restricted to the class words.

The pocketsphinx wheel ships its acoustic model, dictionary and language model, so this runs offline. The
recognizer decodes each clip against a JSGF grammar that accepts exactly one of the class phrases (the class
name, with `_`/`-` read as spaces, every word in the CMU dictionary): it is told which words can occur, like the
models it is compared with, and nothing else.

Classes that name a category rather than a word (`unknown`, `silence`, `noise`, `background`, `other`, a name
that starts or ends with `_` such as `_background_noise_`, the data's `labels.unknown` class) and names with a
word missing from the dictionary are not in the grammar. They are predicted only when the recognizer hears none
of the phrases (no hypothesis): a silence-like class first (silence, background, noise), otherwise the first such
class. A closed grammar always picks the closest phrase for a real word outside it, so an `unknown` class is
predicted only for clips where nothing was recognized; expect its recall to be low. With no such class, "heard
nothing" counts as wrong.

Audio goes in as 16 kHz mono int16 (resampled when the recipe's rate differs). Imported only when
`data.baseline.pocketsphinx` is on.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import numpy as np

from scopeml.data.audio import resample
from scopeml.data.dataset import DataError, KeywordData
from scopeml.metrics import category_indices, classification_metrics, is_category

SAMPLE_RATE = 16000  # the en-US acoustic model's rate
SILENCE_LIKE = ("silence", "background", "noise")


def class_phrases(
    classes: list[str], lookup: Callable[[str], str | None], unknown: str | None = None
) -> dict[str, str]:
    """Class -> the phrase the grammar accepts for it, for classes whose every word the dictionary knows.
    `lookup` is the decoder's dictionary lookup (a pronunciation, or None for a word it does not know)."""
    phrases = {}
    for name in classes:
        if is_category(name, unknown):
            continue
        words = re.split(r"[\s_-]+", name.lower().strip())
        if words and all(re.fullmatch(r"[a-z']+", w) and lookup(w) for w in words):
            phrases[name] = " ".join(words)
    return phrases


def no_hypothesis_class(classes: list[str], phrases: dict[str, str]) -> str | None:
    """The class predicted when none of the phrases was heard: silence-like first, else the first other class
    outside the grammar; None when every class is in the grammar (then "heard nothing" is simply wrong)."""
    outside = [c for c in classes if c not in phrases]
    return next((c for c in outside if any(s in c.lower() for s in SILENCE_LIKE)), outside[0] if outside else None)


def grammar(phrases: list[str]) -> str:
    """A JSGF grammar that accepts exactly one of the phrases."""
    return "#JSGF V1.0;\ngrammar classes;\npublic <class> = " + " | ".join(phrases) + " ;\n"


def to_pcm16(wave: np.ndarray, sample_rate: int) -> bytes:
    """Mono float samples in [-1, 1] at any rate -> 16 kHz little-endian int16 bytes, what the decoder reads."""
    x = resample(np.asarray(wave, dtype=np.float32), sample_rate, SAMPLE_RATE)
    return (np.clip(x, -1.0, 1.0) * 32767).astype("<i2").tobytes()


class Recognizer:
    """PocketSphinx with a grammar of the class phrases: recognize(wave, rate) -> a class name."""

    def __init__(self, classes: list[str], unknown: str | None = None):
        from pocketsphinx import Decoder, get_model_path

        self.decoder = Decoder(
            hmm=get_model_path("en-us/en-us"),
            dict=get_model_path("en-us/cmudict-en-us.dict"),
            lm=None,  # no n-gram search: the grammar below is the only one
            loglevel="FATAL",
        )
        self.classes = list(classes)
        self.phrases = class_phrases(self.classes, self.decoder.lookup_word, unknown)
        if not self.phrases:
            raise DataError(
                "data.baseline.pocketsphinx: no class names a word in the recognizer's English dictionary "
                f"(classes {self.classes}); turn the baseline off for this data"
            )
        self.fallback = no_hypothesis_class(self.classes, self.phrases)
        self.by_phrase = {p: c for c, p in self.phrases.items()}
        self.decoder.add_jsgf_string("classes", grammar(list(self.phrases.values())))
        self.decoder.activate_search("classes")

    def hypothesis(self, wave: np.ndarray, sample_rate: int) -> str | None:
        """The phrase heard, or None when the decoder has no hypothesis."""
        d = self.decoder
        d.start_utt()
        d.process_raw(to_pcm16(wave, sample_rate), no_search=False, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        return (hyp.hypstr.strip() or None) if hyp is not None else None

    def recognize(self, wave: np.ndarray, sample_rate: int) -> str | None:
        """The class: the phrase heard, or the no-hypothesis class (None when there is none)."""
        heard = self.hypothesis(wave, sample_rate)
        return self.by_phrase.get(heard, self.fallback) if heard else self.fallback


def scores(data: KeywordData, evals: dict[str, np.ndarray], unknown: str | None = None) -> dict:
    """Accuracy, macro-F1 and worst-class recall of the recognizer on each split in `evals` (split -> clip rows),
    with the phrases it listened for, how often it heard nothing, and its decoding time per clip (resampling,
    when the recipe's rate is not 16 kHz, is not counted)."""
    from importlib.metadata import version

    rec = Recognizer(data.classes, unknown)
    n = len(data.classes)
    index = {c: i for i, c in enumerate(data.classes)}
    y = data.targets
    out: dict = {
        "model": f"pocketsphinx {version('pocketsphinx')} en-US, grammar of the class words",
        "words": rec.phrases,
        "no_hypothesis": rec.fallback,
        "no_hypothesis_clips": {},
    }
    seconds, clips = 0.0, 0
    for split, idx in evals.items():
        heard = []
        for start in range(0, len(idx), 512):  # resampled in batches: torchaudio's resample costs ~20 ms a call
            waves = resample(data.waves[idx[start : start + 512]], data.sample_rate, SAMPLE_RATE)
            began = time.perf_counter()
            heard += [rec.recognize(w, SAMPLE_RATE) for w in waves]
            seconds += time.perf_counter() - began
        clips += len(idx)
        pred = np.array([index.get(c, n) for c in heard], dtype=np.int64)  # n: heard nothing, no class for it
        # the extra column (heard nothing) never has support, and is a rejection like a category class
        out[split] = classification_metrics(y[idx], pred, n + 1, [*category_indices(data.classes), n])
        out["no_hypothesis_clips"][split] = int(sum(c is None or c == rec.fallback for c in heard))
    out["ms_per_clip"] = 1000 * seconds / max(clips, 1)
    return out
