"""scopeml-monitor: estimate a deployed model's performance before labels arrive, watch drift, confirm with labels.

Reads the prediction log and the reference data packaged with the model, then runs NannyML:
CBPE (estimated accuracy and macro-F1 per chunk), univariate drift of every monitoring
feature and of the predicted class (optionally multivariate), and realized performance on
the rows that have labels. What that means (alerts, slices, recommendations, the next
experiment) is worked out in scopeml.monitoring.findings; scopeml.monitoring.report writes it.
The command itself (start-up, config check, failures, exit codes) is scopeml.cli.monitor: it exits
1 on an alert of a kind listed in monitor.fail_on, 2 on a MonitorError (bad input).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from scopeml.training import artifacts

TIME = "time_utc"


class MonitorError(ValueError):
    """Bad monitoring input; the message names the file or config field at fault."""


def monitor(config, run_dir: Path, resolved: dict) -> dict:
    """The monitoring stage, top to bottom. Returns the summary (its `exit_code` is the command's)."""
    from scopeml.monitoring import findings, report

    cfg = config.monitor
    timings: dict[str, float] = {}
    artifacts.save_config(run_dir, resolved)
    artifacts.mark(run_dir, "running", stage="inputs")
    with timed(timings, "read"):
        check_log_reachable(cfg.log)  # a bad URL or unreachable server fails first, in seconds
        model = load_model(cfg.model)
        data = load_analysis(cfg.log, model, cfg.features)
        chunking = chunking_of(cfg, data, model)
    artifacts.mark(run_dir, "running", stage="estimate")
    with timed(timings, "import_nannyml"), nannyml_quiet("load"):
        import nannyml  # noqa: F401  (about 10 s: timed on its own)
    with timed(timings, "estimate"):
        estimated = estimate_performance(model, data, chunking, cfg.metrics)
    artifacts.mark(run_dir, "running", stage="drift")
    with timed(timings, "drift"):
        drift = detect_drift(model, data, chunking, cfg)
    artifacts.mark(run_dir, "running", stage="realized")
    with timed(timings, "realized"):
        realized = realized_performance(model, data, chunking, cfg.metrics)
    artifacts.mark(run_dir, "running", stage="report")
    with timed(timings, "report"):
        results = Results(model, data, chunking, estimated, drift, realized, bounds=alert_bounds(config.scoping))
        summary = findings.summarize(results, config)
        summary["classes"] = class_table(model, data)
        summary["estimate_calibration"] = calibration = estimate_calibration(model)
        if calibration["note"]:
            summary["notes"].insert(0, calibration["note"])
        report.write_outputs(results, summary, run_dir)
    summary["timings_s"] = {k: round(v, 3) for k, v in timings.items()}
    artifacts.write_json(run_dir / "summary.json", summary)
    _log_to_wandb(config, run_dir, summary)
    report.print_summary(summary, run_dir)
    artifacts.mark(run_dir, "complete", stage="done", finished_utc=artifacts.now(), exit_code=summary["exit_code"])
    return summary


# --------------------------------------------------------------------------- inputs
@dataclass
class Model:
    tag: str
    classes: list[str]
    reference: object  # DataFrame: label, pred, prob_<class>, features, time_utc
    serving: dict
    training_config: dict | None  # the run's resolved config, when the bundle carries it


@dataclass
class Analysis:
    frame: object  # DataFrame: the model's logged predictions, `pred`, `label` (NaN until labelled), time_utc
    log_path: str  # the log's path or URL, without a password
    log_rows: int
    tags: dict[str, int]  # every model tag in the log, with its row count
    dropped: dict[str, int] = field(default_factory=dict)  # rows left out, by reason


@dataclass
class Results:
    model: Model
    data: Analysis
    chunking: dict
    estimated: object  # NannyML CBPE result (reference and analysis periods)
    drift: dict  # {"univariate": result, "multivariate": result | None, "columns": [...], "method": str}
    realized: object | None  # NannyML PerformanceCalculator result, None without labels
    bounds: dict


def load_model(tag: str) -> Model:
    import bentoml
    import pandas as pd

    from scopeml.monitoring.reference import REFERENCE_FILE

    home = os.environ.get("BENTOML_HOME", "~/bentoml")
    try:
        stored = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise MonitorError(
            f"monitor.model={tag}: no such model in the BentoML store at {home} (scopeml-package puts it there)"
        ) from None
    except bentoml.exceptions.BentoMLException as exc:
        raise MonitorError(f"monitor.model={tag}: {exc}") from None
    path = Path(stored.path)
    for name in ("serving.json", REFERENCE_FILE):
        if not (path / name).is_file():
            raise MonitorError(
                f"monitor.model={stored.tag}: {path / name} is missing (package the model again with scopeml-package)"
            )
    serving = json.loads((path / "serving.json").read_text())
    classes = [str(c) for c in serving.get("classes", [])]
    if len(classes) < 2:
        raise MonitorError(f"{path / 'serving.json'}: field 'classes' must list the model's classes")
    reference = pd.read_parquet(path / REFERENCE_FILE)
    missing = [c for c in ("label", "pred", *(f"prob_{k}" for k in classes)) if c not in reference.columns]
    if missing or reference.empty:
        raise MonitorError(
            f"{path / REFERENCE_FILE}: " + (f"lacks column(s) {', '.join(missing)}" if missing else "has no rows")
        )
    reference = reference.copy()
    for col in ("label", "pred"):
        reference[col] = reference[col].astype(str)
    reference[TIME] = (
        pd.to_datetime(reference[TIME], utc=True) if TIME in reference else pd.Timestamp("2000-01-01", tz="UTC")
    )
    training = None
    if (path / "config.yaml").is_file():
        import yaml

        training = yaml.safe_load((path / "config.yaml").read_text())
    return Model(str(stored.tag), classes, reference, serving, training)


def check_log_reachable(url: str) -> None:
    from scopeml.serving.log import LogURLError, check_log

    try:
        check_log(url, "monitor.log")
    except LogURLError as exc:
        raise MonitorError(str(exc)) from None


def load_analysis(log_path: str | Path, model: Model, features: list[str]) -> Analysis:
    """The log's rows for this model version, with `pred` (the logged label) and `label` (delivered ground truth)."""
    import pandas as pd

    from scopeml.serving.loadtest import LOADTEST_PREFIX
    from scopeml.serving.log import LogURLError, log_exists, public_url, read_labels, read_log

    source, shown = str(log_path), public_url(log_path)  # what is connected to; what is shown (no password)
    where = f"monitor.log={shown}"
    try:
        if not log_exists(source, "monitor.log"):
            raise MonitorError(
                f"{where}: no prediction log there (the service and scopeml-batch write it; see deploy.prediction_log)"
            )
        log = read_log(source, "monitor.log")
        labels = read_labels(source, "monitor.log")
    except LogURLError as exc:
        raise MonitorError(str(exc)) from None
    except (sqlite3.DatabaseError, pd.errors.DatabaseError) as exc:
        raise MonitorError(f"{where}: not a readable prediction log ({exc})") from None
    if log.empty:
        raise MonitorError(f"{where}: the prediction log is empty (no predictions logged yet)")
    tags = log["model_tag"].astype(str).value_counts().to_dict()
    rows = log[log["model_tag"] == model.tag]
    if rows.empty:
        have = ", ".join(f"{t} ({n} rows)" for t, n in tags.items())
        raise MonitorError(
            f"{where}: no predictions from model {model.tag}, which the reference data is for; "
            f"the log has model tag(s) {have}. Set monitor.model to one of those."
        )
    check_columns(rows, model, features, where)
    frame = rows.rename(columns={"label": "pred"}).drop(columns=["id"]).reset_index(drop=True)
    frame["pred"] = frame["pred"].astype(str)
    truth = labels.drop_duplicates("request_id", keep="last").set_index("request_id")["label"].astype(str)
    frame["label"] = frame["request_id"].map(truth).astype("object")
    foreign = frame["label"].notna() & ~frame["label"].isin(model.classes)
    frame.loc[foreign, "label"] = None  # a delivered label outside the model's classes cannot score it
    try:
        frame[TIME] = pd.to_datetime(frame[TIME], utc=True, format="ISO8601")
    except (ValueError, TypeError) as exc:
        raise MonitorError(f"{where}: column {TIME} has a value that is not an ISO 8601 time ({exc})") from None
    probs = [f"prob_{c}" for c in model.classes]
    incomplete = frame[probs + ["pred", TIME]].isna().any(axis=1)
    # Load tests send the model's own test clips; they measure the service, not the world.
    synthetic = frame["request_id"].astype(str).str.startswith(LOADTEST_PREFIX)
    dropped = {
        "rows without probabilities, prediction or time": int(incomplete.sum()),
        "labels outside the model's classes (ignored)": int(foreign.sum()),
        "load-test traffic (not production)": int((synthetic & ~incomplete).sum()),
    }
    dropped = {k: v for k, v in dropped.items() if v}
    frame = frame[~incomplete & ~synthetic].sort_values(TIME, kind="stable").reset_index(drop=True)
    # NannyML sorts by time again, with an unstable sort: rows logged at the same instant (a batch job logs a whole
    # batch with one time) would change places, and its chunks would not hold the rows this frame has at their
    # indices (slices, per-chunk explanations). Tied rows get nanosecond offsets, in log order.
    frame[TIME] = frame[TIME] + pd.to_timedelta(frame.groupby(TIME).cumcount().to_numpy(), unit="ns")
    if frame.empty and synthetic.any():
        raise MonitorError(
            f"{where}: model {model.tag} has only load-test traffic in the log; nothing from production to monitor yet"
        )
    if frame.empty:
        raise MonitorError(f"{where}: every row of model {model.tag} lacks probabilities, prediction or time")
    return Analysis(frame, shown, len(log), tags, dropped)


def check_columns(rows, model: Model, features: list[str], where: str) -> None:
    for name, table in (("the log", rows), (f"the reference of {model.tag}", model.reference)):
        missing = [f for f in features if f not in table.columns or table[f].isna().all()]
        if missing:
            raise MonitorError(
                f"{where}: {name} lacks feature column(s) {', '.join(missing)} (monitor.features); "
                f"it has {', '.join(c for c in table.columns if not c.startswith('prob_'))}"
            )
    logged = sorted(c[len("prob_") :] for c in rows.columns if c.startswith("prob_") and rows[c].notna().any())
    absent = [c for c in model.classes if c not in logged]
    extra = [c for c in logged if c not in model.classes]
    if absent or extra:
        raise MonitorError(
            f"{where}: the log's classes {logged} differ from the model's {model.classes}"
            + (f"; missing probability column(s) {', '.join('prob_' + c for c in absent)}" if absent else "")
            + (f"; extra class(es) {extra}" if extra else "")
        )
    unknown = sorted(set(rows["label"].dropna().astype(str)) - set(model.classes))
    if unknown:
        raise MonitorError(
            f"{where}: predicted label(s) {unknown} (column label) are not among the model's classes {model.classes}"
        )


def chunking_of(cfg, data: Analysis, model: Model) -> dict:
    """NannyML chunking arguments. By period, the reference (which has no real times) is spread over periods
    so that its chunks hold about as many rows as a typical analysis chunk, and at least 6 chunks."""
    import numpy as np
    import pandas as pd

    if cfg.chunk_size is not None:
        return {"chunk_size": int(cfg.chunk_size), "timestamp_column_name": TIME}
    times = data.frame[TIME].dt.tz_convert(None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            per_period = times.dt.to_period(cfg.chunk_period).value_counts()
    except (ValueError, TypeError, AttributeError) as exc:
        raise MonitorError(
            f"monitor.chunk_period={cfg.chunk_period!r}: not a pandas period alias such as 'h' or 'D' ({exc})"
        ) from None
    n_ref = len(model.reference)
    rows_per = max(1, min(int(per_period.median()), n_ref // 6))
    starts = pd.date_range("2000-01-01", periods=n_ref // rows_per + 1, freq=cfg.chunk_period, tz="UTC")
    model.reference[TIME] = starts[np.arange(n_ref) // rows_per]
    return {"chunk_period": cfg.chunk_period, "timestamp_column_name": TIME, "reference_rows_per_chunk": rows_per}


def alert_bounds(scoping) -> dict:
    targets = scoping.targets
    est = targets.get("estimated_accuracy") or targets.get("accuracy")
    source = "estimated_accuracy" if "estimated_accuracy" in targets else "accuracy"
    acc = targets.get("accuracy")
    return {
        "estimated_accuracy": est.min if est is not None else None,
        "estimated_accuracy_source": f"scoping.targets.{source}.min" if est is not None else None,
        "realized_accuracy": acc.min if acc is not None else None,
        "realized_accuracy_source": "scoping.targets.accuracy.min" if acc is not None else None,
    }


# --------------------------------------------------------------------------- NannyML
# NannyML's domain classifier imports FLAML's AutoML, whose time-series package tries its TCN estimator, which
# imports PyTorch Lightning and torch: 12 of the 22 CPU-s that `import nannyml` took here, for an estimator
# monitoring never uses. FLAML already treats that import as optional (`except ImportError`).
_UNUSED_HEAVY_OPTIONAL = "flaml.automl.time_series.tcn"


def import_nannyml() -> None:
    """Import NannyML without FLAML's time-series TCN estimator, then leave that module importable again."""
    if "nannyml" in sys.modules or "pytorch_lightning" in sys.modules:
        return  # already paid for
    blocked = _UNUSED_HEAVY_OPTIONAL not in sys.modules
    if blocked:
        sys.modules[_UNUSED_HEAVY_OPTIONAL] = None  # makes its import raise ImportError
    try:
        import nannyml  # noqa: F401
    finally:
        if blocked and sys.modules.get(_UNUSED_HEAVY_OPTIONAL, "") is None:
            del sys.modules[_UNUSED_HEAVY_OPTIONAL]


@contextmanager
def nannyml_quiet(what: str):
    """Import NannyML without its usage telemetry.

    Silence its per-chunk warnings, and turn its errors into MonitorError.
    """
    os.environ.setdefault("NML_DISABLE_USAGE_LOGGING", "1")  # NannyML otherwise sends usage events to Segment
    logging.getLogger("nannyml").setLevel(logging.ERROR)
    import_nannyml()
    from nannyml.exceptions import NannyMLException

    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # pandas 3 deprecations inside NannyML; "too few labels" per chunk (we report null)
        try:
            yield
        except NannyMLException as exc:
            raise MonitorError(f"NannyML could not {what}: {exc}") from None


def _metrics(metrics: list[str]) -> list[str]:
    return ["accuracy", *(m for m in metrics if m != "accuracy")]  # accuracy always: the alert bound is on it


def _chunk_args(chunking: dict) -> dict:
    return {k: v for k, v in chunking.items() if k in ("chunk_size", "chunk_period", "timestamp_column_name")}


def estimate_performance(model: Model, data: Analysis, chunking: dict, metrics: list[str]):
    with nannyml_quiet("estimate performance (CBPE)"):
        import nannyml as nml

        estimator = nml.CBPE(
            problem_type="classification_multiclass",
            y_pred_proba={c: f"prob_{c}" for c in model.classes},
            y_pred="pred",
            y_true="label",
            metrics=_metrics(metrics),
            **_chunk_args(chunking),
        )
        estimator.fit(model.reference)
        return estimator.estimate(data.frame.drop(columns=["label"]))  # no labels: the estimate must not see them


def detect_drift(model: Model, data: Analysis, chunking: dict, cfg) -> dict:
    columns = [*cfg.features, "pred"]
    with nannyml_quiet("calculate drift"):
        import nannyml as nml

        calc = nml.UnivariateDriftCalculator(
            column_names=columns,
            treat_as_numerical=list(cfg.features),
            treat_as_categorical=["pred"],
            continuous_methods=[cfg.drift_method],
            categorical_methods=["jensen_shannon"],
            **_chunk_args(chunking),
        )
        univariate = calc.fit(model.reference).calculate(data.frame)
        multivariate = None
        if cfg.multivariate:
            mv = nml.DataReconstructionDriftCalculator(column_names=list(cfg.features), **_chunk_args(chunking))
            multivariate = mv.fit(model.reference).calculate(data.frame)
    return {
        "univariate": univariate,
        "multivariate": multivariate,
        "features": list(cfg.features),
        "method": cfg.drift_method,
    }


def realized_performance(model: Model, data: Analysis, chunking: dict, metrics: list[str]):
    if not data.frame["label"].notna().any():
        return None
    with nannyml_quiet("calculate realized performance"):
        import nannyml as nml

        calc = nml.PerformanceCalculator(
            problem_type="classification_multiclass",
            y_pred_proba={c: f"prob_{c}" for c in model.classes},
            y_pred="pred",
            y_true="label",
            metrics=_metrics(metrics),
            **_chunk_args(chunking),
        )
        return calc.fit(model.reference).calculate(data.frame)  # chunks without labels come out NaN (reported as null)


# --------------------------------------------------------------------------- per class, and what CBPE could calibrate
def class_table(model: Model, data: Analysis) -> list[dict]:
    """Per class of the model: its share of the predictions (reference and log) and, on the labelled rows,
    how many clips are truly of it and the fraction of those predicted as it (realized recall; null without any)."""
    frame, ref = data.frame, model.reference
    labelled = frame[frame["label"].notna()]
    rows = []
    for c in model.classes:
        truth = labelled[labelled["label"] == c]
        rows.append(
            {
                "class": c,
                "reference_predicted_share": float((ref["pred"] == c).mean()),
                "predicted_share": float((frame["pred"] == c).mean()),
                "labelled": len(truth),
                "realized_recall": float((truth["pred"] == c).mean()) if len(truth) else None,
            }
        )
    return rows


def estimate_calibration(model: Model) -> dict:
    """Which classes NannyML's CBPE can calibrate on the reference, and a note when it cannot and that matters.

    CBPE fits a calibrator per class (one-vs-rest) on the reference, but skips a class whose reference
    probabilities already separate it perfectly (AUROC above 0.999, NannyML's rule) or that is alone or absent
    there. A reference without errors (an easy task, a small held-out set) is skipped for every class: the
    estimated accuracy is then the model's mean confidence, and its band has no width (the sampling error comes
    from the reference's errors). Right for calibrated probabilities, off by the gap for under- or overconfident ones.
    """
    import numpy as np
    from sklearn.metrics import roc_auc_score

    ref = model.reference
    probs = ref[[f"prob_{c}" for c in model.classes]].to_numpy(dtype=float)
    uncalibrated = []
    for i, c in enumerate(model.classes):
        truth = (ref["label"] == c).to_numpy()
        if truth.all() or not truth.any() or roc_auc_score(truth, probs[:, i]) > 0.999:
            uncalibrated.append(c)
    rows = ref["pred"].isin(uncalibrated).to_numpy()
    accuracy = float((ref["label"] == ref["pred"])[rows].mean()) if rows.any() else None
    confidence = float(probs[rows].max(axis=1).mean()) if rows.any() else None
    note = None
    if rows.any() and abs(accuracy - confidence) > 0.05:
        which = "every class" if len(uncalibrated) == len(model.classes) else f"class(es) {', '.join(uncalibrated)}"
        note = (
            f"CBPE uses the model's probabilities uncalibrated for {which}: the reference separates them perfectly "
            "(NannyML calibrates only where the reference has errors to learn from), so the estimated accuracy there "
            f"is the mean confidence, {confidence:.3f} on the reference against a realized {accuracy:.3f}; estimates "
            f"read about {abs(accuracy - confidence):.2f} {'low' if confidence < accuracy else 'high'}"
            + (" and their bands have no width" if np.isclose(accuracy, 1.0) else "")
            + ". Trust realized accuracy (scopeml-label) until the model's probabilities are calibrated "
            "or its reference (the held-out splits) has errors"
        )
    return {
        "uncalibrated_classes": uncalibrated,
        "reference_accuracy": accuracy,
        "reference_mean_confidence": confidence,
        "note": note,
    }


# --------------------------------------------------------------------------- tracking and helpers
def _log_to_wandb(config, run_dir: Path, summary: dict) -> None:
    if config.tracker.kind == "none":
        return
    os.environ.setdefault("WANDB_SILENT", "true")
    import wandb

    t = config.tracker
    from scopeml.training.tracking import settings as tracking_settings

    run = wandb.init(
        project=t.project,
        entity=t.entity,
        mode=t.mode,
        dir=str(run_dir),
        name=f"monitor-{run_dir.name}",
        job_type="monitoring",
        settings=tracking_settings(),
        group=t.group,
        tags=list(t.tags),
        notes=t.notes,
        config={
            "model": summary["model"]["tag"],
            "log": summary["log"]["path"],
            "chunking": summary["chunking"],
            "bounds": summary["bounds"],
            "fail_on": list(config.monitor.fail_on),
        },
    )
    for chunk in summary["chunks"]:
        row = {"chunk": chunk["index"], "estimated_accuracy": chunk["estimated"]["accuracy"]["value"]}
        if chunk["realized"].get("accuracy") is not None:
            row["realized_accuracy"] = chunk["realized"]["accuracy"]
        run.log(row)
    run.summary.update({f"monitor/{k}": v for k, v in summary["headline"].items()})
    art = wandb.Artifact(
        f"monitor-report-{summary['model']['tag'].replace(':', '-')}",
        type="monitoring-report",
        metadata={"model": summary["model"]["tag"], **summary["counts"]},
    )
    for name in ("report.html", "summary.json"):
        art.add_file(str(run_dir / name))
    run.log_artifact(art)
    run.finish()


@contextmanager
def timed(timings: dict, name: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - started
