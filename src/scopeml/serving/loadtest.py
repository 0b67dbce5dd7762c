"""scopeml-loadtest: drive the running service with real test-split clips and score it against the scoping targets.

    scopeml-loadtest --url http://127.0.0.1:3000 --concurrency 1 8 32 --duration 10

Clips come from the served model's own test split (rebuilt from its run's config and data
cache), so latency is measured on the audio the model was evaluated on. For each concurrency
level it reports requests, errors by status, error rate, throughput, and client-side p50/p95/p99
latency (plus the server's own). Targets: latency_p95_ms is judged at concurrency 1 (one user's
wait), throughput_qps is the best error-free level. Writes scorecard.json and scorecard.md and
logs them to the model's W&B run (offline, resumed by id; `wandb sync` merges it).
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from pathlib import Path

import numpy as np

LOADTEST_PREFIX = "loadtest-"  # request ids of load-test traffic, which monitoring leaves out


class LoadtestError(ValueError):
    """No service to test at the URL given."""


def test_clips(run_dir: Path, limit: int = 64) -> list[bytes]:
    """WAV bytes of the run's test-split clips, as prepared for the model."""
    import soundfile as sf
    import yaml

    from scopeml.config import load
    from scopeml.data import build_dataset

    config = load(yaml.safe_load((run_dir / "config.yaml").read_text()))
    data = build_dataset(config.data, config.scoping.classes, progress=False)
    out = []
    for i in data.indices("test")[:limit]:
        buf = io.BytesIO()
        sf.write(buf, data.waves[i], data.sample_rate, format="WAV", subtype="PCM_16")
        out.append(buf.getvalue())
    return out


async def _level(url: str, clips: list[bytes], concurrency: int, duration: float) -> dict:
    import httpx

    latencies, server_ms, statuses = [], [], {}
    deadline = time.perf_counter() + duration

    async def worker(k: int, client):
        i = k
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                r = await client.post(
                    f"{url}/classify",
                    files={"audio": ("clip.wav", clips[i % len(clips)], "audio/wav")},
                    headers={"x-request-id": f"{LOADTEST_PREFIX}{k}-{i}-{time.monotonic_ns()}"},
                )
                status = r.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200:
                latencies.append(1000 * (time.perf_counter() - started))
                server_ms.append(r.json().get("latency_ms", float("nan")))
            i += concurrency

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(k, client) for k in range(concurrency)))
        elapsed = time.perf_counter() - started
    total = sum(statuses.values())
    ok = statuses.get(200, 0)
    pct = lambda xs, q: float(np.percentile(xs, q)) if xs else None
    return {
        "concurrency": concurrency,
        "seconds": elapsed,
        "requests": total,
        "ok": ok,
        "errors": {str(k): v for k, v in statuses.items() if k != 200},
        "error_rate": (total - ok) / total if total else 1.0,
        "qps": ok / elapsed,
        "p50_ms": pct(latencies, 50),
        "p95_ms": pct(latencies, 95),
        "p99_ms": pct(latencies, 99),
        "server_p50_ms": pct(server_ms, 50),
        "server_p95_ms": pct(server_ms, 95),
    }


def run(url: str, clips: list[bytes], levels: list[int], duration: float, warmup: float = 2.0) -> list[dict]:
    asyncio.run(_level(url, clips, max(levels), warmup))  # warm-up: lazy imports, allocators, connection pools
    return [asyncio.run(_level(url, clips, c, duration)) for c in levels]


def scorecard(results: list[dict], info: dict) -> dict:
    from scopeml.config.schema import Target
    from scopeml.metrics import evaluate_targets

    single = next((r for r in results if r["concurrency"] == 1), results[0])
    clean = [r for r in results if r["error_rate"] == 0]
    measured = {"latency_p95_ms": single["p95_ms"], "throughput_qps": max((r["qps"] for r in clean), default=0.0)}
    targets = {k: Target(**v) for k, v in info["scoping"]["targets"].items() if k in measured}
    checks = [t.as_dict() for t in evaluate_targets(targets, measured)]
    return {
        "model": info.get("tag"),
        "levels": results,
        "measured": measured,
        "targets": checks,
        "targets_met": all(t["passed"] for t in checks if t["passed"] is not None),
    }


def write(out: Path, card: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "scorecard.json").write_text(json.dumps(card, indent=2))
    f = lambda v: "-" if v is None else f"{v:.1f}"
    lines = [
        f"# Deployment scorecard: {card['model']}",
        "",
        "| concurrency | requests | errors | error rate | req/s | p50 ms | p95 ms | p99 ms | server p95 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in card["levels"]:
        lines.append(
            f"| {r['concurrency']} | {r['requests']} | {sum(r['errors'].values())} {r['errors'] or ''} | "
            f"{r['error_rate']:.1%} | {r['qps']:.1f} | "
            f"{f(r['p50_ms'])} | {f(r['p95_ms'])} | {f(r['p99_ms'])} | {f(r['server_p95_ms'])} |"
        )
    lines += ["", "| target | bound | measured | result |", "|---|---|---|---|"]
    for t in card["targets"]:
        lines.append(
            f"| {t['metric']} | {t['op']} {t['target']:g} | {f(t['value'])} | {'PASS' if t['passed'] else 'FAIL'} |"
        )
    (out / "scorecard.md").write_text("\n".join(lines) + "\n")


def log_to_wandb(run_dir: Path, card: dict, project: str = "scopeml") -> str | None:
    """Append the scorecard to the training run's W&B run (offline, same id: `wandb sync` merges them)."""
    runs = sorted((run_dir / "wandb").glob("offline-run-*"))
    if not runs:
        return None
    import wandb

    run_id = runs[-1].name.rsplit("-", 1)[-1]
    from scopeml.training.tracking import settings

    run = wandb.init(
        project=project,
        id=run_id,
        resume="allow",
        mode="offline",
        dir=str(run_dir),
        job_type="loadtest",
        settings=settings(),
    )
    table = wandb.Table(
        columns=["concurrency", "requests", "error_rate", "qps", "p50_ms", "p95_ms", "p99_ms"],
        data=[
            [r["concurrency"], r["requests"], r["error_rate"], r["qps"], r["p50_ms"], r["p95_ms"], r["p99_ms"]]
            for r in card["levels"]
        ],
    )
    run.log({"deployment/loadtest": table})
    run.summary.update({f"deployment/{k}": v for k, v in card["measured"].items()})
    run.summary["deployment/targets_met"] = card["targets_met"]
    run.finish()
    return run_id


def loadtest(
    url: str,
    concurrency: list[int],
    duration: float,
    clips_dir: Path | None = None,
    out: Path | None = None,
    use_wandb: bool = True,
) -> bool:
    """scopeml-loadtest's work: drive the service at `url`, write and print the scorecard. Returns whether
    every target was met; raises LoadtestError when no service answers."""
    import httpx

    try:
        info = httpx.post(f"{url}/info", json={}, timeout=10).json()
    except httpx.HTTPError as exc:
        raise LoadtestError(f"no service at {url} ({exc}); start it with `bentoml serve`") from None
    info["tag"] = info["model"]
    run_dir = Path(info.get("run_dir") or _run_dir_of(info))
    clips = [p.read_bytes() for p in sorted(clips_dir.glob("*.wav"))] if clips_dir else test_clips(run_dir)
    results = run(url, clips, concurrency, duration)
    card = scorecard(results, info)
    out = out or run_dir / "deployment"
    if use_wandb:
        card["wandb_run"] = log_to_wandb(run_dir, card)
    write(out, card)
    print((out / "scorecard.md").read_text())
    return card["targets_met"]


def _run_dir_of(info: dict) -> str:
    import bentoml

    return bentoml.models.get(info["model"]).info.metadata["run_dir"]
