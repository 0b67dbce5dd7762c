"""The data phase on real audio: recipes, label normalization, mixtures, caching and scopeml-data's checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import FSDD_ROOT, needs_fsdd, offline_run, read_json, run_cli, write_wav

from scopeml.config._validate import parse
from scopeml.config.schema import DataConfig, LabelsConfig, PreprocessConfig, SourceData
from scopeml.data import DataError, build_dataset
from scopeml.data.labels import normalize_labels


def make_manifest(tmp_path: Path, rows: list[dict], name: str = "manifest.csv") -> Path:
    """Write distinct tones for each row (unless a row names an existing file) and a CSV listing them."""
    root = tmp_path / "clips"
    root.mkdir(exist_ok=True)
    for i, row in enumerate(rows):
        target = root / row["path"]
        if not target.exists() and "copy_of" not in row:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_wav(target, seconds=0.6, sr=16000, freq=200 + 37 * i)
        elif "copy_of" in row:
            shutil.copy(root / row.pop("copy_of"), target)
    path = root / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def manifest_cfg(path: Path, tmp_path: Path, allow_missing_speaker: bool = False, **kw) -> SourceData:
    source = {"_target_": "scopeml.data.manifest.Manifest", "manifest": str(path)}
    if allow_missing_speaker:
        source["allow_missing_speaker"] = True
    return SourceData(**{"recipe": "source", "source": source, "cache_dir": str(tmp_path / "cache"), **kw})


def clean_rows(n_speakers: int = 4, labels=("cat", "dog")) -> list[dict]:
    return [
        {
            "path": f"{spk}/{label}_{k}.wav",
            "label": label.upper() if k == 0 else label,
            "speaker": spk,
            "mic": "usb" if k else "phone",
        }
        for spk in [f"s{i}" for i in range(n_speakers)]
        for label in labels
        for k in range(3)
    ]


# ---------------------------------------------------------------- manifest recipe
def test_manifest_recipe_reads_paths_labels_speakers_and_tags(tmp_path):
    path = make_manifest(tmp_path, clean_rows())
    data = build_dataset(manifest_cfg(path, tmp_path), ["cat", "dog"], progress=False)
    m = data.manifest
    assert len(m) == 24 and set(m["label"]) == {"cat", "dog"}  # "CAT" normalized by lowercasing
    assert set(m["tag_mic"]) == {"usb", "phone"}
    assert {"lead_ms", "trail_ms", "loudness_lufs", "duration_ms"} <= set(m.columns)
    assert all(len(set(m.loc[m.speaker == s, "split"])) == 1 for s in m.speaker.unique())


def test_manifest_jsonl_works_too(tmp_path):
    csv = make_manifest(tmp_path, clean_rows())
    jsonl = csv.with_suffix(".jsonl")
    pd.read_csv(csv).to_json(jsonl, orient="records", lines=True)
    data = build_dataset(manifest_cfg(jsonl, tmp_path), ["cat", "dog"], progress=False)
    assert len(data.manifest) == 24


@pytest.mark.parametrize("bad_path", ["../outside.wav", "/etc/passwd", "s0/../../escape.wav"])
def test_manifest_path_escaping_its_root_is_rejected(tmp_path, bad_path):
    rows = clean_rows()
    path = make_manifest(tmp_path, rows)
    table = pd.read_csv(path)
    table.loc[len(table)] = {"path": bad_path, "label": "cat", "speaker": "s0", "mic": "usb"}
    table.to_csv(path, index=False)
    with pytest.raises(DataError, match=rf"row 26: path '{bad_path}' resolves outside data.source.root"):
        build_dataset(manifest_cfg(path, tmp_path), ["cat", "dog"], progress=False)


def test_manifest_without_speakers_needs_consent(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "speaker"} for r in clean_rows()]
    path = make_manifest(tmp_path, rows)
    with pytest.raises(DataError, match="no speaker column"):
        build_dataset(manifest_cfg(path, tmp_path), ["cat", "dog"], progress=False)
    data = build_dataset(manifest_cfg(path, tmp_path, allow_missing_speaker=True), ["cat", "dog"], progress=False)
    assert len(data.manifest) == 24


def test_missing_file_in_manifest_is_named(tmp_path):
    path = make_manifest(tmp_path, clean_rows())
    table = pd.read_csv(path)
    table.loc[len(table)] = {"path": "s0/ghost.wav", "label": "cat", "speaker": "s0", "mic": "usb"}
    table.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"ghost.wav: cannot be read"):
        build_dataset(manifest_cfg(path, tmp_path), ["cat", "dog"], progress=False)


# ---------------------------------------------------------------- labels
def test_label_normalization_handles_case_aliases_fillers_and_others():
    raw = pd.Series([" Yes", "YEAH", "um", "no", "banana"])
    src = pd.Series([f"f{i}.wav" for i in range(5)])
    cfg = LabelsConfig(map={"yeah": "yes"}, fillers=["um"], unknown="unknown", others="unknown")
    labels, keep = normalize_labels(raw, src, cfg, ["yes", "no", "unknown"])
    assert labels.tolist() == ["yes", "yes", "unknown", "no", "unknown"] and keep.all()
    labels, keep = normalize_labels(raw, src, LabelsConfig(map={"yeah": "yes"}, others="drop"), ["yes", "no"])
    assert keep.tolist() == [True, True, False, True, False]
    with pytest.raises(DataError, match=r"f4.wav has label 'banana'"):
        normalize_labels(raw, src, LabelsConfig(map={"yeah": "yes"}), ["yes", "no", "um"])


# ---------------------------------------------------------------- Speech Commands layout
def test_speech_commands_layout(tmp_path):
    root = tmp_path / "speech_commands_v0.02"
    for w, word in enumerate(["yes", "no", "stop", "marvin"]):
        for s, spk in enumerate(["0a1b2c3d", "1f2e3d4c", "9abc0def", "77aa88bb"]):
            for n in range(2):
                (root / word).mkdir(parents=True, exist_ok=True)
                write_wav(root / word / f"{spk}_nohash_{n}.wav", seconds=1.0, sr=16000, freq=300 + 50 * w + 7 * s + n)
    (root / "_background_noise_").mkdir()
    write_wav(root / "_background_noise_" / "white_noise.wav", seconds=3.0, sr=16000)
    source = {"_target_": "scopeml.data.speech_commands.SpeechCommands", "root": str(root)}
    cfg = SourceData(
        recipe="source", source=source, cache_dir=str(tmp_path / "cache"), labels=LabelsConfig(others="drop")
    )
    data = build_dataset(cfg, ["yes", "no", "stop"], progress=False)
    m = data.manifest
    assert len(m) == 24 and "marvin" not in set(m["label"])  # other words dropped, noise folder ignored
    assert set(m["speaker"]) == {"0a1b2c3d", "1f2e3d4c", "9abc0def", "77aa88bb"}
    capped = build_dataset(
        SourceData(**{**cfg.__dict__, "source": {**source, "max_per_word": 3}}), ["yes", "no", "stop"], progress=False
    )
    assert capped.manifest.groupby("label").size().max() == 3


# ---------------------------------------------------------------- cache
def test_changing_preprocessing_invalidates_the_cache(tmp_path):
    path = make_manifest(tmp_path, clean_rows())
    plain = build_dataset(manifest_cfg(path, tmp_path), ["cat", "dog"], progress=False)
    again = build_dataset(manifest_cfg(path, tmp_path), ["cat", "dog"], progress=False)
    assert again.fingerprint["cache"] == plain.fingerprint["cache"]
    loud = manifest_cfg(
        path, tmp_path, preprocess=parse(PreprocessConfig, {"normalize": {"method": "rms", "target_db": -12.0}})
    )
    louder = build_dataset(loud, ["cat", "dog"], progress=False)
    assert louder.fingerprint["cache"] != plain.fingerprint["cache"]
    rms = 20 * np.log10(np.sqrt((louder.waves[0][np.abs(louder.waves[0]) > 0] ** 2).mean()))
    assert abs(rms - (-12.0)) < 0.5
    assert louder.fingerprint["fingerprint"] != plain.fingerprint["fingerprint"]


# ---------------------------------------------------------------- mixtures
def mixture(real_root: Path, tmp_path: Path, weight: float = 1.0) -> DataConfig:
    pre = {
        "sample_rate": 16000,
        "clip_seconds": 1.0,
        "trim": {"method": "energy"},
        "normalize": {"method": "loudness", "target_db": -23.0},
    }
    digits = {str(i): w for i, w in enumerate(["zero", "one"])}
    return parse(
        DataConfig,
        {
            "recipe": "mixture",
            "cache_dir": str(tmp_path / "cache"),
            "preprocess": pre,
            "eval_component": "real",
            "weights": {"synth": weight},
            "components": {
                "real": {
                    "recipe": "source",
                    "source": {"_target_": "scopeml.data.fsdd.FSDD", "root": str(real_root)},
                    "cache_dir": str(tmp_path / "cache"),
                    "preprocess": pre,
                    "labels": {"map": digits},
                    "split": {"test_speakers": ["cyd"], "val_speakers": ["bob"]},
                },
                "synth": {
                    "recipe": "source",
                    "cache_dir": str(tmp_path / "cache"),
                    "preprocess": pre,
                    "source": {
                        "_target_": "scopeml.data.synth.SynthKeywords",
                        "words": ["zero", "one"],
                        "voices": ["en+m1", "en+f1", "en+m3", "en+f4"],
                        "pitches": [40, 60],
                        "rates": [175],
                    },
                },
            },
        },
        "data",
    )


def test_mixture_trains_on_both_and_evaluates_on_real_only(fsdd_layout, tmp_path):
    data = build_dataset(mixture(fsdd_layout, tmp_path), ["zero", "one"], progress=False)
    m = data.manifest
    assert set(m.loc[m["split"].isin(["val", "test"]), "component"]) == {"real"}
    assert (m.loc[m["component"] == "synth", "split"] == "train").all()
    assert (m["component"] == "synth").sum() == 16 and len(data.waves) == len(m)
    half = build_dataset(mixture(fsdd_layout, tmp_path, weight=0.5), ["zero", "one"], progress=False)
    assert (half.manifest["component"] == "synth").sum() == 8
    assert half.fingerprint["fingerprint"] != data.fingerprint["fingerprint"]


def test_mixture_components_must_share_preprocessing():
    from scopeml.config import ConfigError

    with pytest.raises(ConfigError, match=r"data.components.real.preprocess: must equal data.preprocess"):
        parse(
            DataConfig,
            {
                "recipe": "mixture",
                "eval_component": "real",
                "components": {
                    "real": {
                        "recipe": "source",
                        "source": {"_target_": "scopeml.data.fsdd.FSDD", "root": "x"},
                        "preprocess": {"sample_rate": 8000},
                    }
                },
            },
            "data",
        )


# ---------------------------------------------------------------- scopeml-data
def data_cli(tmp_path: Path, manifest: Path, *extra: str):
    return run_cli(
        "scopeml.cli.data",
        f"hydra.run.dir={tmp_path / 'report'}",
        "data=manifest",
        f"data.source.manifest={manifest}",
        "scoping=keywords10",  # its targets judge no category class: cat and dog are both "keywords"
        "scoping.classes=[cat,dog]",
        "scoping.primary_metric=accuracy",
        "data.checks.min_clips_per_label=1",
        *extra,
    )


@pytest.mark.slow
def test_scopeml_data_passes_clean_data_and_writes_the_report(tmp_path):
    proc = data_cli(tmp_path, make_manifest(tmp_path, clean_rows(n_speakers=6)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "report"
    report = read_json(out / "report.json")
    assert report["passed"] and report["fingerprint"]["clips"] == 36
    assert {c["name"] for c in report["checks"]} >= {
        "leakage",
        "conflicting_labels",
        "duplicates",
        "too_few_examples",
        "unreadable",
    }
    assert report["balance"]["train"]["cat"] > 0 and "duration_ms" in report["distributions"]
    assert report["baseline"]["majority"]["test"]["accuracy"] <= 1.0
    html = (out / "report.html").read_text()
    for section in ("id=checks", "id=baseline", "id=balance", "id=speakers", "id=audio", "data:image/png;base64"):
        assert section in html
    (run,) = (out / "wandb").glob("offline-run-*")
    assert offline_run(run)["summary"]["passed"] is True


@pytest.mark.slow
def test_planted_duplicate_with_conflicting_label_fails_the_gate(tmp_path):
    rows = clean_rows(n_speakers=6)
    rows.append({"path": "s5/relabelled.wav", "label": "dog", "speaker": "s5", "mic": "usb", "copy_of": "s5/cat_1.wav"})
    proc = data_cli(tmp_path, make_manifest(tmp_path, rows))
    assert proc.returncode == 1
    report = read_json(tmp_path / "report" / "report.json")
    conflict = next(c for c in report["checks"] if c["name"] == "conflicting_labels")
    assert conflict["status"] == "fail" and conflict["blocking"]
    names = {Path(c["source"]).name for pair in conflict["details"] for c in pair["clips"]}
    assert names == {"cat_1.wav", "relabelled.wav"}
    assert "conflicting_labels" in report["blocking_failures"]


@pytest.mark.slow
def test_planted_speaker_leakage_fails_the_gate(tmp_path):
    rows = clean_rows(n_speakers=4)
    for r in rows:
        r["split"] = {"s0": "train", "s1": "train", "s2": "val", "s3": "test"}[r["speaker"]]
    rows[0]["split"] = "test"  # one clip of train speaker s0 placed in test
    proc = data_cli(tmp_path, make_manifest(tmp_path, rows))
    assert proc.returncode == 1
    leakage = next(c for c in read_json(tmp_path / "report" / "report.json")["checks"] if c["name"] == "leakage")
    assert leakage["status"] == "fail" and leakage["details"]["speakers_in_several_splits"] == ["s0"]


@pytest.mark.slow
def test_unreadable_files_are_reported_not_fatal_unless_blocking(tmp_path):
    path = make_manifest(tmp_path, clean_rows(n_speakers=6))
    (path.parent / "s0" / "broken.wav").write_bytes(b"RIFF0000WAVEnot really")
    table = pd.read_csv(path)
    table.loc[len(table)] = {"path": "s0/broken.wav", "label": "cat", "speaker": "s0", "mic": "usb"}
    table.to_csv(path, index=False)
    proc = data_cli(tmp_path, path, "tracker=none")
    assert proc.returncode == 0, proc.stderr[-2000:]  # unreadable is reported, not blocking by default
    check = next(c for c in read_json(tmp_path / "report" / "report.json")["checks"] if c["name"] == "unreadable")
    assert check["status"] == "fail" and "broken.wav" in check["details"][0]["source"]
    proc = data_cli(tmp_path, path, "tracker=none", "data.checks.blocking=[unreadable]")
    assert proc.returncode == 1


@pytest.mark.slow
def test_scopeml_data_bad_config_and_missing_root(tmp_path):
    proc = run_cli("scopeml.cli.data", f"hydra.run.dir={tmp_path / 'a'}", "data.checks.blocking=[everything]")
    assert proc.returncode == 2 and "data.checks.blocking[0]" in proc.stderr
    proc = run_cli(
        "scopeml.cli.data",
        f"hydra.run.dir={tmp_path / 'b'}",
        "experiment=fsdd_digits",
        f"data.source.root={tmp_path / 'none'}",
    )
    assert proc.returncode == 2 and "data.source.root" in proc.stderr  # bad input, not a failed check


@needs_fsdd
def test_fsdd_report_finds_no_blocking_problem(tmp_path):

    from scopeml.config import load
    from scopeml.config.paths import compose
    from scopeml.data.report import build_report

    cfg = load(
        compose("config", ["experiment=fsdd_digits", f"data.source.root={FSDD_ROOT}", f"data.cache_dir={tmp_path}"])
    )
    data = build_dataset(cfg.data, cfg.scoping.classes, progress=False)
    report = build_report(data, cfg.data)
    assert report["passed"], report["blocking_failures"]
    assert report["formats"]["sample_rates"] == {"8000": 2000}
    # Real speech beats the majority class by a wide margin even with logistic regression.
    assert (
        report["baseline"]["logreg_mfcc"]["test"]["accuracy"] > report["baseline"]["majority"]["test"]["accuracy"] + 0.2
    )


def test_silence_class_through_the_label_map(tmp_path):
    """Silence clips labelled any way a dataset spells it land in one `silence` class; true silence is kept."""
    import numpy as np
    import soundfile as sf

    rows = clean_rows(n_speakers=4)
    root = tmp_path / "clips"
    make_manifest(tmp_path, rows)
    for _i, spk in enumerate(["s0", "s1", "s2", "s3"]):
        for k, raw in enumerate(["_silence_", "Silence ", "_background_noise_"]):
            sf.write(root / spk / f"quiet_{k}.wav", np.zeros(8000, np.float32), 16000)
            rows.append({"path": f"{spk}/quiet_{k}.wav", "label": raw, "speaker": spk, "mic": "usb"})
    path = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    labels = LabelsConfig(map={"_silence_": "silence", "_background_noise_": "silence"})
    data = build_dataset(manifest_cfg(path, tmp_path, labels=labels), ["cat", "dog", "silence"], progress=False)
    silent = data.manifest[data.manifest["label"] == "silence"]
    assert len(silent) == 12 and silent["silent"].all()  # measured as silent, and still classified as a class


@pytest.mark.slow
def test_scopeml_data_on_a_tiny_lopsided_manifest_names_the_problem_instead_of_crashing(tmp_path):
    """4 clips, one class in the training split: the classifier baseline cannot be fitted; say so, fail the checks."""
    rows = [
        {"path": "a.wav", "label": "cat", "speaker": "s1", "split": "train"},
        {"path": "b.wav", "label": "cat", "speaker": "s2", "split": "train"},
        {"path": "c.wav", "label": "dog", "speaker": "s3", "split": "val"},
        {"path": "d.wav", "label": "dog", "speaker": "s4", "split": "test"},
    ]
    proc = data_cli(tmp_path, make_manifest(tmp_path, rows), "tracker=none")
    assert proc.returncode != 3 and "Traceback" not in proc.stderr, proc.stderr[-3000:]  # 3: an unexpected error
    assert "the training split has only 'cat' (2 clip(s))" in " ".join(proc.stderr.split())
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    assert report["baseline"]["best"] == "majority" and "skipped" in report["baseline"]["logreg_mfcc"]
    assert report["baseline"]["majority"]["test"]["accuracy"] == 0.0  # majority says cat; the test clip is a dog
