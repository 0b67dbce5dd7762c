"""A user's project outside scopeml (examples/sound_events) runs through train -> select -> package ->
a real `bentoml serve` -> scopeml-batch -> scopeml-label -> scopeml-monitor, and scopeml-export, with a
network and a data source scopeml has never seen."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "sound_events"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def command(name: str, *args: str, cwd: Path, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN / name), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{name} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    return proc


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the example, as a user would have it: their own folder, their module on PYTHONPATH."""
    dest = tmp_path_factory.mktemp("user") / "sound_events"
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__", "outputs"))
    return dest


@pytest.fixture(scope="module")
def user_env(project: Path, tmp_path_factory) -> dict:
    return {
        **os.environ,
        "PYTHONPATH": str(project),
        "BENTOML_HOME": str(tmp_path_factory.mktemp("bentoml")),
        "BENTOML_DO_NOT_TRACK": "True",
        "HYDRA_FULL_ERROR": "0",
    }


@pytest.fixture(scope="module")
def packaged(project: Path, user_env: dict) -> dict:
    sweep = project / "outputs" / "sweep"
    command(
        "scopeml-train",
        "-m",
        "--config-dir",
        "conf",
        "experiment=sound_events",
        "tracker=none",
        "trainer.progress_bar=none",
        "model.hidden=4,8",
        f"hydra.sweep.dir={sweep}",
        cwd=project,
        env=user_env,
    )
    command("scopeml-select", str(sweep), "--out", str(project / "selection.json"), cwd=project, env=user_env)
    tag = (
        command(
            "scopeml-package",
            str(project / "selection.json"),
            "--config-dir",
            "conf",
            "deploy/vad=loudness_gate",  # the project's own event detector in front of /segments
            cwd=project,
            env=user_env,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    return {"sweep": sweep, "tag": tag, "selection": json.loads((project / "selection.json").read_text())}


def test_the_sweep_trained_the_users_network_on_the_users_data(packaged):
    jobs = sorted(p for p in packaged["sweep"].iterdir() if (p / "metrics.json").exists())
    assert len(jobs) == 2
    for job in jobs:
        metrics = json.loads((job / "metrics.json").read_text())
        assert metrics["model"]["arch"] == "sound_events.nets.TinyNet"
        assert metrics["test"]["accuracy"] >= 0.8, metrics["test"]  # three very different sounds: an easy task
        fingerprint = json.loads((job / "data_fingerprint.json").read_text())
        # named after the source class (SoundEvents), in snake case
        assert fingerprint["recipe"] == "sound_events" and fingerprint["clips"] == 10 * 3 * 6
    assert packaged["selection"]["selected"] is not None


def test_the_bundle_carries_the_users_code(packaged, user_env):
    # The store's own layout, read without importing bentoml here: bentoml fixes its store folder at its
    # first import in a process, which would point every later test of this session at this store.
    name, _, version = packaged["tag"].partition(":")
    folder = Path(user_env["BENTOML_HOME"]) / "models" / name / version
    info = json.loads((folder / "serving.json").read_text())
    assert info["code"] == ["sound_events"]
    for module in ("nets.py", "gate.py"):
        assert (folder / "code" / "sound_events" / module).read_text() == (
            EXAMPLE / "sound_events" / module
        ).read_text()
    assert info["deploy"]["vad"] == {"_target_": "sound_events.gate.LoudnessGate", "floor_dbfs": -35.0}


def _clips_module():
    sys.path.insert(0, str(EXAMPLE))
    try:
        from sound_events import clips
    finally:
        sys.path.remove(str(EXAMPLE))
    return clips


def _events(tmp: Path) -> dict[Path, str]:
    """New WAV files from a recording device the model never heard (source 42)."""
    import soundfile as sf

    KINDS, render = _clips_module().KINDS, _clips_module().render
    rng = np.random.default_rng(42)
    files = {}
    for kind in KINDS:
        for i in range(4):
            path = tmp / f"{kind}_{i}.wav"
            sf.write(path, render(kind, 190.0, 16000, 0.6, rng), 16000)
            files[path] = kind
    return files


def test_served_and_batch_scored_without_the_users_module_on_the_path(packaged, user_env, tmp_path):
    """The server and the batch job run from the repo with no PYTHONPATH: the network comes from the bundle."""
    import httpx

    from tests.serving_helpers import Server

    (tmp_path / "clips").mkdir()
    files = _events(tmp_path / "clips")
    env = {k: v for k, v in user_env.items() if k != "PYTHONPATH"}
    server = Server(
        Path(env["BENTOML_HOME"]),
        tmp_path / "predictions.sqlite",
        extra_env={"SCOPEML_MODEL_TAG": packaged["tag"], "PYTHONPATH": ""},
    )
    try:
        answers = {}
        for path, _kind in files.items():
            reply = httpx.post(
                f"{server.url}/classify", files={"audio": (path.name, path.read_bytes(), "audio/wav")}, timeout=30
            )
            assert reply.status_code == 200, reply.text
            answers[path] = reply.json()["label"]
        # /segments runs the project's LoudnessGate from the bundle: two events apart, two segments
        import soundfile as sf

        events = [sf.read(p, dtype="float32")[0] for p in list(files)[:2]]
        gap = np.zeros(8000, np.float32)
        recording = tmp_path / "two_events.wav"
        sf.write(recording, np.concatenate([gap, events[0], gap, gap, events[1], gap]), 16000)
        reply = httpx.post(
            f"{server.url}/segments", files={"audio": (recording.name, recording.read_bytes(), "audio/wav")}, timeout=30
        )
        assert reply.status_code == 200, reply.text
        spans = [(s["start_s"], s["end_s"], s["label"]) for s in reply.json()["segments"]]
        first_end, second_start = (8000 + len(events[0])) / 16000, (24000 + len(events[0])) / 16000
        assert len(spans) == 2 and spans[0][1] <= first_end + 0.01 and spans[1][0] >= second_start - 0.01, spans
        assert spans[0][0] >= 0.5 - 0.01 and {label for *_, label in spans} <= set(_clips_module().KINDS)
        vad = httpx.post(f"{server.url}/info", json={}).json()["vad"]
        assert vad["_target_"] == "sound_events.gate.LoudnessGate" and vad["floor_dbfs"] == -35.0
    finally:
        server.stop()
    served_accuracy = np.mean([answers[p] == k for p, k in files.items()])
    assert served_accuracy >= 0.75, answers

    out = tmp_path / "scored"
    command(
        "scopeml-batch",
        str(tmp_path / "clips"),
        "--out",
        str(out),
        "--model",
        packaged["tag"],
        "--log",
        str(tmp_path / "batch.sqlite"),
        cwd=ROOT,
        env=env,
    )
    import pandas as pd

    scored = pd.concat([pd.read_parquet(p) for p in sorted(out.glob("*.parquet"))], ignore_index=True)
    assert len(scored) == len(files)
    truth = {p.name: k for p, k in files.items()}
    batch_labels = {Path(str(row["path"])).name: row["label"] for row in scored.to_dict("records")}
    assert {name: batch_labels[name] for name in truth} == {
        p.name: answers[p] for p in files
    }  # same model, same answers


def test_the_lifecycle_takes_the_users_config_folder(tmp_path, monkeypatch):
    """scopeml-lifecycle --config-dir: its own settings file and every stage's config come from the user's folder."""
    from scopeml.lifecycle.config import load_lifecycle
    from scopeml.lifecycle.run import Lifecycle

    conf = tmp_path / "conf"
    shutil.copytree(EXAMPLE / "conf", conf)
    (conf / "lifecycle").mkdir()
    (conf / "lifecycle" / "mine.yaml").write_text(
        "out: out\ntrain: [experiment=sound_events]\nsweep: ['model.hidden=4,8']\n"
    )
    monkeypatch.syspath_prepend(str(EXAMPLE))
    cfg = load_lifecycle("mine", {"out": str(tmp_path / "out")}, config_dir=conf)
    assert cfg.sweep == ["model.hidden=4,8"]
    lifecycle = Lifecycle(cfg, config_dir=conf)
    composed = lifecycle.composed(*cfg.train)
    assert composed["model"]["_target_"] == "sound_events.nets.TinyNet"
    assert composed["data"]["source"]["_target_"] == "sound_events.clips.SoundEvents"
    assert lifecycle.hydra_args == ["--config-dir", str(conf.resolve())]


# --------------------------------------------------------------------------- monitoring the user's model
CLEAN = NOISY = 60  # 3 chunks of 20 each (monitor.chunk_size in the user's experiment)
UNLABELLED = range(40, 60)  # the third clean chunk: labels have not arrived for it
NOISE = 0.1  # a noisy room: white noise at about 9 dB SNR, against about 33 dB in training


def _render_traffic(folder: Path) -> dict[str, str]:
    """Production traffic as WAV files: 60 events like training's devices, then 60 in a noisy room.
    Returns path (relative to `folder`, as scopeml-batch names it) -> true kind."""
    import soundfile as sf

    clips = _clips_module()
    truth = {}
    for name, n, noise, seed in (("a_clean", CLEAN, 0.0, 7), ("b_noisy", NOISY, NOISE, 8)):
        (folder / name).mkdir(parents=True)
        rng = np.random.default_rng(seed)
        for i in range(n):
            kind = clips.KINDS[i % len(clips.KINDS)]
            wave = clips.render(kind, rng.uniform(150, 510), 16000, 0.6, rng)  # training's pitch range
            wave = wave + rng.normal(0.0, noise, len(wave)).astype(np.float32) if noise else wave
            sf.write(folder / name / f"{i:03d}_{kind}.wav", wave, 16000)
            truth[f"{name}/{i:03d}_{kind}.wav"] = kind
    return truth


@pytest.fixture(scope="module")
def monitored(project: Path, user_env: dict, packaged: dict, tmp_path_factory) -> dict:
    """The user's packaged model scores the traffic (scopeml-batch into the service's default log), labels
    arrive for all but one chunk (scopeml-label), and scopeml-monitor runs with the user's config folder."""
    import pandas as pd

    tmp = tmp_path_factory.mktemp("traffic")
    truth = _render_traffic(tmp / "clips")
    log = project / "outputs" / "serving" / "predictions.sqlite"  # deploy.prediction_log, from the project folder
    command(
        "scopeml-batch", str(tmp / "clips"), "--out", str(tmp / "scored"), "--log", str(log), cwd=project, env=user_env
    )
    scored = pd.read_parquet(tmp / "scored" / "predictions.parquet")  # input order: clean first, as logged
    assert scored["path"].tolist() == list(truth) and scored["error"].isna().all()
    scored["truth"] = scored["path"].map(truth)

    labels = pd.DataFrame({"request_id": scored["request_id"], "label": scored["truth"]}).drop(index=UNLABELLED)
    extra = pd.DataFrame({"request_id": ["batch:never-sent.wav", scored["request_id"][0]], "label": ["hiss", "siren"]})
    pd.concat([labels, extra]).to_csv(tmp / "labels.csv", index=False)
    label = subprocess.run(
        [str(BIN / "scopeml-label"), str(tmp / "labels.csv")],
        cwd=project,
        env=user_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = tmp / "monitor"
    started = time.perf_counter()
    proc = subprocess.run(
        [
            str(BIN / "scopeml-monitor"),
            "--config-dir",
            "conf",
            "experiment=sound_events",
            "tracker=none",
            f"hydra.run.dir={out}",
        ],
        cwd=project,
        env=user_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return {
        "clips": tmp / "clips",
        "scored": scored,
        "label": label,
        "proc": proc,
        "out": out,
        "seconds": time.perf_counter() - started,
    }


def test_labels_for_the_users_predictions_are_stored_and_strangers_refused(monitored):
    """scopeml-label stores the 100 labels; a request never logged and a class the user's model lacks are refused."""
    label = monitored["label"]
    assert label.returncode == 1, label.stdout + label.stderr
    assert "stored 100 label(s); refused 2: 1 label outside the model's classes, 1 unknown request id" in label.stdout
    assert "batch:never-sent.wav: unknown request id" in label.stderr
    assert "label 'siren' is not one of the model's classes ['whistle', 'buzz', 'hiss']" in label.stderr


def test_monitor_reads_the_users_model_realized_and_estimated(monitored, packaged):
    """Realized accuracy per chunk is the batch output against the truth (the batch logs 64 rows with one time:
    the chunks must still hold the rows in log order); CBPE is reported for every chunk, labelled or not."""
    import pandas as pd

    proc, out, scored = monitored["proc"], monitored["out"], monitored["scored"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == {"tag": packaged["tag"], "classes": ["whistle", "buzz", "hiss"]}
    assert summary["log"]["model_rows"] == CLEAN + NOISY and summary["log"]["labeled"] == 100
    assert summary["chunking"]["chunk_size"] == 20  # the user's experiment, not scopeml's 200
    assert summary["reference"]["rows"] == 72  # the held-out clips of the user's data, packaged with the model
    chunks = summary["chunks"]
    assert [(c["start_index"], c["end_index"]) for c in chunks] == [(i, i + 19) for i in range(0, 120, 20)]

    correct = scored["label"] == scored["truth"]
    labelled = scored.index.difference(UNLABELLED)
    for c in chunks:
        rows = scored.index[c["start_index"] : c["end_index"] + 1]
        have = rows.difference(UNLABELLED)
        assert c["labeled"] == len(have)
        if len(have):  # realized accuracy: exactly what the batch output says against the truth
            assert c["realized"]["accuracy"] == pytest.approx(correct[have].mean(), abs=1e-6)
        else:
            assert c["realized"]["accuracy"] is None and c["estimated"]["accuracy"]["value"] is not None
    assert summary["headline"]["mean_realized_accuracy"] == pytest.approx(correct[labelled].mean(), abs=1e-6)

    # CBPE: reported for every chunk; on the clean chunks close to what the labels then showed. The user's
    # held-out splits are error-free (an easy task), so NannyML leaves the probabilities uncalibrated and the
    # estimate is the mean confidence of the chunk, which the summary says in a note.
    calibration = summary["estimate_calibration"]
    if calibration["uncalibrated_classes"] == summary["model"]["classes"]:
        for c in chunks:
            rows = scored.iloc[c["start_index"] : c["end_index"] + 1]
            assert c["estimated"]["accuracy"]["value"] == pytest.approx(rows["confidence"].mean(), abs=1e-5)
    for c in chunks[:2]:  # clean and labelled (about 0.93 against 1.0 here)
        assert abs(c["estimated"]["accuracy"]["value"] - c["realized"]["accuracy"]) <= 0.2, c
    gap = abs(calibration["reference_accuracy"] - calibration["reference_mean_confidence"])
    if calibration["uncalibrated_classes"] and gap > 0.05:  # said first, with the reference's numbers
        assert summary["notes"][0] == calibration["note"]
        assert f"{calibration['reference_mean_confidence']:.3f} on the reference" in calibration["note"]

    # Alerts follow the user's scoping targets: realized accuracy below 0.8, estimated below 0.7.
    realized_alerts = [
        c["key"] for c in chunks if c["realized"]["accuracy"] is not None and c["realized"]["accuracy"] < 0.8
    ]
    estimated_alerts = [c["key"] for c in chunks if c["estimated"]["accuracy"]["value"] < 0.7]
    assert [a["chunk"] for a in summary["alerts"] if a["kind"] == "realized"] == realized_alerts
    assert [a["chunk"] for a in summary["alerts"] if a["kind"] == "performance"] == estimated_alerts
    assert proc.returncode == (1 if realized_alerts or estimated_alerts else 0), proc.stderr[-3000:]

    # Per class, in the user's class names.
    for row, kind in zip(summary["classes"], ["whistle", "buzz", "hiss"]):
        assert row["class"] == kind
        assert row["predicted_share"] == pytest.approx((scored["label"] == kind).mean())
        truly = scored.loc[labelled][scored.loc[labelled, "truth"] == kind]
        assert row["labelled"] == len(truly)
        assert row["realized_recall"] == pytest.approx((truly["label"] == kind).mean())
    page = (out / "report.html").read_text()
    assert "Classes: whistle, buzz, hiss." in page
    assert all(f"<td>{kind}</td>" in page for kind in ("whistle", "buzz", "hiss"))
    for name in ("estimated.csv", "drift.csv", "realized.csv"):
        assert (out / name).is_file()
    realized = pd.read_csv(out / "realized.csv")
    assert realized["realized_accuracy"].tolist() == pytest.approx(
        [c["realized"]["accuracy"] if c["labeled"] else np.nan for c in chunks], nan_ok=True
    )


def test_monitor_flags_the_noisy_room_on_the_users_sounds(monitored):
    """The noisy clips drift snr_db in exactly the noisy chunks; the slice names the drop."""
    summary, scored = json.loads((monitored["out"] / "summary.json").read_text()), monitored["scored"]
    noisy_keys = [c["key"] for c in summary["chunks"] if c["start_index"] >= CLEAN]
    assert "snr_db" in summary["drifted_features"]
    assert summary["drift"]["columns"]["snr_db"]["alerting_chunk_keys"] == noisy_keys
    (snr,) = [s for s in summary["slices"] if s["feature"] == "snr_db"]
    noisy_snr = scored["snr_db"].iloc[CLEAN:]
    assert snr["direction"] == "down" and snr["production"]["median"] == pytest.approx(noisy_snr.median(), abs=1e-4)
    assert snr["production"]["median"] < snr["reference"]["p5"]
    assert (monitored["out"] / "next_experiment.yaml").is_file()  # something drifted: a retraining suggestion
    assert monitored["seconds"] < 120


def test_edge_export_of_the_users_network(project, monitored, user_env, tmp_path):
    """scopeml-export from the user's selection: every format of TinyNet, and the exported programs score the
    clean traffic as the packaged model did."""
    import soundfile as sf

    from scopeml.serving.edge import EdgeRunner

    out = tmp_path / "edge"
    command("scopeml-export", str(project / "selection.json"), "--out", str(out), cwd=ROOT, env=user_env)
    report = json.loads((out / "edge_report.json").read_text())
    assert report["network"] == "sound_events.nets.TinyNet"
    assert {k: f["status"] for k, f in report["formats"].items()} == {
        "torchscript": "ok",
        "torchscript_int8": "ok",
        "onnx": "ok",
    }
    clean = monitored["scored"].iloc[:CLEAN]
    waves = [sf.read(monitored["clips"] / p, dtype="float32")[0] for p in clean["path"]]
    runner, int8 = EdgeRunner(out), EdgeRunner(out, int8=True)
    probs = np.array(
        [[runner.classify(w, 16000)["probabilities"][k] for k in ("whistle", "buzz", "hiss")] for w in waves]
    )
    expected = clean[["prob_whistle", "prob_buzz", "prob_hiss"]].to_numpy()
    assert np.abs(probs - expected).max() < 1e-4
    agreement = np.mean([int8.classify(w, 16000)["label"] == label for w, label in zip(waves, clean["label"])])
    assert agreement >= 0.9
