"""silero-vad against the energy gate on long recordings of real speech with known word boundaries.

    .venv/bin/python bench/bench_vad.py --model RUN_DIR [--speakers theo] [--recordings 8]

Each long recording joins real FSDD digit clips (read in place from ../shared/datasets/fsdd, or
$SCOPEML_FSDD_ROOT; FSDD clips are trimmed to their speech, so a clip's extent is the true
boundary) with random silent gaps, then adds background noise (white or pink, alternating) at
several SNRs: the same clips and gaps in every condition, so the conditions differ only in noise.
For each VAD (deploy.vad's two shipped options, at their defaults) it reports:

- segment precision and recall: a detected segment matches a true word when their intersection
  over union is >= 0.5, one-to-one (each true word matches at most one detection, best IoU first);
- keyword accuracy end to end: the fraction of true words that were detected (matched) *and*
  classified as their digit by the model in --model (a training run or serving bundle); beside it
  the model's accuracy on the true segments (the VAD's ceiling);
- VAD latency in ms per second of audio (one torch thread), and the ratio silero / energy.

SNR is speech power (over the words only) to noise power; "clean" adds no noise (digital silence).
Runs in about 2-3 minutes on 2 cores. Results: docs/deployment.md#voice-activity-detection.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SNRS: list[float | None] = [None, 20.0, 10.0, 5.0, 0.0]  # None: clean
SR = 8000  # FSDD's rate; both VADs take it as is


def fsdd_root() -> Path:
    return Path(os.environ.get("SCOPEML_FSDD_ROOT", ROOT.parent / "shared" / "datasets" / "fsdd"))


def clips_of(root: Path, speakers: list[str]) -> list[tuple[Path, int, str]]:
    rec = root / "recordings" if (root / "recordings").is_dir() else root
    out = []
    for path in sorted(rec.glob("*.wav")):
        digit, speaker, _ = path.stem.split("_")
        if speaker in speakers:
            out.append((path, int(digit), speaker))
    return out


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise: white noise shaped by 1/sqrt(f) in the frequency domain."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spectrum / np.sqrt(f), n)


def recordings(clips, n_recordings: int, words: int, seed: int):
    """[(audio, [(start, end, digit)])]: words with 0.3-1.5 s of silence between and around them."""
    from scopeml.data.audio import read_audio, resample

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_recordings):
        parts, truth, at = [], [], 0
        for i in rng.choice(len(clips), size=words, replace=False):
            gap = np.zeros(int(rng.uniform(0.3, 1.5) * SR), np.float32)
            x, sr = read_audio(clips[i][0])
            x = resample(x if x.ndim == 1 else x.mean(axis=0), sr, SR)
            parts += [gap, x]
            at += len(gap)
            truth.append((at, at + len(x), clips[i][1]))
            at += len(x)
        parts.append(np.zeros(int(rng.uniform(0.3, 1.5) * SR), np.float32))
        out.append((np.concatenate(parts).astype(np.float32), truth))
    return out


def add_noise(audio: np.ndarray, truth, snr_db: float | None, kind: str, rng) -> np.ndarray:
    if snr_db is None:
        return audio
    speech = np.concatenate([audio[a:b] for a, b, _ in truth])
    noise = pink(len(audio), rng) if kind == "pink" else rng.standard_normal(len(audio))
    noise *= np.sqrt(np.mean(speech**2) / np.mean(noise**2) / 10 ** (snr_db / 10))
    mixed = audio + noise
    return (mixed / max(1.0, np.abs(mixed).max())).astype(np.float32)  # no clipping


def iou(a: tuple[int, int], b: tuple[int, int]) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    return inter / (max(a[1], b[1]) - min(a[0], b[0]))


def match(found, truth) -> dict[int, int]:
    """true index -> detected index, one-to-one, best IoU first, IoU >= 0.5."""
    pairs = sorted(
        ((iou(f, (t[0], t[1])), ti, fi) for fi, f in enumerate(found) for ti, t in enumerate(truth)), reverse=True
    )
    out, used = {}, set()
    for score, ti, fi in pairs:
        if score < 0.5:
            break
        if ti not in out and fi not in used:
            out[ti] = fi
            used.add(fi)
    return out


def classify(bundle, audio: np.ndarray, spans) -> list[str]:
    if not spans or bundle is None:
        return []
    probs = bundle.predict(np.stack([bundle.prepare(audio[a:b], SR) for a, b in spans]))
    return [bundle.classes[int(i)] for i in probs.argmax(axis=1)]


def load_model(source: str | None):
    if not source:
        return None
    from scopeml.serving.edge.source import load_bundle, resolve_bundle

    out = Path(tempfile.mkdtemp(prefix="bench_vad_"))
    return load_bundle(resolve_bundle(Path(source), out))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a training run folder or serving bundle trained on the digits (scoping=digits)")
    p.add_argument(
        "--speakers",
        nargs="+",
        default=["theo", "lucas"],
        help="FSDD speakers whose clips make the recordings (experiment=fsdd_synth_mix trains on neither)",
    )
    p.add_argument("--recordings", type=int, default=12)
    p.add_argument("--words", type=int, default=10, help="digits per recording")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    root = fsdd_root()
    clips = clips_of(root, args.speakers) if root.is_dir() else []
    if not clips:
        print(f"bench_vad: skipped: no FSDD clips of {args.speakers} under {root} (set SCOPEML_FSDD_ROOT)")
        return 0
    import torch

    from scopeml.serving.vad import EnergyVAD, SileroVAD

    bundle = load_model(args.model)
    torch.set_num_threads(1)
    vads = {
        "energy": EnergyVAD(),
        # FSDD's speakers are recorded at -40 to -50 dBFS: below the default floor, so a tuned floor too
        "energy, floor_dbfs=-60": EnergyVAD(floor_dbfs=-60.0),
        "silero": SileroVAD().load(),
    }
    torch.set_num_threads(1)  # loading silero restores the count it found; one thread, as on the device
    recs = recordings(clips, args.recordings, args.words, args.seed)
    seconds = sum(len(a) for a, _ in recs) / SR
    print(
        f"{len(recs)} recordings, {sum(len(t) for _, t in recs)} words, {seconds:.0f} s of audio per condition; "
        f"speakers {args.speakers}; model {args.model or '(none: no accuracy)'}"
    )
    rows = []
    for snr in SNRS:
        rng = np.random.default_rng(args.seed + 1)
        noisy = [
            (add_noise(a, t, snr, ("white", "pink")[k % 2], rng), t) for k, (a, t) in enumerate(recs)
        ]  # same noise for both VADs
        oracle = correct_oracle = 0
        for audio, truth in noisy:
            labels = classify(bundle, audio, [(a, b) for a, b, _ in truth])
            correct_oracle += sum(lab == DIGITS[d] for lab, (_, _, d) in zip(labels, truth))
            oracle += len(truth)
        row = {"snr": "clean" if snr is None else f"{snr:g} dB", "oracle": correct_oracle / oracle if bundle else None}
        for name, vad in vads.items():
            found_n = true_n = matched = correct = 0
            spent = 0.0
            for audio, truth in noisy:
                t0 = time.perf_counter()
                found = vad.segments(audio, SR)
                spent += time.perf_counter() - t0
                pairs = match(found, truth)
                labels = classify(bundle, audio, found)
                found_n, true_n, matched = found_n + len(found), true_n + len(truth), matched + len(pairs)
                correct += sum(labels[fi] == DIGITS[truth[ti][2]] for ti, fi in pairs.items()) if labels else 0
            row[name] = {
                "precision": matched / found_n if found_n else float("nan"),
                "recall": matched / true_n,
                "accuracy": correct / true_n if bundle else None,
                "found": found_n,
                "ms_per_s": 1000 * spent / seconds,
            }
        rows.append(row)
    print(table(rows))
    return 0


def table(rows) -> str:
    def f(v, spec=".3f"):
        return "-" if v is None else format(v, spec)

    def ratio(a, b):
        return "-" if a is None or b is None or not b else f"{a / b:.2f}x"

    lines = [
        "| condition | VAD | segments found | precision | recall | keyword accuracy | (on true segments) "
        "| VAD ms per s of audio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for name in [k for k in r if isinstance(r[k], dict)]:
            v = r[name]
            lines.append(
                f"| {r['snr']} | {name} | {v['found']} | {f(v['precision'])} | {f(v['recall'])} | "
                f"{f(v['accuracy'])} | {f(r['oracle'])} | {v['ms_per_s']:.2f} |"
            )
        e, s = r["energy"], r["silero"]
        lines.append(
            f"| {r['snr']} | silero / energy | | {ratio(s['precision'], e['precision'])} | "
            f"{ratio(s['recall'], e['recall'])} | {ratio(s['accuracy'], e['accuracy'])} | | "
            f"{ratio(s['ms_per_s'], e['ms_per_s'])} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
