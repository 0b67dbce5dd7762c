"""What scopeml-monitor makes of NannyML's results: the chunk table, drifted features, the slices that moved,
alerts, recommendations and the next experiment, as plain data (summary.json). scopeml.monitoring.report renders them.

A number that could not be computed (realized accuracy of a chunk without labels) is null, never 0.
"""

from __future__ import annotations

import math

import numpy as np

UNITS = {"duration_s": "s", "rms_dbfs": "dBFS", "silence_ratio": "", "spectral_centroid_hz": "Hz", "snr_db": "dB"}
HINTS = {
    ("spectral_centroid_hz", "up"): "higher voices or brighter microphones",
    ("spectral_centroid_hz", "down"): "lower voices or muffled microphones",
    ("snr_db", "down"): "noisier rooms",
    ("snr_db", "up"): "cleaner recordings than in training",
    ("rms_dbfs", "down"): "quieter or far-field speech",
    ("rms_dbfs", "up"): "louder speech, possibly clipped",
    ("duration_s", "up"): "longer recordings",
    ("duration_s", "down"): "shorter or cut-off recordings",
    ("silence_ratio", "up"): "more silence around the word",
    ("silence_ratio", "down"): "less silence: speech cut close, or steady background noise",
}
TAIL = 0.05  # slices compare against the reference's 5th and 95th percentiles: 5% of clips expected beyond each


# --------------------------------------------------------------------------- summary
def summarize(results, config) -> dict:
    """Everything scopeml-monitor found, as plain data (summary.json)."""
    cfg = config.monitor
    tables = _tables(results)
    metrics = [m.column_name for m in results.estimated.metrics]
    chunks = chunk_rows(tables, metrics, results.bounds, results.drift)
    drift = drift_columns(tables, chunks, results.drift, cfg.min_drifted_chunks)
    drifted = [c for c, d in drift["columns"].items() if d["drifted"]]
    slices = describe_slices(results, chunks, [c for c in drifted if c != "pred"])
    alerts = alert_list(chunks, drift, results.bounds)
    kinds = {a["kind"] for a in alerts}
    explained = explain_alert_chunks(results, chunks)
    experiment = next_experiment(results, config, slices) if alerts or drifted else None
    recommendations = recommend(results, chunks, drift, slices, explained, alerts, experiment)
    failed = sorted(kinds & set(cfg.fail_on))
    est_acc = [c["estimated"]["accuracy"]["value"] for c in chunks if c["estimated"]["accuracy"]["value"] is not None]
    real_acc = [c["realized"]["accuracy"] for c in chunks if c["realized"]["accuracy"] is not None]
    frame = results.data.frame
    counts = {
        "chunks": len(chunks),
        "chunks_with_labels": sum(c["labeled"] > 0 for c in chunks),
        "performance_alerts": sum(c["alerts"]["performance"] for c in chunks),
        "realized_alerts": sum(c["alerts"]["realized"] for c in chunks),
        "nannyml_performance_alerts": sum(any(e["nannyml_alert"] for e in c["estimated"].values()) for c in chunks),
        "drift_alerts": sum(len(c["alerts"]["drift"]) for c in chunks),
        "drifted_features": len(drifted),
        "alerts": len(alerts),
    }
    return {
        "model": {"tag": results.model.tag, "classes": results.model.classes},
        "log": {
            "path": str(results.data.log_path),
            "rows": results.data.log_rows,
            "model_rows": len(frame),
            "model_tags": results.data.tags,
            "labeled": int(frame["label"].notna().sum()),
            "dropped": results.data.dropped,
            "first_time": _iso(frame["time_utc"].min()),
            "last_time": _iso(frame["time_utc"].max()),
        },
        "reference": {"rows": len(results.model.reference), "chunks": len(tables["reference"])},
        "chunking": results.chunking,
        "metrics": metrics,
        "bounds": results.bounds,
        "headline": {
            "min_estimated_accuracy": _num(min(est_acc)) if est_acc else None,
            "mean_estimated_accuracy": _num(_weighted(chunks, "estimated")),
            "min_realized_accuracy": _num(min(real_acc)) if real_acc else None,
            "mean_realized_accuracy": _num(_weighted(chunks, "realized")),
            "drifted_features": len(drifted),
            "alerts": len(alerts),
            "rows": len(frame),
            "failed": bool(failed),
        },
        "chunks": chunks,
        "drift": drift,
        "drifted_features": drifted,
        "slices": slices,
        "alert_chunks": explained,
        "alerts": alerts,
        "recommendations": recommendations,
        "next_experiment": experiment,
        "counts": counts,
        "notes": _notes(results, tables, drift),
        "fail_on": list(cfg.fail_on),
        "failed_on": failed,
        "exit_code": 1 if failed else 0,
    }


def _tables(results) -> dict:
    drift = results.drift
    return {
        "estimated": results.estimated.filter(period="analysis").to_df(),
        "reference": results.estimated.filter(period="reference").to_df(),
        "univariate": drift["univariate"].filter(period="analysis").to_df(),
        "multivariate": drift["multivariate"].filter(period="analysis").to_df()
        if drift["multivariate"] is not None
        else None,
        "realized": results.realized.filter(period="analysis").to_df() if results.realized is not None else None,
    }


def chunk_rows(tables: dict, metrics: list[str], bounds: dict, drift: dict) -> list[dict]:
    """One row per chunk.

    Estimate with band and NannyML's alert, realized (null without labels), drift alerts, our alerts.
    """
    est, uni, mv, real = tables["estimated"], tables["univariate"], tables["multivariate"], tables["realized"]
    keys = est[("chunk", "key")].tolist()
    if uni[("chunk", "chunk", "key")].tolist() != keys or (
        real is not None and real[("chunk", "key")].tolist() != keys
    ):
        raise RuntimeError("NannyML chunked the estimate, drift and realized performance differently")
    columns = [*drift["features"], "pred"]
    method = {c: drift["method"] for c in drift["features"]} | {"pred": "jensen_shannon"}
    rows = []
    for i, key in enumerate(keys):
        start, end = int(est[("chunk", "start_index")].iloc[i]), int(est[("chunk", "end_index")].iloc[i])
        n = end - start + 1
        estimated = {
            m: {
                "value": _num(est[(m, "value")].iloc[i]),
                "lower": _num(est[(m, "lower_confidence_boundary")].iloc[i]),
                "upper": _num(est[(m, "upper_confidence_boundary")].iloc[i]),
                "sampling_error": _num(est[(m, "sampling_error")].iloc[i]),
                "nannyml_lower_threshold": _num(est[(m, "lower_threshold")].iloc[i]),
                "nannyml_upper_threshold": _num(est[(m, "upper_threshold")].iloc[i]),
                "nannyml_alert": bool(est[(m, "alert")].iloc[i]),
            }
            for m in metrics
        }
        realized = {m: _num(real[(m, "value")].iloc[i]) if real is not None else None for m in metrics}
        realized_error = {
            m: _num(real[(m, "sampling_error")].iloc[i]) if real is not None and realized[m] is not None else None
            for m in metrics
        }
        labeled = (
            int(round((1 - float(real[("chunk", "targets_missing_rate")].iloc[i])) * n)) if real is not None else 0
        )
        difference = {
            m: _num(abs(estimated[m]["value"] - realized[m]))
            if None not in (estimated[m]["value"], realized[m])
            else None
            for m in metrics
        }
        drifting = [c for c in columns if bool(uni[(c, method[c], "alert")].iloc[i])]
        acc, acc_real = estimated["accuracy"]["value"], realized["accuracy"]
        rows.append(
            {
                "index": i,
                "key": key,
                "start_index": start,
                "end_index": end,
                "rows": n,
                "labeled": labeled,
                "start_time": _iso(est[("chunk", "start_date")].iloc[i]),
                "end_time": _iso(est[("chunk", "end_date")].iloc[i]),
                "estimated": estimated,
                "realized": realized,
                "realized_sampling_error": realized_error,
                "difference": difference,
                "multivariate": (
                    {
                        "reconstruction_error": _num(mv[("reconstruction_error", "value")].iloc[i]),
                        "alert": bool(mv[("reconstruction_error", "alert")].iloc[i]),
                    }
                    if mv is not None
                    else None
                ),
                "alerts": {
                    "performance": bounds["estimated_accuracy"] is not None
                    and acc is not None
                    and acc < bounds["estimated_accuracy"],
                    "realized": bounds["realized_accuracy"] is not None
                    and acc_real is not None
                    and acc_real < bounds["realized_accuracy"],
                    "drift": drifting,
                },
            }
        )
    return rows


def drift_columns(tables: dict, chunks: list[dict], drift: dict, min_drifted_chunks: int) -> dict:
    uni, mv = tables["univariate"], tables["multivariate"]
    out: dict = {
        "method": drift["method"],
        "categorical_method": "jensen_shannon",
        "min_drifted_chunks": min_drifted_chunks,
        "columns": {},
    }
    for col in [*drift["features"], "pred"]:
        method = "jensen_shannon" if col == "pred" else drift["method"]
        alerting = [c["key"] for c in chunks if col in c["alerts"]["drift"]]
        values = uni[(col, method, "value")].astype(float)
        out["columns"][col] = {
            "kind": "categorical" if col == "pred" else "continuous",
            "method": method,
            "upper_threshold": _num(uni[(col, method, "upper_threshold")].dropna().iloc[0])
            if uni[(col, method, "upper_threshold")].notna().any()
            else None,
            "max_value": _num(values.max()),
            "mean_value": _num(values.mean()),
            "alerting_chunks": len(alerting),
            "chunks": len(chunks),
            "alerting_fraction": _num(len(alerting) / max(len(chunks), 1)),
            "drifted": len(alerting) >= max(1, min_drifted_chunks),
            "alerting_chunk_keys": alerting,
        }
    if mv is not None:
        alerting = [c["key"] for c in chunks if c["multivariate"]["alert"]]
        out["multivariate"] = {
            "method": "data_reconstruction (PCA)",
            "upper_threshold": _num(mv[("reconstruction_error", "upper_threshold")].iloc[0]),
            "alerting_chunks": len(alerting),
            "drifted": len(alerting) >= max(1, min_drifted_chunks),
            "alerting_chunk_keys": alerting,
        }
    else:
        out["multivariate"] = None
    return out


def describe_slices(results, chunks: list[dict], features: list[str]) -> list[dict]:
    """How each drifted feature differs from the reference, in the chunks where it drifted."""
    ref_all, frame = results.model.reference, results.data.frame
    out = []
    for f in features:
        drifting = [c for c in chunks if f in c["alerts"]["drift"]]
        rows = np.concatenate([np.arange(c["start_index"], c["end_index"] + 1) for c in drifting])
        prod, ref = frame[f].iloc[rows].dropna().astype(float), ref_all[f].dropna().astype(float)
        p5, p50, p90, p95 = (float(v) for v in ref.quantile([TAIL, 0.5, 0.9, 1 - TAIL]))
        above, below = float((prod > p95).mean()), float((prod < p5).mean())
        up = above >= below
        direction, edge, frac = ("up", p95, above) if up else ("down", p5, below)
        hint = HINTS.get((f, direction), "")
        text = (
            f"{f} {'above' if up else 'below'} the reference {'p95' if up else 'p5'} ({_fmt(edge, f)}) "
            f"in {frac:.0%} of production clips "
            f"({TAIL:.0%} expected) in the {len(drifting)} chunk(s) where it drifted; median {_fmt(prod.median(), f)} "
            f"vs {_fmt(p50, f)} in the reference, p90 {_fmt(prod.quantile(0.9), f)} vs {_fmt(p90, f)}"
        )
        out.append(
            {
                "feature": f,
                "direction": direction,
                "hint": hint,
                "text": text,
                "rule": f"{f} {'>' if up else '<'} {_fmt(edge, f)}",
                "reference": {
                    "p5": _num(p5),
                    "median": _num(p50),
                    "p90": _num(p90),
                    "p95": _num(p95),
                    "std": _num(ref.std()),
                },
                "production": {"median": _num(prod.median()), "p90": _num(prod.quantile(0.9)), "rows": len(prod)},
                "fraction_above_reference_p95": _num(above),
                "fraction_below_reference_p5": _num(below),
                "expected_fraction": TAIL,
                "fraction_above_reference_p95_whole_log": _num((frame[f] > p95).mean()),
                "fraction_below_reference_p5_whole_log": _num((frame[f] < p5).mean()),
                "chunks": [c["key"] for c in drifting],
            }
        )
    return out


def explain_alert_chunks(results, chunks: list[dict]) -> list[dict]:
    """For each chunk with a performance or realized alert: the drifting features that moved most there.

    (median shift in reference SDs)
    """
    ref, frame = results.model.reference, results.data.frame
    out = []
    for c in chunks:
        if not (c["alerts"]["performance"] or c["alerts"]["realized"]):
            continue
        moved = []
        for f in c["alerts"]["drift"]:
            if f == "pred":
                continue
            here = frame[f].iloc[c["start_index"] : c["end_index"] + 1].astype(float)
            sd = float(ref[f].std()) or 1.0
            shift = (float(here.median()) - float(ref[f].median())) / sd
            moved.append(
                {
                    "feature": f,
                    "median_shift_sd": _num(shift),
                    "median": _num(here.median()),
                    "reference_median": _num(ref[f].median()),
                }
            )
        moved.sort(key=lambda m: -abs(m["median_shift_sd"] or 0))
        text = ", ".join(
            f"{m['feature']} {m['median_shift_sd']:+.1f} SD (median {_fmt(m['median'], m['feature'])} vs "
            f"{_fmt(m['reference_median'], m['feature'])})"
            for m in moved[:3]
        )
        out.append(
            {
                "chunk": c["key"],
                "estimated_accuracy": c["estimated"]["accuracy"]["value"],
                "realized_accuracy": c["realized"]["accuracy"],
                "prediction_drift": "pred" in c["alerts"]["drift"],
                "features": moved[:3],
                "text": text
                or "no monitored feature drifted in this chunk: the cause lies outside the monitored features",
            }
        )
    return out


def alert_list(chunks: list[dict], drift: dict, bounds: dict) -> list[dict]:
    alerts = []
    for c in chunks:
        e = c["estimated"]["accuracy"]
        if c["alerts"]["performance"]:
            alerts.append(
                {
                    "kind": "performance",
                    "chunk": c["key"],
                    "message": f"chunk {c['key']}: estimated accuracy {e['value']:.3f} [{band(e)}] below the bound "
                    f"{bounds['estimated_accuracy']:.3f} ({bounds['estimated_accuracy_source']})",
                }
            )
        if c["alerts"]["realized"]:
            alerts.append(
                {
                    "kind": "realized",
                    "chunk": c["key"],
                    "message": f"chunk {c['key']}: realized accuracy {c['realized']['accuracy']:.3f} "
                    f"(sampling error {fmt3(c['realized_sampling_error']['accuracy'])}) "
                    f"on {c['labeled']} labelled clip(s) "
                    f"below the target {bounds['realized_accuracy']:.3f} ({bounds['realized_accuracy_source']})",
                }
            )
    for col, d in drift["columns"].items():
        if d["drifted"]:
            alerts.append(
                {
                    "kind": "drift",
                    "chunk": None,
                    "feature": col,
                    "message": f"{col} drifted in {d['alerting_chunks']} of {d['chunks']} chunk(s) "
                    f"({d['method']} above NannyML's "
                    f"threshold {fmt3(d['upper_threshold'])}; max {fmt3(d['max_value'])})",
                }
            )
    if drift["multivariate"] and drift["multivariate"]["drifted"]:
        mv = drift["multivariate"]
        alerts.append(
            {
                "kind": "drift",
                "chunk": None,
                "feature": "multivariate",
                "message": f"multivariate (PCA reconstruction error) drift in {mv['alerting_chunks']} chunk(s)",
            }
        )
    return alerts


# --------------------------------------------------------------------------- the loop back
def recommend(results, chunks, drift, slices, explained, alerts, experiment) -> list[str]:
    kinds = {a["kind"] for a in alerts}
    recs = [f"collect and label clips like: {s['rule']}" + (f" ({s['hint']})" if s["hint"] else "") for s in slices]
    if drift["columns"]["pred"]["drifted"]:
        recs.append(
            "the predicted class mix changed "
            f"({_class_shift(results, drift['columns']['pred']['alerting_chunk_keys'], chunks)}): "
            "check whether users say words outside the scoped classes"
        )
    if kinds & {"performance", "realized"}:
        what = (
            "augmentation heavy and the clips collected above"
            if slices
            else "augmentation heavy and newly labelled production clips"
        )
        recs.append(
            f"retrain with {what}: copy next_experiment.yaml into conf/experiment/ "
            "and run scopeml-train experiment=<its name>"
        )
    unlabeled = [c["key"] for c in chunks if c["alerts"]["performance"] and c["labeled"] == 0]
    if unlabeled:
        recs.append(
            f"label a sample of the alerting chunks without labels ({_some(unlabeled)}) "
            "with scopeml-label to confirm the estimate"
        )
    if any(not e["features"] for e in explained):
        recs.append(
            "some alerting chunks show no feature drift: review and label their clips (new words, speakers or devices)"
        )
    if "drift" in kinds and not kinds & {"performance", "realized"}:
        recs.append(
            "drift without a performance alert: keep watching, and collect the clips above before they hurt accuracy"
        )
    if experiment is None:
        recs.append("no action needed: estimated performance within bounds and no feature drifted")
    return recs


def next_experiment(results, config, slices) -> dict:
    """Plain overrides for a Hydra experiment file.

    Heavy augmentation, plus synth recipe ranges moved toward production.
    """
    from dataclasses import asdict

    import yaml

    from scopeml.config.paths import conf_dir

    data = (results.model.training_config or {}).get("data") or asdict(config.data)
    heavy = yaml.safe_load((conf_dir() / "data" / "augment" / "heavy.yaml").read_text())
    synth = _synth_ranges(data)
    body: dict = {"defaults": [{"override /data/augment": "heavy"}]}
    overrides: dict = {}  # ranges as floats, pitches as ints: what the schema declares
    why = ["heavy augmentation (data/augment=heavy)"]
    by = {s["feature"]: s for s in slices}
    if "snr_db" in by and by["snr_db"]["direction"] == "down":
        drop = by["snr_db"]["reference"]["median"] - by["snr_db"]["production"]["median"]
        lo, hi = heavy["noise_snr_db"]
        overrides.setdefault("augment", {})["noise_snr_db"] = [max(0.0, float(math.floor(lo - drop))), float(hi)]
        if synth:
            lo, hi = synth["noise_snr_db"]
            overrides["noise_snr_db"] = [max(0.0, float(math.floor(lo - drop))), float(hi)]
        why.append(f"noisier audio: SNR ranges lowered by {drop:.0f} dB")
    if "spectral_centroid_hz" in by and synth:
        s = by["spectral_centroid_hz"]
        factor = s["production"]["median"] / s["reference"]["median"]
        pitches = sorted(int(p) for p in synth["pitches"])
        step = max(10, (pitches[-1] - pitches[0]) // max(len(pitches) - 1, 1)) if len(pitches) > 1 else 20
        if s["direction"] == "up":
            target = min(99, round(pitches[-1] * factor))
            extra = list(range(pitches[-1] + step, target, step)) + ([target] if target > pitches[-1] else [])
        else:
            target = max(0, round(pitches[0] * factor))
            extra = list(range(pitches[0] - step, target, -step)) + ([target] if target < pitches[0] else [])
        if extra:
            overrides["pitches"] = sorted(set(pitches + extra))
            why.append(
                f"{'higher' if s['direction'] == 'up' else 'lower'} voices: eSpeak pitches {sorted(set(extra))} added"
            )
    if "rms_dbfs" in by and by["rms_dbfs"]["direction"] == "down" and synth:
        drop = by["rms_dbfs"]["reference"]["median"] - by["rms_dbfs"]["production"]["median"]
        lo, hi = synth["gain_db"]
        overrides["gain_db"] = [float(math.floor(lo - drop)), float(hi)]
        why.append(f"quieter speech: synth gain range lowered by {drop:.0f} dB")
    if synth:  # the synthesized data's own ranges live under data.source
        source = {k: overrides.pop(k) for k in ("noise_snr_db", "pitches", "gain_db") if k in overrides}
        if source:
            overrides["source"] = source
    if overrides:
        body["data"] = overrides
    return {"path": "next_experiment.yaml", "overrides": body, "why": why, "recipe": _recipe(data)}


def _recipe(data: dict) -> str:
    from scopeml.data.source import RECIPE_MIXTURE, snake_name

    target = (data.get("source") or {}).get("_target_") if isinstance(data.get("source"), dict) else None
    return snake_name(target) if target else RECIPE_MIXTURE if data.get("components") else str(data.get("recipe"))


def _synth_ranges(data: dict) -> dict | None:
    """The ranges of the model's synthesized training data (constructor defaults filled in), or None."""
    from scopeml.data.synth import from_source

    synth = from_source(data.get("source"))
    if synth is None:
        return None
    return {"noise_snr_db": synth.noise_snr_db, "pitches": synth.pitches, "gain_db": synth.gain_db}


def experiment_yaml(experiment: dict, summary: dict) -> str:
    import yaml

    lines = [
        "# @package _global_",
        f"# Suggested by scopeml-monitor for model {summary['model']['tag']} from {summary['log']['path']}:",
        *(f"#   - {w}" for w in experiment["why"]),
        "# Copy it into conf/experiment/ (e.g. conf/experiment/after_drift.yaml) and run:",
        "#   scopeml-train experiment=after_drift",
    ]
    body = dict(experiment["overrides"])
    lines += ["defaults:", *(f"  - {k}: {v}" for d in body.pop("defaults") for k, v in d.items())]
    return "\n".join(lines) + "\n" + (yaml.safe_dump(body, sort_keys=False, default_flow_style=None) if body else "")


# --------------------------------------------------------------------------- small helpers
def _notes(results, tables, drift: dict) -> list[str]:
    notes = []
    weak = [
        f"{c} ({d['alerting_chunks']} of {d['chunks']})"
        for c, d in drift["columns"].items()
        if d["drifted"] and d["alerting_fraction"] < 0.1
    ]
    if weak:
        notes.append(
            f"drifted in under 10% of chunks: {', '.join(weak)}; "
            "data like the reference still alerts in a few percent of chunks "
            "with NannyML's default thresholds, so on long logs raise monitor.min_drifted_chunks"
        )
    n_ref = len(tables["reference"])
    if n_ref < 6:
        notes.append(
            f"the reference splits into only {n_ref} chunk(s): NannyML's alert thresholds come from the spread across "
            "reference chunks and are unreliable with fewer than 6 (use a smaller chunk size)"
        )
    if "reference_rows_per_chunk" in results.chunking:
        notes.append(
            f"the reference has no real times: it is spread over {results.chunking['chunk_period']!r} periods of "
            f"{results.chunking['reference_rows_per_chunk']} rows each"
        )
    notes += [f"{n} {why}" for why, n in results.data.dropped.items()]
    if results.realized is None:
        notes.append(
            "no labels for this model's predictions yet: realized performance is null "
            "(deliver labels with scopeml-label)"
        )
    return notes


def _class_shift(results, keys: list[str], chunks: list[dict]) -> str:
    rows = np.concatenate([np.arange(c["start_index"], c["end_index"] + 1) for c in chunks if c["key"] in keys])
    prod = results.data.frame["pred"].iloc[rows].value_counts(normalize=True)
    ref = results.model.reference["pred"].value_counts(normalize=True)
    diff = prod.reindex(ref.index.union(prod.index), fill_value=0) - ref.reindex(
        ref.index.union(prod.index), fill_value=0
    )
    top = diff.abs().sort_values(ascending=False).index[:3]
    return ", ".join(f"{k} {ref.get(k, 0):.0%} -> {prod.get(k, 0):.0%}" for k in top)


def _weighted(chunks: list[dict], which: str) -> float | None:
    pairs = [
        (
            (c["estimated"]["accuracy"]["value"], c["rows"])
            if which == "estimated"
            else (c["realized"]["accuracy"], c["labeled"])
        )
        for c in chunks
    ]
    pairs = [(v, w) for v, w in pairs if v is not None and w]
    return sum(v * w for v, w in pairs) / sum(w for _, w in pairs) if pairs else None


def _num(x) -> float | None:
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) or math.isinf(x) else round(x, 6)


def _iso(t) -> str | None:
    import pandas as pd

    return None if t is None or pd.isna(t) else pd.Timestamp(t).isoformat()


def _fmt(x, feature: str) -> str:
    unit = UNITS.get(feature, "")
    x = float(x)
    text = f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}" if abs(x) < 10 else f"{x:.1f}"
    return f"{text} {unit}".strip()


def fmt3(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def band(e: dict) -> str:
    return f"{fmt3(e['lower'])}, {fmt3(e['upper'])}"


def _some(keys: list[str], n: int = 5) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")
