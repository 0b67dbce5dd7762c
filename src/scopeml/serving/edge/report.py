"""What an export leaves beside its files: edge.json for the device, edge_report.json/.md for people.

The report holds each format's status (ok, failed with the reason, skipped), and for each written
file its size, parity with the float bundle and CPU latency against the scoping targets.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from scopeml.serving.edge.artifacts import FORMATS, MANIFEST, REPORT_JSON, REPORT_MD
from scopeml.serving.edge.parity import LATENCY_RUNS, WARMUP_RUNS


def manifest(bundle, bundle_dir: Path, artifacts: dict, arch, vad: dict | None = None) -> dict:
    """edge.json: everything EdgeRunner (or a device's own code) needs besides the model file.

    `vad` is deploy.vad; the manifest holds every setting of it (the constructor's defaults too), so a
    device's own code can run the same detector.
    """
    from scopeml.serving.vad import from_settings

    built = from_settings(vad)
    vad = built.settings() if hasattr(built, "settings") else dict(vad)
    return {
        "format": 2,  # 2: vad names its _target_ (1 held the energy gate's arguments only)
        "classes": bundle.classes,
        "preprocess": asdict(bundle.preprocess),
        "temperature": bundle.temperature,
        "sample_rate": bundle.preprocess.sample_rate,
        "clip_samples": bundle.clip_samples,
        "input": {
            "name": "waveform",
            "shape": ["batch", bundle.clip_samples],
            "dtype": "float32",
            "note": "mono audio prepared by scopeml.data.preprocess.apply with 'preprocess'",
        },
        "output": {"name": "probabilities", "note": "calibrated: softmax(logits / temperature) is inside the model"},
        "features": bundle.info.get("model", {}).get("features"),
        "vad": vad,
        "artifacts": artifacts,
        "source": {
            "bundle": str(bundle_dir),
            "run_dir": bundle.info.get("run_dir"),
            "arch": arch,
            "scoping": (bundle.info.get("scoping") or {}).get("name"),
        },
    }


def write(out: Path, manifest_: dict, report: dict) -> None:
    (out / MANIFEST).write_text(json.dumps(manifest_, indent=2))
    (out / REPORT_JSON).write_text(json.dumps(report, indent=2))
    (out / REPORT_MD).write_text(markdown(report))


def markdown(report: dict) -> str:
    def yes(v):
        return "n/a" if v is None else ("pass" if v else "FAIL")

    lines = [
        f"# Edge export report ({report['arch']})",
        "",
        f"Source `{report['source']}`, network `{report['network']}`; parity on {report['clips']['n']} clips "
        f"({report['clips']['kind']}); latency: one clip, {report['threads']} CPU thread(s), p50/p95 of "
        f"{LATENCY_RUNS} runs after {WARMUP_RUNS} warm-up runs.",
        f"Size target: <= {report['targets']['model_size_mb_max']} MB (MB = 10^6 bytes).",
        "",
        "| artifact | size MB | max abs prob diff | tolerance | parity | top-1 agreement | p50 ms | p95 ms "
        "| size target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["artifacts"].values():
        lat = r.get("latency_ms") or {}
        diff = f"{r['max_abs_prob_diff']:.2e}" if "max_abs_prob_diff" in r else "not verified"
        lines.append(
            f"| {r['file']} | {r['size_mb']:.3f} | {diff} | {r.get('tolerance', '-')} | "
            f"{yes(r.get('within_tolerance'))} | "
            f"{r.get('top1_agreement', float('nan')):.3f} | {lat.get('p50', float('nan')):.2f} | "
            f"{lat.get('p95', float('nan')):.2f} | {yes(r['size_target_pass'])} |"
        )
    ref = report["reference_pytorch"]["latency_ms"]
    lines += [f"| (float PyTorch bundle) | - | - | - | - | - | {ref['p50']:.2f} | {ref['p95']:.2f} | - |", ""]
    lines.append("Formats:")
    lines += [format_line(key, f, report["artifacts"].get(key, {})) for key, f in report["formats"].items()]
    lines += ["", f"Float exports within tolerance: {'yes' if report['float_exports_within_tolerance'] else 'NO'}."]
    return "\n".join(lines) + "\n"


def format_line(key: str, status: dict, artifact: dict) -> str:
    """One format's outcome: how it was written (script, trace, int8 scheme, verification), or why it was not."""
    name, file = FORMATS[key]
    if status["status"] != "ok":
        return f"- {name} (`{file}`): {status['status'].upper()}: {status['reason']}"
    notes = []
    if artifact.get("method") == "trace":
        notes.append(f"traced (torch.jit.script failed: {artifact['script_failed']})")
    int8 = artifact.get("quantization")
    if int8:
        notes.append(
            f"{int8['scheme']} ({int8['engine']} engine): {int8['covers']}"
            + (f"; fallback: {int8['fallback_reason']}" if int8.get("fallback_reason") else "")
            + (f"; dynamic fallback {int8['dynamic_fallback']}" if int8.get("dynamic_fallback") else "")
        )
    checked = artifact.get("verified_with")
    if checked:
        notes.append(checked if checked.startswith("not verified") else f"verified with {checked}")
    return f"- {name} (`{file}`): ok" + "".join(f"; {n}" for n in notes)
