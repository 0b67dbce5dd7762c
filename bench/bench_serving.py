"""Serving speed: the BentoML service against the bare model call and a hand-written FastAPI peer.

    python bench/bench_serving.py [--run-dir RUN] [--json out.json] [--duration 10] [--warmup 3]

Same model and the same real clips (eSpeak keywords at 16 kHz, 16-bit WAV) everywhere:

1. In process: bundle.predict at batch 1 (clips/s, p50/p95/p99 over a few hundred calls) and
   at batch 32 and 64 (clips/s: the limit), plus the full per-request path at batch 1 (decode,
   checks, prepare, predict, describe, monitoring features, prediction-log append), stage by stage.
2. bench/fastapi_peer.py under uvicorn (1 worker), with and without its prediction log.
3. The BentoML service (`bentoml serve`): the default deploy (2 API workers, no adaptive batching)
   and the same with 1 worker (one process, like the FastAPI peer).
4. The BentoML service with adaptive batching (deploy=realtime_batching), and with
   max_latency_ms=50 to show load shedding.
5. bench/bentoml_echo.py: a BentoML endpoint that takes the same upload and does no work (1 and 2
   workers), the ceiling any BentoML handler can reach on the machine.

BentoML's API workers each listen on a socket of their own (scopeml.serving.sockets; --shared-socket measures
BentoML's one shared socket instead); each run records the share of requests each worker answered (the
x-scopeml-worker response header; the echo server has none: the CPU each worker used), the CPU of every server
process and the load averages.

Each server is driven by wrk (bench/wrk_post.lua, round robin over the clips as multipart
POSTs to /classify) at concurrency 1 (-t1 -c1) and 32 (-t2 -c32): a warm-up run, then a
measured run. Servers, the model store (BENTOML_HOME) and the prediction logs live in a
temp folder; every server is started in its own process group and killed at the end (with
every process of its tree: BentoML puts its workers in sessions of their own).

The machine may be shared: before each measurement the script waits (--quiet-budget seconds in
all) for other processes to go idle, records the CPU that the server, wrk and everything else
used during each run (the 'other cores' column; ~0 on a quiet machine), repeats a server run
that other processes disturbed (--retries, the cleaner run is kept), and keeps the best of
--rounds in-process rounds. For BentoML with batching it reads the mean adaptive batch size
from /metrics.

Targets (printed PASS/FAIL):
  c1:  BentoML p95 - in-process model call (batch 1) p95 <= 10 ms
  c32: BentoML req/s / in-process batched (batch 32) clips/s >= 0.5, with no errors
  c32: BentoML req/s / FastAPI req/s >= 1.0 at equal or lower p95
Without --run-dir a small model is trained first (3 epochs on 7 voices; ~10 s with a warm cache).
Needs wrk on PATH and fastapi in the environment (uvicorn comes with bentoml).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from scopeml.lifecycle.server import LocalServer
from scopeml.provenance import host_speed

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
LUA = ROOT / "bench" / "wrk_post.lua"
BOUNDARY = "scopemlBenchBoundary7MA4YWxkTrZu0gW"
WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
VOICES = ["en+m1", "en+f2", "en+m3", "en+f4", "en+m7"]
TRAIN_ARGS = [
    "hparams.max_epochs=3",
    "trainer.progress_bar=none",
    "tracker=none",
    "++data.source.voices=[en+m1,en+f2,en+m3,en+f4,en+m7,en+f1,en+m2]",
    "data.source.pitches=[50]",
    "data.source.rates=[175]",
]


# ---------------------------------------------------------------------------- setup
def train_run(tmp: Path) -> Path:
    run_dir = tmp / "run"
    env = {**os.environ, "SCOPEML_CACHE_DIR": os.environ.get("SCOPEML_CACHE_DIR", "/tmp/benchcache")}
    print(f"training a small model into {run_dir} ...", flush=True)
    out = subprocess.run(
        [str(BIN / "scopeml-train"), f"hydra.run.dir={run_dir}", *TRAIN_ARGS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if out.returncode != 0 or not (run_dir / "checkpoints" / "best.ckpt").exists():
        raise SystemExit(f"scopeml-train failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return run_dir


def package(run_dir: Path, overrides: list[str]) -> str:
    """scopeml-package run_dir [overrides]; prints the tag as its last line."""
    out = subprocess.run(
        [str(BIN / "scopeml-package"), str(run_dir), *overrides],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if out.returncode != 0:
        raise SystemExit(f"scopeml-package {' '.join(overrides)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return out.stdout.strip().splitlines()[-1].strip()


def make_clips(n: int) -> list[tuple[str, bytes]]:
    """n eSpeak keywords (10 words x 5 voices at a pitch and rate the model was not trained on), 16 kHz 16-bit WAV."""
    import soundfile as sf

    from scopeml.data import espeak
    from scopeml.data.audio import resample

    clips = []
    for k in range(n):
        word, voice = WORDS[k % len(WORDS)], VOICES[(k // len(WORDS)) % len(VOICES)]
        pitch = 60 if k < 50 else 40
        samples = resample(espeak.synthesize(word, voice, pitch=pitch, rate=160), espeak.sample_rate(), 16000)
        buf = io.BytesIO()
        sf.write(buf, samples, 16000, format="WAV", subtype="PCM_16")
        clips.append((word, buf.getvalue()))
    return clips


def multipart(wav: bytes, name: str) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="audio"; filename="{name}.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode()
    return head + wav + f"\r\n--{BOUNDARY}--\r\n".encode()


# ---------------------------------------------------------------------------- in process
def pct(times_s: list[float]) -> dict:
    ms = np.asarray(times_s) * 1000
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


def in_process(tag: str, clips: list[tuple[str, bytes]], tmp: Path, calls: int, rounds: int) -> dict:
    """Each measurement runs `rounds` times and the round with the lowest p95 is kept (the rest are in
    the JSON): on a shared machine a round that another process disturbed says little about the code."""
    import bentoml
    import torch

    from scopeml.data.audio import to_mono
    from scopeml.features import monitoring_features
    from scopeml.serving.bundle import ServingBundle
    from scopeml.serving.decode import check_length, check_not_silent, decode_audio
    from scopeml.serving.log import PredictionLog

    tick, busy_0, self_0, t_0 = os.sysconf("SC_CLK_TCK"), busy_ticks(), time.process_time(), time.monotonic()
    stored = bentoml.models.get(tag)
    bundle = ServingBundle.load(stored.path, str(stored.tag))
    max_clip_s = json.loads((Path(stored.path) / "serving.json").read_text())["deploy"]["max_clip_seconds"]
    waves = np.stack([bundle.prepare(*decode_audio(wav)) for _, wav in clips]).astype(np.float32)
    out: dict = {"torch_threads": torch.get_num_threads(), "rounds": rounds}

    def best(measure) -> dict:
        results = [measure() for _ in range(rounds)]
        kept = min(results, key=lambda r: r["p95_ms"])
        return {
            **kept,
            "p95_ms_by_round": [r["p95_ms"] for r in results],
            "clips_per_s_by_round": [r["clips_per_s"] for r in results],
        }

    # model call, batch 1
    for i in range(20):
        bundle.predict(waves[i % len(waves)][None])

    def b1() -> dict:
        times = []
        for i in range(calls):
            x = waves[i % len(waves)][None]
            t0 = time.perf_counter()
            bundle.predict(x)
            times.append(time.perf_counter() - t0)
        return {"calls": calls, "clips_per_s": calls / sum(times), **pct(times)}

    out["b1"] = best(b1)

    # model call, batched: the limit
    for b in (32, 64):
        batch = np.stack([waves[i % len(waves)] for i in range(b)])
        for _ in range(3):
            bundle.predict(batch)

        def batched(batch=batch, b=b) -> dict:
            n = max(10, 640 // b)
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                bundle.predict(batch)
                times.append(time.perf_counter() - t0)
            return {"calls": n, "clips_per_s": b * n / sum(times), **pct(times)}

        out[f"b{b}"] = best(batched)

    # the full per-request path at batch 1, stage by stage (what each server does per request)
    log = PredictionLog(tmp / "inprocess_log.sqlite")
    n_full = max(calls // 2, 100)

    def full() -> dict:
        stages = {k: [] for k in ("decode", "checks", "prepare", "predict", "describe", "features", "log_append")}
        totals, correct = [], 0
        for i in range(n_full + 10):
            word, wav = clips[i % len(clips)]
            t = [time.perf_counter()]
            samples, sr = decode_audio(wav, "audio")
            t.append(time.perf_counter())
            check_length(samples, sr, max_clip_s, "audio")
            mono = to_mono(samples)
            check_not_silent(mono, "audio")
            t.append(time.perf_counter())
            w = np.stack([bundle.prepare(samples, sr)])
            t.append(time.perf_counter())
            (p,) = bundle.predict(w)
            t.append(time.perf_counter())
            result = bundle.describe(p)
            t.append(time.perf_counter())
            feats = monitoring_features(mono, sr)
            t.append(time.perf_counter())
            log.append(
                [
                    {
                        "time_utc": "2024-01-01T00:00:00.000+00:00",
                        "request_id": f"r{i}",
                        "model_tag": bundle.tag,
                        "endpoint": "classify",
                        "source": "audio",
                        "label": result["label"],
                        "confidence": result["confidence"],
                        "probabilities": result["probabilities"],
                        **feats,
                    }
                ]
            )
            t.append(time.perf_counter())
            if i < 10:
                continue  # warm-up
            for k, name in enumerate(stages):
                stages[name].append(t[k + 1] - t[k])
            totals.append(t[-1] - t[0])
            correct += result["label"] == word
        return {
            "calls": n_full,
            "clips_per_s": n_full / sum(totals),
            **pct(totals),
            "stage_mean_ms": {k: 1000 * float(np.mean(v)) for k, v in stages.items()},
            "stage_p50_ms": {k: 1000 * float(np.median(v)) for k, v in stages.items()},
            "accuracy_on_clips": correct / n_full,
        }

    out["full_b1"] = best(full)
    log.close()
    elapsed = time.monotonic() - t_0
    out["other_cpu_cores"] = max((busy_ticks() - busy_0) / tick - (time.process_time() - self_0), 0.0) / elapsed
    return out


class QuietGate:
    """Before a measurement, wait until other processes on the machine are (nearly) idle: at most
    `budget` seconds over the whole run. Returns the foreign load it last saw, for the record."""

    def __init__(self, budget: float, retries: int, threshold: float = 0.25):
        self.budget, self.retries_left, self.threshold, self.waited = budget, retries, threshold, 0.0

    def foreign_load(self, window: float = 1.0) -> float:
        tick = os.sysconf("SC_CLK_TCK")
        mine_0, busy_0, t0 = cpu_ticks_of_tree(os.getpid()), busy_ticks(), time.monotonic()
        time.sleep(window)
        mine, busy = cpu_ticks_of_tree(os.getpid()) - mine_0, busy_ticks() - busy_0
        return max(busy - mine, 0) / tick / (time.monotonic() - t0)

    def wait(self) -> float:
        load = self.foreign_load()
        while load > self.threshold and self.waited < self.budget:
            started = time.monotonic()
            load = self.foreign_load()
            self.waited += time.monotonic() - started
        return load


# ---------------------------------------------------------------------------- servers
def smoke(server: LocalServer, body: bytes) -> dict:
    req = urllib.request.Request(
        f"{server.url}/classify",
        data=body,
        method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        result = json.loads(r.read())
    expected = (
        {"bytes"}
        if server.name.startswith("bentoml_echo")
        else {"label", "confidence", "probabilities", "model", "latency_ms", "request_id"}
    )
    missing = expected - set(result)
    if missing:
        raise RuntimeError(f"{server.name}: /classify answered without {sorted(missing)}: {result}")
    return result


def _proc_table() -> dict[int, tuple[int, int, int]]:
    """pid -> (ppid, start time, utime + stime in clock ticks) for every live process."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            f = (
                stat.read_text().rsplit(")", 1)[1].split()
            )  # after "comm)": state ppid pgrp ... utime(11) stime(12) ... starttime(19)
            table[int(stat.parent.name)] = (int(f[1]), int(f[19]), int(f[11]) + int(f[12]))
        except (OSError, IndexError, ValueError):
            continue
    return table


def process_tree(root: int) -> dict[int, int]:
    """root and all its descendants: pid -> start time. BentoML starts its workers in sessions of their
    own, so the server's process group alone would miss them."""
    table = _proc_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    tree, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in table and pid not in tree:
            tree[pid] = table[pid][1]
            todo.extend(children.get(pid, []))
    return tree


def cpu_ticks_of_tree(root: int) -> int:
    table = _proc_table()
    return sum(table[pid][2] for pid in process_tree(root) if pid in table)


def busy_ticks() -> int:
    """Clock ticks every CPU spent busy since boot (not idle, not waiting on I/O)."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(v) - v[3] - v[4]


def batch_metric(server: LocalServer) -> tuple[float, float]:
    """BentoML's adaptive-batching histogram (sum, count) across its services; (0, 0) where there is none."""
    try:
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=5) as r:
            text = r.read().decode()
    except (urllib.error.URLError, OSError):
        return 0.0, 0.0
    total = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        m = re.match(r"\w*adaptive_batch_size_(sum|count)\{.*\} (\S+)$", line)
        if m:
            total[m[1]] += float(m[2])
    return total["sum"], total["count"]


def wrk(server: LocalServer, body_dir: Path, n_bodies: int, threads: int, conns: int, seconds: float) -> dict:
    """One wrk run; also the CPU the server, wrk and everything else on the machine used meanwhile, and
    the mean adaptive batch size (BentoML with batching)."""
    tick = os.sysconf("SC_CLK_TCK")
    load_0 = os.getloadavg()
    procs_0 = cpu_ticks_by_process(server.proc.pid)
    server_0, busy_0, wrk_0, batch_0, t0 = (
        cpu_ticks_of_tree(server.proc.pid),
        busy_ticks(),
        _children_cpu(),
        batch_metric(server),
        time.monotonic(),
    )
    r = _wrk(server, body_dir, n_bodies, threads, conns, seconds)
    elapsed = time.monotonic() - t0
    procs_1 = cpu_ticks_by_process(server.proc.pid)
    server_s = (cpu_ticks_of_tree(server.proc.pid) - server_0) / tick
    busy_s = (busy_ticks() - busy_0) / tick
    wrk_s = _children_cpu() - wrk_0
    batch_1 = batch_metric(server)
    r.update(
        server_cpu_cores=server_s / elapsed,
        wrk_cpu_cores=wrk_s / elapsed,
        other_cpu_cores=max(busy_s - server_s - wrk_s, 0.0) / elapsed,
        server_cpu_ms_per_req=1000 * server_s / max(r["requests"], 1),
        mean_batch_size=(batch_1[0] - batch_0[0]) / (batch_1[1] - batch_0[1]) if batch_1[1] > batch_0[1] else None,
        # CPU cores each process of the server used (API workers: BentoML's --worker-id; the arbiter: "arbiter")
        cpu_cores_by_process={
            name: round((ticks - procs_0.get(name, 0)) / tick / elapsed, 3) for name, ticks in procs_1.items()
        },
        load_average_before=load_0,
        load_average_after=os.getloadavg(),
    )
    return r


def cpu_ticks_by_process(root: int) -> dict[str, int]:
    """CPU ticks of each process of a server tree, named by role: "worker N" for BentoML's API worker N,
    "<service> worker N" for a dependency's, "arbiter" for the root, else the pid."""
    table = _proc_table()
    out = {}
    for pid in process_tree(root):
        if pid not in table:
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if pid == root:
            name = "arbiter"
        elif "--worker-id" in argv and argv.index("--worker-id") + 1 < len(argv):
            service = argv[argv.index("--service-name") + 1] if "--service-name" in argv else ""
            name = ("" if service in ("scopeml-kws", "scopeml-echo") else f"{service} ") + (
                f"worker {argv[argv.index('--worker-id') + 1]}"
            )
        else:
            name = str(pid)
        out[name] = out.get(name, 0) + table[pid][2]
    return out


def spread(r: dict) -> str:
    """How the requests (x-scopeml-worker) or, without that header, the CPU spread over the API workers."""
    per = r.get("per_worker") or {}
    if per:
        total = sum(per.values())
        return "/".join(f"{100 * per[w] / total:.0f}" for w in sorted(per, key=int)) + " req"
    cpu = {k: v for k, v in (r.get("cpu_cores_by_process") or {}).items() if k.startswith("worker ")}
    if cpu:
        return "/".join(f"{cpu[k]:.2f}" for k in sorted(cpu)) + " cores"
    return "-"


def _children_cpu() -> float:
    import resource

    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def _wrk(server: LocalServer, body_dir: Path, n_bodies: int, threads: int, conns: int, seconds: float) -> dict:
    env = {**os.environ, "BENCH_BODY_DIR": str(body_dir), "BENCH_BODY_COUNT": str(n_bodies), "BENCH_BOUNDARY": BOUNDARY}
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{conns}",
        f"-d{seconds:g}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        f"{server.url}/classify",
    ]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}):\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    r = json.loads(line[len("BENCH_RESULT ") :])
    duration = r["duration_us"] / 1e6
    socket_errors = r["err_connect"] + r["err_read"] + r["err_write"] + r["err_timeout"]
    r.update(
        duration_s=duration,
        req_per_s=r["requests"] / duration,
        ok_per_s=r["status_2xx"] / duration,
        socket_errors=socket_errors,
        errors=socket_errors + r["err_status"],
        threads=threads,
        connections=conns,
    )
    # wrk's own p50/p90/p99 text, as a cross-check of the Lua numbers
    r["wrk_text_percentiles"] = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", out.stdout, flags=re.M))
    return r


def count_rows(path: Path) -> int | None:
    if not path.exists():
        return None
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]


def bench_server(
    name: str,
    cmd: list[str],
    env: dict,
    tmp: Path,
    bodies: tuple[Path, int, bytes],
    levels: list[int],
    args,
    live: list[LocalServer],
    gate: QuietGate,
) -> dict:
    log_db = tmp / f"{name}.sqlite"
    # run from the repo root so bench.* imports; not waited for yet, so it is in `live` (stopped at exit) first
    server = LocalServer(
        {**env, "SCOPEML_PREDICTION_LOG": str(log_db)},
        tmp / f"{name}.log",
        command=cmd,
        cwd=ROOT,
        name=name,
        wait=False,
    )
    live.append(server)
    body_dir, n_bodies, first_body = bodies
    result: dict = {"name": name}
    try:
        result["startup_s"] = server.wait_ready()
        result["smoke"] = smoke(server, first_body)
        for conns in levels:
            threads = 1 if conns == 1 else 2
            r, attempt = None, 0
            while True:  # a run that other processes disturbed is repeated, within the run's retry budget
                foreign = gate.wait()
                wrk(server, body_dir, n_bodies, threads, conns, args.warmup)  # warm-up, discarded
                attempt_r = wrk(server, body_dir, n_bodies, threads, conns, args.duration)
                attempt_r.update(foreign_load_before=foreign, attempt=attempt)
                if r is None or attempt_r["other_cpu_cores"] < r["other_cpu_cores"]:
                    r = attempt_r
                if attempt_r["other_cpu_cores"] <= gate.threshold or gate.retries_left <= 0 or attempt >= 2:
                    break
                print(
                    f"  {name} c{conns}: other processes used {attempt_r['other_cpu_cores']:.2f} cores meanwhile; "
                    "again",
                    flush=True,
                )
                gate.retries_left -= 1
                attempt += 1
            result[f"c{conns}"] = r
            batch = "" if r["mean_batch_size"] is None else f", mean batch {r['mean_batch_size']:.2f}"
            print(
                f"  {name} c{conns}: {r['req_per_s']:.1f} req/s, p50 {r['p50_ms']:.1f} ms, p95 {r['p95_ms']:.1f} ms, "
                f"p99 {r['p99_ms']:.1f} ms, errors {r['errors']} (429: {r['status_429']}, 503: {r['status_503']}), "
                f"handler {r['handler_ms_mean']:.1f} ms; "
                f"CPU cores: server {r['server_cpu_cores']:.2f}, wrk {r['wrk_cpu_cores']:.2f}, "
                f"other processes {r['other_cpu_cores']:.2f}{batch}; per worker {r.get('per_worker') or '-'}, "
                f"CPU by process {r['cpu_cores_by_process']}; "
                f"load average {' '.join(f'{x:.2f}' for x in r['load_average_before'])} before",
                flush=True,
            )
    finally:
        server.stop()
        live.remove(server)
    result["logged_rows"] = count_rows(log_db)
    return result


# ---------------------------------------------------------------------------- report
def table(rows: list[tuple]) -> str:
    head = (
        "",
        "req/s",
        "ok/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "handler ms",
        "srv CPU ms/req",
        "other cores",
        "per worker %",
        "load 1m",
    )
    cells = [head] + [tuple(r) for r in rows]
    widths = [max(len(str(c[i])) for c in cells) for i in range(len(head))]
    lines = []
    for k, c in enumerate(cells):
        lines.append("  ".join(str(v).ljust(widths[0]) if i == 0 else str(v).rjust(widths[i]) for i, v in enumerate(c)))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def f1(x) -> str:
    return "-" if x is None else f"{x:.1f}"


TARGET_ROWS = (("bentoml", "BentoML"), ("bentoml_w1", "BentoML 1 worker"), ("bentoml_batching", "BentoML+batching"))


def report(res: dict) -> tuple[str, dict]:
    ip = res["in_process"]
    in_process = (
        ("b1", "model call b1"),
        ("b32", "model call b32"),
        ("b64", "model call b64"),
        ("full_b1", "full path b1"),
    )
    rows = [
        (
            f"in-process {label} (clips/s)",
            f1(ip[key]["clips_per_s"]),
            "",
            f1(ip[key]["p50_ms"]),
            f1(ip[key]["p95_ms"]),
            f1(ip[key]["p99_ms"]),
            0,
            "",
            "",
            f"{ip['other_cpu_cores']:.2f}",
            "",
            "",
        )
        for key, label in in_process
    ]
    for key, label in (
        ("fastapi", "FastAPI/uvicorn"),
        ("fastapi_nolog", "FastAPI/uvicorn --no-log"),
        ("bentoml", "BentoML"),
        ("bentoml_w1", "BentoML 1 worker"),
        ("bentoml_batching", "BentoML+batching (32, 1000 ms)"),
        ("bentoml_shedding", "BentoML+batching (32, 50 ms)"),
        ("bentoml_echo", "BentoML echo, no model"),
        ("bentoml_echo_w2", "BentoML echo, no model, 2 workers"),
    ):
        s = res["servers"].get(key)
        if not s:
            continue
        for c in (1, 32):
            r = s.get(f"c{c}")
            if r:
                rows.append(
                    (
                        f"{label} c{c}",
                        f1(r["req_per_s"]),
                        f1(r["ok_per_s"]),
                        f1(r["p50_ms"]),
                        f1(r["p95_ms"]),
                        f1(r["p99_ms"]),
                        r["errors"],
                        f1(r["handler_ms_mean"]) if r["handler_n"] else "-",
                        f1(r["server_cpu_ms_per_req"]),
                        f"{r['other_cpu_cores']:.2f}",
                        spread(r),
                        f"{r['load_average_before'][0]:.2f}",
                    )
                )
    text = [table(rows), ""]
    text.append(
        "req/s = all answered requests / duration; ok/s = 2xx only; errors = non-2xx + socket errors; "
        "handler ms = mean latency_ms the server reports (time inside its /classify handler);\n"
        "srv CPU ms/req = CPU time of the server's process group per request; other cores = CPU used meanwhile by "
        "processes that are neither the server, wrk nor this script (should be ~0);\n"
        "per worker % = share of the requests each API worker answered (x-scopeml-worker), or without that header "
        "the CPU cores each used; load 1m = the 1-minute load average before the run."
    )
    noisy = [
        k for k, v in res["servers"].items() for c in (1, 32) if v.get(f"c{c}", {}).get("other_cpu_cores", 0) > 0.15
    ]
    if ip["other_cpu_cores"] > 0.15 or noisy:
        text.append(
            "WARNING: other processes used CPU during the measurements "
            f"({', '.join(sorted(set(noisy))) or 'in-process'}; "
            "see 'other cores'): those numbers are pessimistic; rerun on a quiet machine."
        )
    for key, srv in res["servers"].items():
        for c in (1, 32):
            r = srv.get(f"c{c}")
            if r and r.get("mean_batch_size") is not None:
                text.append(f"{key} c{c}: mean adaptive batch size {r['mean_batch_size']:.2f} (BentoML /metrics)")
    s = res["servers"]
    ratios: dict = {}

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "FAIL"

    text.append("")
    text.append("targets:")
    for key, label in TARGET_ROWS:
        if key not in s or "c1" not in s[key]:
            continue
        c1 = s[key]["c1"]
        gap = c1["p95_ms"] - ip["b1"]["p95_ms"]
        gap_full = c1["p95_ms"] - ip["full_b1"]["p95_ms"]
        ratios[f"{key}_c1_p95_minus_inprocess_b1_ms"] = gap
        ratios[f"{key}_c1_p95_minus_inprocess_full_ms"] = gap_full
        text.append(
            f"  c1  {label}: p95 {c1['p95_ms']:.1f} ms - "
            f"in-process model call p95 {ip['b1']['p95_ms']:.1f} ms = {gap:+.1f} ms "
            f"(target <= 10 ms): {verdict(gap <= 10)}{'' if gap <= 10 else f', over by {gap - 10:.1f} ms'}"
        )
        text.append(
            f"        vs in-process full path p95 {ip['full_b1']['p95_ms']:.1f} ms: {gap_full:+.1f} ms "
            "(framework overhead alone)"
        )
    b32 = ip["b32"]["clips_per_s"]
    for key, label in TARGET_ROWS:
        if key not in s or "c32" not in s[key]:
            continue
        c32 = s[key]["c32"]
        ratio = c32["req_per_s"] / b32
        ratios[f"{key}_c32_over_inprocess_b32"] = ratio
        ok = ratio >= 0.5 and c32["errors"] == 0
        text.append(
            f"  c32 {label}: {c32['req_per_s']:.1f} req/s / in-process b32 {b32:.1f} clips/s = {ratio:.3f} "
            f"(target >= 0.5, no errors; errors {c32['errors']}): {verdict(ok)}"
            + ("" if ok else f" (needs {0.5 * b32:.1f} req/s, {0.5 * b32 / max(c32['req_per_s'], 1e-9):.1f}x more)")
        )
    fa = s.get("fastapi", {}).get("c32")
    for key, label in TARGET_ROWS:
        if not fa or key not in s or "c32" not in s[key]:
            continue
        c32 = s[key]["c32"]
        ratio = c32["req_per_s"] / fa["req_per_s"]
        ratios[f"{key}_c32_over_fastapi"] = ratio
        ok = ratio >= 1.0 and c32["p95_ms"] <= fa["p95_ms"] and c32["errors"] == 0
        text.append(
            f"  c32 {label} vs FastAPI: {c32['req_per_s']:.1f} / {fa['req_per_s']:.1f} req/s = {ratio:.3f} "
            "(target >= 1.0), "
            f"p95 {c32['p95_ms']:.1f} vs {fa['p95_ms']:.1f} ms (target <=): {verdict(ok)}"
        )
    st = ip["full_b1"]["stage_mean_ms"]
    text.append("")
    text.append(
        "in-process full path b1, mean ms per stage: "
        + ", ".join(f"{k} {v:.2f}" for k, v in st.items())
        + f" (total {sum(st.values()):.2f}); "
        f"accuracy of the model on the clips {ip['full_b1']['accuracy_on_clips']:.2f}"
    )
    for key, srv in s.items():
        if srv.get("c1") and srv["c1"]["handler_n"]:
            c1 = srv["c1"]
            text.append(
                f"{key} c1: client mean {c1['mean_ms']:.1f} ms, of which in handler {c1['handler_ms_mean']:.1f} ms, "
                "outside it (HTTP, multipart parsing, framework, dispatch) "
                f"{c1['mean_ms'] - c1['handler_ms_mean']:.1f} ms; "
                f"startup {srv['startup_s']:.1f} s; prediction-log rows {srv['logged_rows']}"
            )
    return "\n".join(text), ratios


# ---------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--run-dir", type=Path, help="a finished training run (default: train a small one into a temp folder)"
    )
    parser.add_argument("--json", type=Path, help="write every number here")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measured wrk run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of wrk warm-up before each measured run")
    parser.add_argument("--clips", type=int, default=50)
    parser.add_argument("--calls", type=int, default=300, help="in-process batch-1 model calls per round")
    parser.add_argument("--rounds", type=int, default=5, help="in-process rounds; the one with the lowest p95 is kept")
    parser.add_argument(
        "--quiet-budget",
        type=float,
        default=60.0,
        help="seconds in all to wait, before measurements, for other processes to go idle (0: never wait)",
    )
    parser.add_argument(
        "--retries",
        type=int,
        default=6,
        help="server runs, in all (at most 2 per row), to repeat because other processes used the CPU "
        "meanwhile (the cleaner run is kept)",
    )
    parser.add_argument(
        "--no-extras", action="store_true", help="skip the FastAPI --no-log, echo and load-shedding rows"
    )
    parser.add_argument(
        "--shared-socket",
        action="store_true",
        help="SCOPEML_REUSEPORT=0: every BentoML worker accepts from BentoML's one shared socket (the behaviour "
        "before scopeml.serving.sockets), to compare",
    )
    parser.add_argument(
        "--only",
        help="comma-separated server rows to run (fastapi, bentoml, bentoml_w1, bentoml_batching, "
        "bentoml_echo, bentoml_echo_w2, fastapi_nolog, bentoml_shedding)",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed")

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="scopeml_bench_serving_"))
    os.environ["BENTOML_HOME"] = str(tmp / "bentoml")
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    live: list[LocalServer] = []
    res: dict = {
        "host": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "speed_probe_s": {"start": host_speed()},  # scopeml.provenance.host_speed: lower is faster
        },
        "settings": vars(args)
        | {"run_dir": str(args.run_dir) if args.run_dir else None, "json": str(args.json) if args.json else None},
    }
    try:
        run_dir = args.run_dir or train_run(tmp)
        res["run_dir"] = str(run_dir)
        tags = {
            "default": package(run_dir, []),
            "workers1": package(run_dir, ["deploy.workers=1"]),
            "batching": package(run_dir, ["deploy=realtime_batching"]),
            "shedding": package(run_dir, ["deploy=realtime_batching", "deploy.batching.max_latency_ms=50"]),
        }
        res["tags"] = tags
        print(f"packaged {tags} into {os.environ['BENTOML_HOME']}", flush=True)

        clips = make_clips(args.clips)
        body_dir = tmp / "bodies"
        body_dir.mkdir()
        bodies = [multipart(wav, f"clip{i}") for i, (_, wav) in enumerate(clips)]
        for i, b in enumerate(bodies):
            (body_dir / f"body_{i}.bin").write_bytes(b)
        res["clips"] = {
            "n": len(clips),
            "wav_bytes_mean": float(np.mean([len(w) for _, w in clips])),
            "body_bytes_mean": float(np.mean([len(b) for b in bodies])),
        }
        print(f"{len(clips)} clips, mean WAV {res['clips']['wav_bytes_mean'] / 1024:.1f} KiB", flush=True)

        gate = QuietGate(args.quiet_budget, args.retries)
        print("in-process ...", flush=True)
        foreign = gate.wait()
        res["in_process"] = in_process(tags["default"], clips, tmp, args.calls, args.rounds)
        res["in_process"]["foreign_load_before"] = foreign
        import bentoml
        import fastapi
        import torch

        res["versions"] = {
            "bentoml": bentoml.__version__,
            "fastapi": fastapi.__version__,
            "torch": torch.__version__,
            "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0],
        }

        base_env = {**os.environ, "PYTHONUNBUFFERED": "1"} | ({"SCOPEML_REUSEPORT": "0"} if args.shared_socket else {})
        uvicorn = [
            str(BIN / "python"),
            "-m",
            "uvicorn",
            "bench.fastapi_peer:app",
            "--app-dir",
            str(ROOT),
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        bento = [
            str(BIN / "bentoml"),
            "serve",
            "scopeml.serving.service:KeywordSpotting",
            "--host",
            "127.0.0.1",
            "--port",
            "{port}",
        ]
        echo = [str(BIN / "bentoml"), "serve", "bench.bentoml_echo:Echo", "--host", "127.0.0.1", "--port", "{port}"]
        # the rows the targets need first, so the retry budget goes to them; the extras last
        plan = [
            ("fastapi", uvicorn, {"SCOPEML_MODEL_TAG": tags["default"]}, [1, 32]),
            ("bentoml", bento, {"SCOPEML_MODEL_TAG": tags["default"]}, [1, 32]),
            ("bentoml_w1", bento, {"SCOPEML_MODEL_TAG": tags["workers1"]}, [1, 32]),
            ("bentoml_batching", bento, {"SCOPEML_MODEL_TAG": tags["batching"]}, [1, 32]),
            ("bentoml_echo", echo, {}, [1, 32]),
            ("bentoml_echo_w2", echo, {"ECHO_WORKERS": "2"}, [32]),
            ("fastapi_nolog", uvicorn, {"SCOPEML_MODEL_TAG": tags["default"], "SCOPEML_PEER_NO_LOG": "1"}, [1, 32]),
            ("bentoml_shedding", bento, {"SCOPEML_MODEL_TAG": tags["shedding"]}, [32]),
        ]
        if args.no_extras:
            plan = [
                p for p in plan if p[0] not in ("fastapi_nolog", "bentoml_shedding", "bentoml_echo", "bentoml_echo_w2")
            ]
        if args.only:
            plan = [p for p in plan if p[0] in args.only.split(",")]
        res["servers"] = {}
        for name, cmd, extra, levels in plan:
            print(f"{name} ...", flush=True)
            res["servers"][name] = bench_server(
                name, cmd, {**base_env, **extra}, tmp, (body_dir, len(bodies), bodies[0]), levels, args, live, gate
            )
        text, ratios = report(res)
        res["ratios"] = ratios
        res["total_s"] = time.monotonic() - started
        res["quiet_wait_s"] = gate.waited
        res["host"]["speed_probe_s"]["end"] = host_speed()
        print()
        print(text)
        print(
            f"\ntotal {res['total_s']:.0f} s on {os.cpu_count()} CPUs (wrk shares them with the server); "
            f"{gate.waited:.0f} s of it waiting for other processes to go idle; host speed probe (a 2M-step "
            f"Python loop, CPU-s, lower is faster) {res['host']['speed_probe_s']['start']} at the start, "
            f"{res['host']['speed_probe_s']['end']} at the end"
        )
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(res, indent=2, default=str))
            print(f"wrote {args.json}")
    finally:
        for server in list(live):
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
