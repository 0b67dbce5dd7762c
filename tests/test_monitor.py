"""Monitoring: scopeml-monitor with real NannyML on a packaged model's reference and generated prediction logs.

The model in the BentoML store is fake but valid: serving.json and a reference.parquet whose
probabilities are calibrated by construction (each true label is drawn from the model's own
probabilities), so CBPE's estimate should match the truth. Logs are written with PredictionLog
exactly as the service writes them.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import FSDD_ROOT, needs_fsdd, offline_run, read_json, run_cli

CLASSES = ["yes", "no", "up"]
FEATURES = {
    "duration_s": (1.0, 0.1),
    "rms_dbfs": (-25.0, 4.0),
    "silence_ratio": (0.35, 0.08),
    "spectral_centroid_hz": (1500.0, 200.0),
    "snr_db": (25.0, 5.0),
}
# In-distribution chunks alert in about 3% of (feature, chunk) pairs with NannyML's default thresholds,
# so one alerting chunk is not enough evidence of drift: require two.
CHUNK = ["monitor.chunk_size=250", "monitor.min_drifted_chunks=2"]
MAKE_MODEL = """
import pathlib, shutil, sys
import bentoml
src = pathlib.Path(sys.argv[1])
with bentoml.models.create("scopeml-kws", labels={"project": "scopeml"}, metadata={"test": "monitoring"}) as model:
    for item in src.iterdir():
        shutil.copy(item, pathlib.Path(model.path) / item.name)
print(model.tag)
"""


def generate(n: int, seed: int, shifted: bool = False) -> dict:
    """Predictions with calibrated probabilities (accuracy ~0.93; ~0.6 when shifted) and monitoring features."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 1.0, (n, len(CLASSES)))
    logits[np.arange(n), rng.integers(0, len(CLASSES), n)] += 1.0 if shifted else 4.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = (rng.random(n)[:, None] < probs.cumsum(axis=1)).argmax(axis=1)  # drawn from the probabilities: calibrated
    features = {f: rng.normal(mean, sd, n) for f, (mean, sd) in FEATURES.items()}
    if shifted:
        features["spectral_centroid_hz"] *= 1.6
        features["snr_db"] -= 15.0
    return {"probs": probs, "pred": probs.argmax(axis=1), "truth": truth, "features": features}


def reference_table(n: int = 3000, seed: int = 0) -> pd.DataFrame:
    g = generate(n, seed)
    table = pd.DataFrame(
        {
            "request_id": [f"val-{i}" for i in range(n)],
            "speaker": [f"spk{i % 20}" for i in range(n)],
            "label": [CLASSES[i] for i in g["truth"]],
            "pred": [CLASSES[i] for i in g["pred"]],
            "confidence": g["probs"].max(axis=1),
        }
    )
    for i, c in enumerate(CLASSES):
        table[f"prob_{c}"] = g["probs"][:, i]
    for f, values in g["features"].items():
        table[f] = values
    table["time_utc"] = pd.Timestamp("2000-01-01", tz="UTC") + pd.to_timedelta(np.arange(n), unit="s")
    return table


def write_log(
    path: Path, tag: str, parts: list[dict], start: str = "2024-05-01T00:00:00+00:00", step_s: float = 1.0
) -> list[str]:
    """Append generated predictions as the service logs them; returns the true labels in log order."""
    from scopeml.serving.log import PredictionLog

    t0 = pd.Timestamp(start)
    records, truth = [], []
    for g in parts:
        for k in range(len(g["pred"])):
            i = len(records)
            records.append(
                {
                    "time_utc": (t0 + pd.Timedelta(seconds=i * step_s)).isoformat(timespec="milliseconds"),
                    "request_id": f"req-{i}",
                    "model_tag": tag,
                    "endpoint": "classify",
                    "source": f"clip{i}.wav",
                    "label": CLASSES[g["pred"][k]],
                    "confidence": float(g["probs"][k].max()),
                    "probabilities": {c: float(p) for c, p in zip(CLASSES, g["probs"][k])},
                    **{f: float(v[k]) for f, v in g["features"].items()},
                }
            )
            truth.append(CLASSES[g["truth"][k]])
    log = PredictionLog(path)
    log.append(records)
    log.close()
    return truth


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """A BentoML store holding one packaged model with its serving.json and reference.parquet."""
    home = tmp_path_factory.mktemp("bentoml-home")
    bundle = tmp_path_factory.mktemp("bundle")
    (bundle / "serving.json").write_text(
        json.dumps(
            {"classes": CLASSES, "scoping": {"name": "test", "targets": {"accuracy": {"min": 0.9}}}, "metrics": {}}
        )
    )
    reference_table().to_parquet(bundle / "reference.parquet", index=False)
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    made = subprocess.run(
        [sys.executable, "-c", MAKE_MODEL, str(bundle)], capture_output=True, text=True, env=env, check=True
    )
    return {"home": home, "tag": made.stdout.strip().splitlines()[-1]}


def monitor(store: dict, out: Path, log: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENTOML_HOME": str(store["home"]), "BENTOML_DO_NOT_TRACK": "True", "HYDRA_FULL_ERROR": "0"}
    args = [
        f"hydra.run.dir={out}",
        f"monitor.log={log}",
        "monitor.model=scopeml-kws:latest",
        "tracker=none",
        *CHUNK,
        *overrides,
    ]
    return run_cli("scopeml.cli.monitor", *args, env=env, timeout=300)


@pytest.fixture(scope="module")
def in_distribution(store, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("in-distribution")
    g = generate(2000, seed=11)
    truth = write_log(tmp / "log.sqlite", store["tag"], [g])
    proc = monitor(store, tmp / "out", tmp / "log.sqlite")
    return {
        "proc": proc,
        "out": tmp / "out",
        "accuracy": float(np.mean(np.array(truth) == np.array([CLASSES[i] for i in g["pred"]]))),
    }


@pytest.fixture(scope="module")
def shifted(store, tmp_path_factory) -> dict:
    """1,000 in-distribution predictions, then 1,500 from higher voices in noisier rooms that the model is unsure of."""
    tmp = tmp_path_factory.mktemp("shifted")
    truth = write_log(
        tmp / "log.sqlite", store["tag"], [generate(1000, seed=21), generate(1500, seed=22, shifted=True)]
    )
    return {"log": tmp / "log.sqlite", "truth": truth, "tmp": tmp}


@pytest.fixture(scope="module")
def shifted_run(store, shifted) -> dict:
    proc = monitor(store, shifted["tmp"] / "out", shifted["log"])
    return {"proc": proc, "out": shifted["tmp"] / "out"}


@pytest.fixture(scope="module")
def labelled_run(store, shifted, tmp_path_factory) -> dict:
    """The shifted log with labels delivered for rows 500-999 and 1750-2249 only.

    W&B offline and multivariate drift on.
    """
    from scopeml.monitoring.labels import ingest

    tmp = tmp_path_factory.mktemp("labelled")
    log = tmp / "log.sqlite"
    log.write_bytes(shifted["log"].read_bytes())
    rows = [*range(500, 1000), *range(1750, 2250)]
    result = ingest(
        log, pd.DataFrame({"request_id": [f"req-{i}" for i in rows], "label": [shifted["truth"][i] for i in rows]})
    )
    assert result["accepted"] == len(rows)
    proc = monitor(store, tmp / "out", log, "tracker=wandb_offline", "monitor.multivariate=true")
    return {"proc": proc, "out": tmp / "out", "labelled": set(rows)}


def test_in_distribution_log_passes_and_estimate_matches_truth(in_distribution):
    proc, out = in_distribution["proc"], in_distribution["out"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = read_json(out / "summary.json")
    assert summary["counts"]["performance_alerts"] == 0
    assert summary["drifted_features"] == []
    assert abs(summary["headline"]["mean_estimated_accuracy"] - in_distribution["accuracy"]) < 0.05
    assert all(c["realized"]["accuracy"] is None for c in summary["chunks"])  # no labels: null, never 0
    assert not (out / "next_experiment.yaml").exists()
    assert read_json(out / "status.json")["status"] == "complete"
    for name in ("estimated.csv", "drift.csv", "realized.csv", "config.yaml", "report.html"):
        assert (out / name).is_file(), name


def test_shifted_log_alerts_names_the_drift_and_suggests_an_experiment(shifted_run):
    proc, out = shifted_run["proc"], shifted_run["out"]
    assert proc.returncode == 1, proc.stderr[-3000:]
    summary = read_json(out / "summary.json")
    assert summary["counts"]["performance_alerts"] >= 4
    assert {"spectral_centroid_hz", "snr_db"} <= set(summary["drifted_features"])
    assert any(a["kind"] == "performance" for a in summary["alerts"])
    assert summary["failed_on"] == ["performance"]
    first, last = summary["chunks"][0], summary["chunks"][-1]
    assert not first["alerts"]["performance"] and last["alerts"]["performance"]
    centroid = next(s for s in summary["slices"] if s["feature"] == "spectral_centroid_hz")
    assert (
        centroid["direction"] == "up"
        and "spectral_centroid_hz" in centroid["text"]
        and centroid["fraction_above_reference_p95"] > 0.5
    )
    assert next(s for s in summary["slices"] if s["feature"] == "snr_db")["direction"] == "down"
    assert any("spectral_centroid_hz >" in r for r in summary["recommendations"])
    assert summary["alert_chunks"] and summary["alert_chunks"][-1]["features"]
    experiment = yaml.safe_load((out / "next_experiment.yaml").read_text())
    assert (out / "next_experiment.yaml").read_text().startswith("# @package _global_")
    assert {"override /data/augment": "heavy"} in experiment["defaults"]
    assert max(experiment["data"]["source"]["pitches"]) > 60 and experiment["data"]["source"]["noise_snr_db"][0] < 10
    assert "spectral_centroid_hz" in proc.stderr  # the console summary names it


def test_next_experiment_composes_with_the_training_config(shifted_run, tmp_path):
    from scopeml.config import load
    from scopeml.config.paths import compose

    conf = tmp_path / "conf"
    (conf / "experiment").mkdir(parents=True)
    (conf / "experiment" / "after_drift.yaml").write_text((shifted_run["out"] / "next_experiment.yaml").read_text())
    config = load(compose("config", ["experiment=after_drift"], config_dir=conf))  # a user's folder, as --config-dir
    assert config.data.augment.prob == 0.8  # heavy
    assert max(config.data.source["pitches"]) > 60


def test_labels_for_part_of_the_log_give_realized_only_where_labelled(labelled_run):
    proc, out = labelled_run["proc"], labelled_run["out"]
    assert proc.returncode == 1, proc.stderr[-3000:]
    summary = read_json(out / "summary.json")
    assert summary["log"]["labeled"] == len(labelled_run["labelled"])
    for c in summary["chunks"]:
        rows = set(range(c["start_index"], c["end_index"] + 1))
        if rows & labelled_run["labelled"]:
            assert c["labeled"] == len(rows & labelled_run["labelled"])
            assert c["realized"]["accuracy"] is not None and c["estimated"]["accuracy"]["value"] is not None
            assert c["difference"]["accuracy"] == pytest.approx(
                abs(c["realized"]["accuracy"] - c["estimated"]["accuracy"]["value"]), abs=1e-5
            )
            assert c["difference"]["accuracy"] < 0.12  # calibrated by construction: the estimate tracks the truth
        else:
            assert c["labeled"] == 0 and c["realized"]["accuracy"] is None and c["difference"]["accuracy"] is None
    realized = pd.read_csv(out / "realized.csv")
    assert {"estimated_accuracy", "realized_accuracy", "abs_difference_accuracy"} <= set(realized.columns)
    assert realized["realized_accuracy"].notna().sum() == summary["counts"]["chunks_with_labels"]
    assert "realized" in summary["failed_on"]  # the shifted, labelled chunks are truly below the accuracy target
    assert summary["drift"]["multivariate"]["drifted"]


def test_wandb_offline_run_has_the_summary_and_report(labelled_run):
    (run,) = (labelled_run["out"] / "wandb").glob("offline-run-*")
    record = offline_run(run)
    assert record["summary"]["monitor/drifted_features"] >= 2
    assert record["summary"]["monitor/alerts"] >= 1
    assert record["summary"]["monitor/min_estimated_accuracy"] < 0.85
    assert any(a["type"] == "monitoring-report" for a in record["artifacts"])


def test_report_is_self_contained_with_every_section(shifted_run):
    page = (shifted_run["out"] / "report.html").read_text()
    for section in ("estimated-performance", "realized-vs-estimated", "drift", "alerts", "next-steps"):
        assert f'id="{section}"' in page
    assert not re.search(r"<script[^>]*\bsrc\s*=\s*[\"']?https?://", page, re.I)
    assert not re.search(r"<link[^>]*\bhref\s*=\s*[\"']?https?://", page, re.I)
    assert len(re.findall(r"\* plotly\.js v\d", page)) == 1  # the plotly.js bundle inline, once
    assert page.count('<script type="text/javascript">') >= 3  # and several figures that use it


def test_hourly_chunks_with_period_chunking(store, tmp_path):
    log = tmp_path / "log.sqlite"
    write_log(log, store["tag"], [generate(1200, seed=31)], step_s=18.0)  # 200 predictions an hour for 6 hours
    proc = monitor(store, tmp_path / "out", log, "monitor=hourly", "monitor.chunk_size=null")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = read_json(tmp_path / "out" / "summary.json")
    assert summary["chunking"]["chunk_period"] == "h" and len(summary["chunks"]) == 6
    assert summary["reference"]["chunks"] >= 6


# --------------------------------------------------------------------------- bad inputs: exit 2, naming the thing
def test_missing_log_file(store, tmp_path):
    proc = monitor(store, tmp_path / "out", tmp_path / "nowhere.sqlite")
    assert proc.returncode == 2
    assert "nowhere.sqlite" in proc.stderr and "no prediction log" in proc.stderr
    assert read_json(tmp_path / "out" / "status.json")["status"] == "failed"


def test_empty_log(store, tmp_path):
    from scopeml.serving.log import PredictionLog

    PredictionLog(tmp_path / "empty.sqlite").close()
    proc = monitor(store, tmp_path / "out", tmp_path / "empty.sqlite")
    assert proc.returncode == 2
    assert "empty.sqlite" in proc.stderr and "empty" in proc.stderr


def test_log_from_another_model_version_names_both_tags(store, tmp_path):
    write_log(tmp_path / "log.sqlite", "scopeml-kws:oldversion123", [generate(300, seed=41)])
    proc = monitor(store, tmp_path / "out", tmp_path / "log.sqlite")
    assert proc.returncode == 2
    assert "scopeml-kws:oldversion123" in proc.stderr and store["tag"] in proc.stderr


def test_log_missing_a_feature_column(store, tmp_path):
    from scopeml.serving.log import COLUMNS

    cols = [c for c in COLUMNS if c not in ("snr_db", "extra_features", "job")]
    feats = [c for c in cols if c in FEATURES]
    db = sqlite3.connect(tmp_path / "log.sqlite")
    db.execute(f"CREATE TABLE predictions (id INTEGER PRIMARY KEY AUTOINCREMENT, {', '.join(cols)})")
    g = generate(300, seed=51)
    rows = [
        (
            f"2024-05-01T00:{i // 60:02d}:{i % 60:02d}+00:00",
            f"req-{i}",
            store["tag"],
            "classify",
            "x.wav",
            CLASSES[g["pred"][i]],
            float(g["probs"][i].max()),
            json.dumps({c: float(p) for c, p in zip(CLASSES, g["probs"][i])}),
            *(float(g["features"][f][i]) for f in feats),
        )
        for i in range(300)
    ]
    with db:
        db.executemany(f"INSERT INTO predictions ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})", rows)
    db.close()
    proc = monitor(store, tmp_path / "out", tmp_path / "log.sqlite")
    assert proc.returncode == 2
    assert "snr_db" in proc.stderr and "feature" in proc.stderr


def test_log_with_other_classes(store, tmp_path):
    g = generate(300, seed=61)
    write_log(tmp_path / "log.sqlite", store["tag"], [g])
    db = sqlite3.connect(tmp_path / "log.sqlite")
    with db:
        db.execute("UPDATE predictions SET probabilities = REPLACE(probabilities, '\"up\"', '\"down\"')")
    db.close()
    proc = monitor(store, tmp_path / "out", tmp_path / "log.sqlite")
    assert proc.returncode == 2
    assert "prob_up" in proc.stderr and "down" in proc.stderr


def test_bad_config_exits_2(store, tmp_path):
    proc = monitor(store, tmp_path / "out", tmp_path / "log.sqlite", "monitor.chunk_size=5")
    assert proc.returncode == 2
    assert "chunk_size" in proc.stderr


@needs_fsdd
def test_new_speakers_scenario_sends_real_recordings_of_held_out_speakers_only(monkeypatch):
    from scopeml.monitoring.simulate import clips_for, load_scenario

    monkeypatch.setenv("SCOPEML_FSDD_ROOT", str(FSDD_ROOT))
    scenario = load_scenario("new_speakers")
    assert scenario.source == "fsdd" and list(scenario.fsdd_speakers) == ["theo"]
    scenario.clips = 30
    digits = "zero one two three four five six seven eight nine".split()
    clips = clips_for(scenario, digits, run_dir=Path("unused-for-fsdd"))
    assert len(clips) == 30 and {label for *_, label in clips} <= set(digits)
    for samples, sr, _label in clips:
        assert sr == 8000 and samples.ndim == 1 and np.isfinite(samples).all() and np.abs(samples).max() > 0
    again = clips_for(scenario, digits, run_dir=Path("unused-for-fsdd"))  # deterministic in its seed
    assert [label for *_, label in again] == [label for *_, label in clips]


def test_nannyml_is_imported_without_torch_and_flaml_is_left_whole():
    # FLAML (under NannyML) would import PyTorch Lightning for a time-series estimator monitoring never uses
    code = (
        "import sys\n"
        "from scopeml.monitoring.monitor import nannyml_quiet\n"
        "with nannyml_quiet('load'):\n"
        "    import nannyml\n"
        "print(sorted(m for m in ('torch', 'lightning', 'pytorch_lightning') if m in sys.modules))\n"
        "print('flaml.automl.time_series.tcn' in sys.modules)\n"  # the block is lifted: a later import is real
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["[]", "False"]
