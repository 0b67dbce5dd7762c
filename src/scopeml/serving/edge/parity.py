"""How an exported file is held against the bundle: the clips it is scored on, parity, batch shapes and latency."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

N_CLIPS, LATENCY_RUNS, WARMUP_RUNS = 32, 100, 10
# Parity clips and int8 calibration clips come from different eSpeak voices, so the int8 check
# is not scored on the audio its activation ranges were fitted to.
EVAL_VOICES, CALIBRATION_VOICES = ("en+m2", "en+f1", "en+m4", "en+m6"), ("en+m1", "en+f4", "en+m3", "en+m8")


def make_clips(bundle, voices: tuple[str, ...], n: int = N_CLIPS, seed: int = 0) -> tuple[np.ndarray, str]:
    """n prepared clips of the bundle's own words in eSpeak voices; prepared noise if eSpeak is unavailable."""
    try:
        from scopeml.data import espeak

        sr = espeak.sample_rate()
        clips = []
        for i in range(n):
            # "_unknown_" -> "unknown"
            word = bundle.classes[i % len(bundle.classes)].replace("_", " ").strip() or "hello"
            voice = voices[(i // len(bundle.classes)) % len(voices)]
            clips.append(bundle.prepare(espeak.synthesize(word, voice=voice, pitch=30 + (7 * i) % 41), sr))
        return np.stack(clips), f"espeak words ({', '.join(voices)})"
    except Exception as exc:  # noqa: BLE001 - any eSpeak failure: parity on noise beats no parity check
        rng = np.random.default_rng(seed)
        sr = bundle.preprocess.sample_rate
        noise = rng.standard_normal((n, bundle.clip_samples)).astype(np.float32) * rng.uniform(
            0.01, 0.3, (n, 1)
        ).astype(np.float32)
        return np.stack([bundle.prepare(x, sr) for x in noise]), f"random noise (eSpeak failed: {exc})"


def onnx_runner(path: Path, threads: int):
    """An ONNX file as prepared clips -> probabilities, in onnxruntime on CPU with `threads` threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"waveform": np.ascontiguousarray(x, dtype=np.float32)})[0]


def verify_onnx(path: Path, threads: int):
    """onnx's checker, then an onnxruntime session: (run, "onnxruntime X"), or (None, why) where either is missing."""
    try:
        import onnx

        onnx.checker.check_model(str(path))
        import onnxruntime

        return onnx_runner(path, threads), f"onnxruntime {onnxruntime.__version__}"
    except ImportError as exc:
        return None, f"not verified ({exc.name} is not installed)"


def check(run, clips: np.ndarray, reference: np.ndarray, tolerance: float, latency_max) -> dict:
    """Parity with the float bundle on all clips, batch-1/batch-8 shapes, then single-clip latency."""
    probs = run(clips)
    try:  # a traced graph that baked in its example batch size fails here rather than on the device
        shapes_ok = all(run(clips[:b]).shape == (b, reference.shape[1]) for b in (1, 8))
    except Exception:  # noqa: BLE001
        shapes_ok = False
    diff = float(np.abs(probs - reference).max())
    latency = measure_latency(run, clips)
    return {
        "max_abs_prob_diff": diff,
        "tolerance": tolerance,
        "within_tolerance": bool(diff <= tolerance and shapes_ok),
        "batch_1_and_8_ok": shapes_ok,
        "top1_agreement": float(np.mean(probs.argmax(1) == reference.argmax(1))),
        "latency_ms": latency,
        "latency_target_pass": None if latency_max is None else latency["p95"] <= latency_max,
    }


def measure_latency(run, clips: np.ndarray) -> dict:
    """p50/p95 of single-clip calls after warm-up (the first calls pay for graph optimization and allocation)."""
    for i in range(WARMUP_RUNS):
        run(clips[i % len(clips)][None])
    times = []
    for i in range(LATENCY_RUNS):
        clip = clips[i % len(clips)][None]
        start = time.perf_counter()
        run(clip)
        times.append(1000 * (time.perf_counter() - start))
    p50, p95 = (float(v) for v in np.percentile(times, [50, 95]))
    return {"p50": p50, "p95": p95, "runs": LATENCY_RUNS}
