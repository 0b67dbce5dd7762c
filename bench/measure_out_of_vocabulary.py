"""Words that are not keywords, measured: how often trained keyword models answer other speech with a keyword.

    python bench/measure_out_of_vocabulary.py RUN_DIR [RUN_DIR ...] [--fsdd ../shared/datasets/fsdd]

For each training run (e.g. the 12-class default and `scoping=keywords10`), side by side:
- its test split (voices never heard, synthesized; reported once, chosen on nothing): accuracy, keyword
  recall and false-accept rate (unknown words and silence answered with a keyword), from metrics.json;
- real recorded speech that is not a keyword: every FSDD clip (2,000 spoken digits, 4 speakers), through the
  run's serving bundle (the packaged preprocessing, weights and temperature, the same path `bentoml serve`
  and `scopeml-batch` take): the share answered with a keyword (false accepts), with `unknown`, with
  `silence`, the median confidence of the false accepts and the commonest digit -> keyword answers.
A quality measurement, not a speed benchmark; its figures are in docs/results.md#words-that-are-not-keywords.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DIGITS = "zero one two three four five six seven eight nine".split()


def fsdd_clips(root: Path) -> list[tuple[Path, str]]:
    files = sorted((root / "recordings").glob("*.wav"))
    return [(p, DIGITS[int(p.name.split("_")[0])]) for p in files]


def score_fsdd(run_dir: Path, clips: list[tuple[Path, str]], prepared: dict) -> dict:
    from scopeml.data.audio import read_audio
    from scopeml.metrics import is_category
    from scopeml.serving.bundle import ServingBundle, write_bundle

    with tempfile.TemporaryDirectory() as tmp:
        write_bundle(run_dir, Path(tmp), deploy={})
        bundle = ServingBundle.load(tmp)
    key = json.dumps(bundle.info["preprocess"], sort_keys=True)  # runs with one preprocessing share the clips
    if key not in prepared:
        prepared[key] = np.stack([bundle.prepare(*read_audio(path)) for path, _ in clips])
    waves = prepared[key]
    probs = np.concatenate([bundle.predict(waves[i : i + 256]) for i in range(0, len(waves), 256)])
    predicted = [bundle.classes[i] for i in probs.argmax(axis=1)]
    accepted = np.array([not is_category(c) for c in predicted])
    confidence = probs.max(axis=1)
    pairs = collections.Counter((digit, c) for (_, digit), c in zip(clips, predicted) if not is_category(c))
    return {
        "clips": len(clips),
        "false_accept_rate": float(accepted.mean()),
        "unknown": float(np.mean([c == "unknown" for c in predicted])),
        "silence": float(np.mean([c == "silence" for c in predicted])),
        "median_false_accept_confidence": float(np.median(confidence[accepted])) if accepted.any() else None,
        "commonest": [f"{d} -> {c} ({n})" for (d, c), n in pairs.most_common(3)],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="training run folders (config.yaml, metrics.json)")
    parser.add_argument("--fsdd", type=Path, default=ROOT.parent / "shared" / "datasets" / "fsdd")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not (args.fsdd / "recordings").is_dir():
        sys.exit(f"no FSDD recordings under {args.fsdd} (pass --fsdd): it is the real out-of-vocabulary speech")
    clips = fsdd_clips(args.fsdd)
    rows, prepared = [], {}
    for run in args.runs:
        metrics = json.loads((run / "metrics.json").read_text())
        rows.append(
            {
                "run": str(run),
                "scoping": metrics["scoping"],
                "test": metrics["test"],
                **score_fsdd(run, clips, prepared),
            }
        )

    def f(x):
        return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.3f}"

    print(
        "| run | scoping | test accuracy | test keyword recall | test false accepts | FSDD false accepts "
        "| FSDD -> unknown | FSDD -> silence | median confidence of FSDD false accepts | commonest |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        t = r["test"]
        print(
            f"| {Path(r['run']).name} | {r['scoping']} | {f(t.get('accuracy'))} | {f(t.get('keyword_recall'))} "
            f"| {f(t.get('false_accept_rate'))} | {f(r['false_accept_rate'])} | {f(r['unknown'])} "
            f"| {f(r['silence'])} | {f(r['median_false_accept_confidence'])} | {'; '.join(r['commonest'])} |"
        )
    # side by side: each run against the first one that has no category class (every answer a keyword)
    base = next((r for r in rows if "false_accept_rate" not in r["test"]), None)
    for r in rows:
        if base is not None and r is not base:
            print(
                f"{Path(r['run']).name} ({r['scoping']}) / {Path(base['run']).name} ({base['scoping']}): "
                f"FSDD false accepts {r['false_accept_rate'] / base['false_accept_rate']:.2f}x, "
                f"test keyword recall {r['test'].get('keyword_recall', float('nan')) / base['test']['accuracy']:.2f}x"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
