"""Soak and faults: the served model at the scoping throughput target for minutes, with malformed requests mixed in,
then a SIGKILL under load and a restart on the same prediction log.

    python bench/bench_soak.py [--minutes 5] [--malformed 0.1] [--run-dir RUN] [--json out.json]
    python bench/bench_soak.py --minutes 0.5          # a quick look that the script works

1. Setup: a small model (trained once into --work/run, as bench_serving.py trains it, and reused after), packaged
   into a temp BENTOML_HOME with the default deploy (2 API workers), served by `bentoml serve` on loopback with a
   prediction log in the same temp folder.
2. Soak: open-loop load at scoping.targets.throughput_qps (read from the run's saved config; --rate overrides):
   send times are scheduled at fixed intervals whatever the answers do, so a slow server meets more load, not
   less (a closed loop would hide it). A fraction --malformed of the requests is malformed, drawn evenly from
   MALFORMED's kinds; the rest are real clips (eSpeak keywords, plus FSDD digits read in place if present).
   Every request carries its own x-request-id (LOADTEST_PREFIX, so monitoring leaves them out).
   Recorded: status counts for well-formed and malformed requests apart (and per malformed kind), latency
   p50/p95/p99 of the well-formed 200s per minute, how late the client sent (it shares the CPUs), and the RSS of
   the whole server process tree every --sample-s seconds.
3. Log check: every acknowledged (200) well-formed request id is in the prediction log exactly once; no malformed
   request id is in it.
4. Fault: load again; --kill-after seconds in, SIGKILL every process of the server (API and workers), as a crash
   would; then the log is opened (PRAGMA integrity_check, schema version, PredictionLog opens it), `bentoml serve`
   is restarted on the same log, every request acknowledged before the kill must be in it, and the restarted
   server takes --after-seconds of the same load with no well-formed answer >= 500.

Pass criteria (printed PASS/FAIL): well-formed requests: 0 answers >= 500 and 0 transport errors (timeouts,
refused connections); malformed requests: 0 answers >= 500; memory growth (mean RSS over the last --window-s
seconds minus mean RSS over the --window-s seconds after the warm-up) <= --bound-mb; every acknowledged
prediction logged exactly once, no malformed one logged; after the kill the log is intact and loses nothing
acknowledged, and the restarted server answers with 0 >= 500. Achieved rate and p95 are set beside the scoping
targets (the p95 target, latency_p95_ms, is judged at concurrency 1 by scopeml-loadtest; here it is the p95 at the
target rate, for comparison).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_serving's helpers, however this is started
from bench_serving import BOUNDARY, make_clips, multipart, package, train_run  # noqa: E402

from scopeml.lifecycle.server import LocalServer  # noqa: E402
from scopeml.serving.loadtest import LOADTEST_PREFIX  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FSDD = ROOT.parent / "shared" / "datasets" / "fsdd" / "recordings"
MALFORMED = (
    "wrong_field",  # multipart part named `file`, not `audio`
    "text_not_wav",  # the audio part holds text
    "truncated_wav",  # a WAV cut inside its header / with a header and no samples
    "beyond_full_scale",  # a float WAV with peaks of 10.0 (integer PCM sent as floats, say)
    "wrong_content_type",  # the WAV as a raw body with Content-Type: application/json
    "empty_body",  # multipart Content-Type, no body at all
    "oversize",  # a multipart WAV just over deploy.max_body_mb
)


# ---------------------------------------------------------------------------- requests
def fsdd_clips(n: int) -> list[bytes]:
    """n FSDD recordings (8 kHz WAV, read in place): other speakers, another rate, words that are not keywords."""
    if not FSDD.is_dir():
        return []
    return [p.read_bytes() for p in sorted(FSDD.glob("*.wav"))[:: max(1, 2000 // n)][:n]]


def malformed_bodies(wav: bytes, max_body_bytes: int) -> dict[str, list[tuple[bytes, str]]]:
    """kind -> [(body, content type)]; a kind with two variants alternates between them."""
    import io

    import soundfile as sf

    form = f"multipart/form-data; boundary={BOUNDARY}"

    def part(name: str, filename: str, data: bytes) -> bytes:
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()

    loud = io.BytesIO()
    sf.write(
        loud, np.full(8000, 10.0, np.float32) * np.sin(np.arange(8000) / 5.0), 16000, format="WAV", subtype="FLOAT"
    )
    padding = np.random.default_rng(0).integers(0, 256, max_body_bytes + 64 * 1024, dtype=np.uint8).tobytes()
    return {
        "wrong_field": [(part("file", "c.wav", wav), form)],
        "text_not_wav": [(part("audio", "c.wav", b"hello, this is not audio\n" * 40), form)],
        "truncated_wav": [(part("audio", "c.wav", wav[:30]), form), (part("audio", "c.wav", wav[:44]), form)],
        "beyond_full_scale": [(part("audio", "c.wav", loud.getvalue()), form)],
        "wrong_content_type": [(wav, "application/json")],
        "empty_body": [(b"", form)],
        "oversize": [(part("audio", "c.wav", wav[:44] + padding), form)],
    }


class Requests:
    """The i-th request of a run: (kind, body, content type); kind "ok" for a well-formed clip. Deterministic."""

    def __init__(self, clips: list[bytes], bad: dict[str, list[tuple[bytes, str]]], fraction: float, seed: int):
        self.ok = [multipart(c, f"clip{i}") for i, c in enumerate(clips)]
        self.bad, self.kinds = bad, list(bad)
        self.rng = np.random.default_rng(seed)
        self.fraction = fraction
        self.n_bad = 0

    def next(self, i: int) -> tuple[str, bytes, str]:
        if self.rng.random() < self.fraction:
            kind = self.kinds[self.n_bad % len(self.kinds)]  # round robin: every kind equally often
            variants = self.bad[kind]
            body, ctype = variants[(self.n_bad // len(self.kinds)) % len(variants)]
            self.n_bad += 1
            return kind, body, ctype
        return "ok", self.ok[i % len(self.ok)], f"multipart/form-data; boundary={BOUNDARY}"


# ---------------------------------------------------------------------------- load
@dataclass
class Sent:
    rid: str
    kind: str
    t_sched: float  # seconds from the run's start
    t_sent: float
    t_done: float
    status: int | str  # HTTP status, or the transport error's name


async def _open_loop(url: str, reqs: Requests, rate: float, seconds: float, phase: str, out: list[Sent], cap: int, at):
    """Send request i at start + i / rate until `seconds`, each in its own task (never waiting on answers); then
    wait for the answers. cap: at most this many requests in flight; one due beyond it is not sent and counts as
    "client_cap" (an error), so a stuck server shows as errors instead of an ever longer client queue.
    at: (seconds, blocking function) pairs run in a thread at those times (the SIGKILL).
    aiohttp, not httpx: httpx's connection pool spent the client's CPU on thousands of queued requests (a first
    5-minute run starved itself and sent almost nothing after minute 3)."""
    import aiohttp

    connector = aiohttp.TCPConnector(limit=cap, force_close=False)
    in_flight = 0
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as client:
        t0 = time.perf_counter()

        async def one(i: int, t_sched: float) -> None:
            nonlocal in_flight
            kind, body, ctype = reqs.next(i)
            rid = f"{LOADTEST_PREFIX}soak-{phase}-{kind}-{i}"
            t_sent = time.perf_counter() - t0
            if in_flight >= cap:
                out.append(Sent(rid, kind, t_sched, t_sent, t_sent, "client_cap"))
                return
            in_flight += 1
            try:
                async with client.post(
                    f"{url}/classify", data=body, headers={"content-type": ctype, "x-request-id": rid}
                ) as r:
                    status = r.status
                    payload = await r.read()
                if status == 200 and json.loads(payload).get("request_id") != rid:
                    status = "wrong_request_id"
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                status = type(exc).__name__
            finally:
                in_flight -= 1
            out.append(Sent(rid, kind, t_sched, t_sent, time.perf_counter() - t0, status))

        async def later(delay: float, fn) -> None:
            await asyncio.sleep(delay)
            await asyncio.to_thread(fn)

        tasks = [asyncio.create_task(later(s, fn)) for s, fn in at]
        i = 0
        while i / rate < seconds:
            t_sched = i / rate
            delay = t0 + t_sched - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i, t_sched)))  # behind schedule: sent at once, to catch up
            i += 1
        await asyncio.gather(*tasks)


CAP = 512  # requests in flight: 4x what the server admits (max_concurrency 64 per worker, 2 workers)


def drive(url: str, reqs: Requests, rate: float, seconds: float, phase: str, at=()) -> list[Sent]:
    out: list[Sent] = []
    asyncio.run(_open_loop(url, reqs, rate, seconds, phase, out, CAP, at))
    return out


class MemorySampler(threading.Thread):
    """RSS summed over the server's process tree (API process, its workers, the watcher) every `every` s."""

    def __init__(self, pid: int, every: float):
        super().__init__(daemon=True)
        self.pid, self.every = pid, every
        self.samples: list[tuple[float, float, int]] = []  # (seconds, MB, processes)
        self.stop = threading.Event()
        self.t0 = time.perf_counter()
        self.cpu_s = 0.0  # CPU seconds the server tree has used (user + system), at the last sample

    def rss(self) -> tuple[float, int]:
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0.0, 0
        total, cpu = 0, 0.0
        for p in procs:
            try:
                total += p.memory_info().rss
                t = p.cpu_times()
                cpu += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        self.cpu_s = max(self.cpu_s, cpu)  # a worker gone (never, in a soak) would make the sum step down
        return total / 2**20, len(procs)

    def run(self) -> None:
        while not self.stop.is_set():
            mb, n = self.rss()
            self.samples.append((time.perf_counter() - self.t0, mb, n))
            self.stop.wait(self.every)
        self.rss()


# ---------------------------------------------------------------------------- figures
def pct(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None}
    a = np.asarray(xs) * 1000
    return {"n": len(xs), **{f"p{q}_ms": float(np.percentile(a, q)) for q in (50, 95, 99)}}


def counts(sent: list[Sent]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in sent:
        out[str(s.status)] = out.get(str(s.status), 0) + 1
    return dict(sorted(out.items()))


def server_errors(c: dict[str, int]) -> int:
    return sum(n for k, n in c.items() if k.isdigit() and int(k) >= 500)


def transport_errors(c: dict[str, int]) -> int:
    return sum(n for k, n in c.items() if not k.isdigit())


def summarize(sent: list[Sent], rate: float, seconds: float) -> dict:
    ok = [s for s in sent if s.kind == "ok"]
    bad = [s for s in sent if s.kind != "ok"]
    lag = np.asarray([s.t_sent - s.t_sched for s in sent]) * 1000
    span = max(s.t_sent for s in sent) if sent else 0.0
    done_ok = [s for s in ok if s.status == 200]
    minutes = {}
    for m in range(int(np.ceil(seconds / 60))):
        inside = [s for s in done_ok if m * 60 <= s.t_sched < (m + 1) * 60]
        minutes[m + 1] = {
            "service": pct([s.t_done - s.t_sent for s in inside]),  # from the send
            "scheduled": pct([s.t_done - s.t_sched for s in inside]),  # from when it was due: counts client lag
        }
    return {
        "requests": len(sent),
        "target_rate": rate,
        # sent / time from the first send to the last (a 1 / rate gap after the last is not counted)
        "achieved_rate": (len(sent) - 1) / span if span > 0 else 0.0,
        "send_lag_ms": {
            "p50": float(np.percentile(lag, 50)),
            "p99": float(np.percentile(lag, 99)),
            "max": float(lag.max()),
        }
        if len(lag)
        else {},
        "well_formed": {"n": len(ok), "status": counts(ok)},
        "malformed": {"n": len(bad), "status": counts(bad)},
        "malformed_by_kind": {k: counts([s for s in bad if s.kind == k]) for k in MALFORMED},
        "latency": {
            "service": pct([s.t_done - s.t_sent for s in done_ok]),
            "scheduled": pct([s.t_done - s.t_sched for s in done_ok]),
        },
        "per_minute": minutes,
    }


def logged_ids(path: Path) -> dict[str, int]:
    """request id -> rows with it, for this benchmark's requests."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT request_id, COUNT(*) FROM predictions WHERE request_id LIKE ? GROUP BY request_id",
            (f"{LOADTEST_PREFIX}soak-%",),
        )
        return dict(rows.fetchall())


def log_check(sent: list[Sent], logged: dict[str, int]) -> dict:
    acked = {s.rid for s in sent if s.kind == "ok" and s.status == 200}
    ok_ids = {s.rid for s in sent if s.kind == "ok"}
    bad = {s.rid for s in sent if s.kind != "ok"}
    return {
        "acknowledged": len(acked),
        "acknowledged_missing": len(acked - set(logged)),
        "acknowledged_logged_twice": sum(1 for r in acked if logged.get(r, 0) > 1),
        "malformed_logged": len(bad & set(logged)),
        "unacknowledged_but_logged": len((ok_ids - acked) & set(logged)),  # logged, the answer lost (kill, timeout)
    }


def memory(samples: list[tuple[float, float, int]], warmup_s: float, window_s: float, bound_mb: float) -> dict:
    t = np.asarray([s[0] for s in samples])
    mb = np.asarray([s[1] for s in samples])
    base_sel = (t >= warmup_s) & (t < warmup_s + window_s)
    end_sel = t >= t.max() - window_s
    base, end = float(mb[base_sel].mean()), float(mb[end_sel].mean())
    after = t >= warmup_s
    slope = float(np.polyfit(t[after] / 60, mb[after], 1)[0]) if after.sum() >= 3 else float("nan")
    return {
        "samples": len(samples),
        "processes": int(max(s[2] for s in samples)),
        "start_mb": float(mb[0]),
        "after_warmup_mb": base,
        "end_mb": end,
        "peak_mb": float(mb.max()),
        "growth_mb": end - base,
        "growth_pct": 100 * (end - base) / base,
        "slope_mb_per_min": slope,  # a least-squares line through the samples after the warm-up
        "bound_mb": bound_mb,
        "pass": end - base <= bound_mb,
    }


def open_cleanly(path: Path) -> dict:
    """What a restarted server meets: the file after a SIGKILL (its WAL not checkpointed)."""
    from scopeml.serving.log import SCHEMA_VERSION, PredictionLog

    wal = path.with_name(path.name + "-wal")
    out = {"wal_bytes_at_kill": wal.stat().st_size if wal.exists() else 0}
    with sqlite3.connect(path) as db:
        out["integrity_check"] = db.execute("PRAGMA integrity_check").fetchone()[0]
        out["user_version"] = db.execute("PRAGMA user_version").fetchone()[0]
        out["rows"] = db.execute("SELECT COUNT(*) FROM predictions").fetchone()[0]
    PredictionLog(path).close()  # the server's own open (migration, WAL) must not fail
    out["schema_version_expected"] = SCHEMA_VERSION
    out["pass"] = out["integrity_check"] == "ok" and out["user_version"] == SCHEMA_VERSION
    return out


def busy_s() -> float:
    """CPU seconds every core spent busy since boot (not idle, not waiting on I/O)."""
    v = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(v) - v[3] - v[4]) / os.sysconf("SC_CLK_TCK")


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------------- phases
def start_server(tmp: Path, log: Path, tag: str, name: str) -> LocalServer:
    env = {
        **os.environ,
        "SCOPEML_MODEL_TAG": tag,
        "SCOPEML_PREDICTION_LOG": str(log),
        "PYTHONUNBUFFERED": "1",
    }
    return LocalServer(env, tmp / f"{name}.server.log", name=name)


def soak(srv: LocalServer, reqs: Requests, args, rate: float, log: Path) -> dict:
    seconds = args.minutes * 60
    warmup = min(60.0, seconds / 5)
    window = min(args.window_s, seconds / 5)
    sampler = MemorySampler(srv.proc.pid, args.sample_s)
    load_samples: list[float] = []
    load_stop = threading.Event()

    def watch_load() -> None:  # the machine's 1-minute load average, through the soak
        while True:
            load_samples.append(round(os.getloadavg()[0], 2))
            if load_stop.wait(15):
                return

    watcher = threading.Thread(target=watch_load, daemon=True)
    print(
        f"soak: {seconds:.0f} s at {rate:g} req/s, {args.malformed:.0%} malformed; load average {loadavg()}", flush=True
    )
    sampler.rss()
    server_cpu_0, client_cpu_0, busy_0, t_0 = sampler.cpu_s, time.process_time(), busy_s(), time.perf_counter()
    sampler.start()
    watcher.start()
    sent = drive(srv.url, reqs, rate, seconds, "soak")
    sampler.stop.set()
    load_stop.set()
    sampler.join()
    elapsed = time.perf_counter() - t_0
    out = summarize(sent, rate, seconds)
    server, client = sampler.cpu_s - server_cpu_0, time.process_time() - client_cpu_0
    out["cores"] = {  # where the machine's CPU went during the soak, in cores
        "server": server / elapsed,
        "client": client / elapsed,
        "others": max(busy_s() - busy_0 - server - client, 0.0) / elapsed,
        "server_cpu_ms_per_request": 1000 * server / max(len(sent), 1),
    }
    out["memory"] = memory(sampler.samples, warmup, window, args.bound_mb)
    out["memory"]["warmup_s"], out["memory"]["window_s"] = warmup, window
    out["memory"]["trace"] = [(round(t, 1), round(mb, 1)) for t, mb, _ in sampler.samples]
    out["load_average_1min"] = {
        "min": min(load_samples, default=None),
        "mean": float(np.mean(load_samples)) if load_samples else None,
        "max": max(load_samples, default=None),
    }
    time.sleep(0.5)
    out["log"] = log_check(sent, logged_ids(log))
    return out


def fault(tmp: Path, log: Path, tag: str, reqs: Requests, args, rate: float) -> dict:
    """Load, SIGKILL mid-load, open the log, restart on it, load again."""
    srv = start_server(tmp, log, tag, "before_kill")
    killed_at: list[float] = []

    def kill() -> None:
        killed_at.append(time.perf_counter())
        srv.kill()

    print(f"fault: {args.kill_after:g} s of load, SIGKILL, load for 2 s more ...", flush=True)
    t0 = time.perf_counter()
    before = drive(srv.url, reqs, rate, args.kill_after + 2, "fault", at=[(args.kill_after, kill)])
    kill_s = killed_at[0] - t0 if killed_at else None
    srv.log.close()
    opened = open_cleanly(log)
    print(f"log after the kill: {opened}", flush=True)
    check_before = log_check(before, logged_ids(log))
    started = time.perf_counter()
    again = start_server(tmp, log, tag, "restarted")
    restart_s = time.perf_counter() - started
    print(f"restarted in {restart_s:.1f} s; {args.after_seconds:g} s of load ...", flush=True)
    try:
        after = drive(again.url, reqs, rate, args.after_seconds, "after")
    finally:
        again.stop()
    return {
        "kill_at_s": kill_s,
        "before": summarize(before, rate, args.kill_after + 2),
        "log_after_kill": opened,
        "log_before_kill": check_before,
        "restart_s": restart_s,
        "after": summarize(after, rate, args.after_seconds),
        "log_after_restart": log_check(after, logged_ids(log)),
        "log_after_restart_all": log_check(before, logged_ids(log)),  # the restart lost nothing either
    }


# ---------------------------------------------------------------------------- report
def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(res: dict) -> tuple[str, bool]:
    s, f, tg = res["soak"], res["fault"], res["targets"]
    wf, mf = s["well_formed"]["status"], s["malformed"]["status"]
    m, lat = s["memory"], s["latency"]
    la1, c = s["load_average_1min"], s["cores"]
    lines = [
        f"soak {res['settings']['minutes']:g} min at {res['rate']:g} req/s "
        f"(scoping throughput_qps {tg['throughput_qps']:g}), {res['settings']['malformed']:.0%} malformed; "
        f"{res['host']['cpus']} CPUs, load average during the soak {la1['min']}-{la1['max']} "
        f"(mean {la1['mean'] or 0:.2f})",
        "",
        f"cores used during the soak: server {c['server']:.2f} ({c['server_cpu_ms_per_request']:.1f} ms CPU a "
        f"request), load client {c['client']:.2f}, other processes {c['others']:.2f}",
        "",
        f"{'figure':<44}{'measured':>16}{'target / bound':>18}{'ratio':>9}  result",
    ]
    checks: list[bool] = []

    def row(name: str, value: str, target: str = "", ratio: float | None = None, ok: bool | None = None) -> None:
        r = f"{ratio:9.2f}" if ratio is not None else " " * 9
        lines.append(f"{name:<44}{value:>16}{target:>18}{r}  {'' if ok is None else verdict(ok)}")
        if ok is not None:
            checks.append(ok)

    rate_ok = s["achieved_rate"] >= 0.98 * tg["throughput_qps"]
    row(
        "achieved send rate (req/s)",
        f"{s['achieved_rate']:.1f}",
        f">= {tg['throughput_qps']:g}",
        s["achieved_rate"] / tg["throughput_qps"],
        rate_ok,
    )
    row("client send lag p99 / max (ms)", f"{s['send_lag_ms']['p99']:.1f} / {s['send_lag_ms']['max']:.0f}")
    ok200 = wf.get("200", 0)
    row("well-formed requests", f"{s['well_formed']['n']}")
    row("  answered 200", f"{ok200}", "", ok200 / max(s["well_formed"]["n"], 1))
    row("  other statuses", ", ".join(f"{k}: {n}" for k, n in wf.items() if k != "200") or "none")
    row("  >= 500", f"{server_errors(wf)}", "0", None, server_errors(wf) == 0)
    row("  transport errors (timeouts, refused)", f"{transport_errors(wf)}", "0", None, transport_errors(wf) == 0)
    row("well-formed 200 rate (req/s)", f"{ok200 / (res['settings']['minutes'] * 60):.1f}")
    row("malformed requests", f"{s['malformed']['n']}")
    row("  statuses", ", ".join(f"{k}: {n}" for k, n in mf.items()))
    row("  >= 500", f"{server_errors(mf)}", "0", None, server_errors(mf) == 0)
    p95 = lat["service"]["p95_ms"]
    row(
        "latency p50 / p95 / p99, from send (ms)",
        f"{lat['service']['p50_ms']:.1f} / {p95:.1f} / {lat['service']['p99_ms']:.1f}",
    )
    row(
        "  p95 vs latency_p95_ms (judged at c1)",
        f"{p95:.1f}",
        f"<= {tg['latency_p95_ms']:g}",
        p95 / tg["latency_p95_ms"],
    )
    sch = lat["scheduled"]
    row(
        "latency p50 / p95 / p99, from due time (ms)",
        f"{sch['p50_ms']:.1f} / {sch['p95_ms']:.1f} / {sch['p99_ms']:.1f}",
    )
    row("server RSS after warm-up / end (MB)", f"{m['after_warmup_mb']:.0f} / {m['end_mb']:.0f}")
    row(
        "server RSS growth (MB)",
        f"{m['growth_mb']:+.1f}",
        f"<= {m['bound_mb']:g}",
        m["growth_mb"] / m["bound_mb"],
        m["pass"],
    )
    row("  growth % / slope after warm-up (MB/min)", f"{m['growth_pct']:+.1f}% / {m['slope_mb_per_min']:+.2f}")
    lg = s["log"]
    row(
        "acknowledged predictions missing from log",
        f"{lg['acknowledged_missing']} of {lg['acknowledged']}",
        "0",
        None,
        lg["acknowledged_missing"] == 0,
    )
    row(
        "  logged more than once", f"{lg['acknowledged_logged_twice']}", "0", None, lg["acknowledged_logged_twice"] == 0
    )
    row("malformed requests in the log", f"{lg['malformed_logged']}", "0", None, lg["malformed_logged"] == 0)
    lines.append("")
    lines.append("per minute, well-formed 200s, from send: p50 / p95 / p99 ms (n)")
    for minute, v in s["per_minute"].items():
        sv = v["service"]
        if sv["n"]:
            lines.append(f"  minute {minute}: {sv['p50_ms']:.1f} / {sv['p95_ms']:.1f} / {sv['p99_ms']:.1f} ({sv['n']})")
    lines.append("malformed, by kind: " + "; ".join(f"{k} {v}" for k, v in s["malformed_by_kind"].items()))
    lines.append("")
    b, a, o = f["before"], f["after"], f["log_after_kill"]
    lines.append(
        f"fault: SIGKILL at {f['kill_at_s']:.1f} s of load ({b['well_formed']['status'].get('200', 0)} "
        f"well-formed acknowledged before it; statuses {b['well_formed']['status']})"
    )
    row("log after the kill: integrity_check", o["integrity_check"], "ok", None, o["integrity_check"] == "ok")
    row(
        "  schema version (user_version)",
        f"{o['user_version']}",
        f"{o['schema_version_expected']}",
        None,
        o["user_version"] == o["schema_version_expected"],
    )
    row("  rows / WAL bytes at the kill", f"{o['rows']} / {o['wal_bytes_at_kill']}")
    lb = f["log_before_kill"]
    row(
        "acknowledged before the kill, missing",
        f"{lb['acknowledged_missing']} of {lb['acknowledged']}",
        "0",
        None,
        lb["acknowledged_missing"] == 0 and lb["acknowledged"] > 0,
    )
    row("  logged, answer lost in the kill", f"{lb['unacknowledged_but_logged']}")
    row("restart on the same log (s)", f"{f['restart_s']:.1f}")
    aw = a["well_formed"]["status"]
    row("after restart: well-formed statuses", ", ".join(f"{k}: {n}" for k, n in aw.items()))
    row(
        "  >= 500 / transport errors",
        f"{server_errors(aw)} / {transport_errors(aw)}",
        "0 / 0",
        None,
        server_errors(aw) + transport_errors(aw) == 0,
    )
    row(
        "  malformed >= 500",
        f"{server_errors(a['malformed']['status'])}",
        "0",
        None,
        server_errors(a["malformed"]["status"]) == 0,
    )
    row("  p95 from send (ms)", f"{a['latency']['service']['p95_ms'] or float('nan'):.1f}")
    la = f["log_after_restart"]
    row(
        "  acknowledged missing from log",
        f"{la['acknowledged_missing']} of {la['acknowledged']}",
        "0",
        None,
        la["acknowledged_missing"] == 0,
    )
    lall = f["log_after_restart_all"]
    row(
        "  pre-kill acknowledged still in log",
        f"{lall['acknowledged'] - lall['acknowledged_missing']} of {lall['acknowledged']}",
        "",
        None,
        lall["acknowledged_missing"] == 0,
    )
    if res["rate"] < tg["throughput_qps"]:
        lines.append(f"NOTE: run at --rate {res['rate']:g}, below the scoping target.")
    if s["achieved_rate"] < 0.98 * res["rate"]:
        lines.append(
            f"NOTE: the client sent {s['achieved_rate']:.1f} req/s, under the target: it could not keep up on this "
            "machine; the figures are for that rate."
        )
    lines.append("")
    lines.append(f"overall: {verdict(all(checks))}")
    return "\n".join(lines), all(checks)


# ---------------------------------------------------------------------------- main
def targets(run_dir: Path) -> dict:
    """The scoping targets the model was trained under (its run's saved config)."""
    import yaml

    t = yaml.safe_load((run_dir / "config.yaml").read_text())["scoping"]["targets"]
    return {"throughput_qps": float(t["throughput_qps"]["min"]), "latency_p95_ms": float(t["latency_p95_ms"]["max"])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=5.0, help="soak length")
    p.add_argument("--malformed", type=float, default=0.1, help="fraction of malformed requests")
    p.add_argument("--rate", type=float, help="req/s (default: scoping.targets.throughput_qps of the run's config)")
    p.add_argument("--bound-mb", type=float, default=50.0, help="allowed RSS growth of the server tree after warm-up")
    p.add_argument("--window-s", type=float, default=20.0, help="RSS averaging window after warm-up and at the end")
    p.add_argument("--sample-s", type=float, default=2.0, help="RSS sampling interval")
    p.add_argument("--kill-after", type=float, default=10.0, help="seconds of load before the SIGKILL")
    p.add_argument("--after-seconds", type=float, default=30.0, help="seconds of load on the restarted server")
    p.add_argument("--clips", type=int, default=50, help="eSpeak keyword clips (plus as many FSDD clips if present)")
    p.add_argument("--run-dir", type=Path, help="a finished training run (default: --work/run, trained if missing)")
    p.add_argument("--work", type=Path, default=ROOT / "outputs" / "bench_soak", help="where the trained model stays")
    p.add_argument("--json", type=Path, help="write every figure here")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="scopeml_bench_soak_"))
    os.environ["BENTOML_HOME"] = str(tmp / "bentoml")
    os.environ["BENTOML_DO_NOT_TRACK"] = "True"
    log = tmp / "predictions.sqlite"
    res: dict = {
        "host": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "load_average_at_start": loadavg(),
    }
    srv = None
    try:
        run_dir = args.run_dir
        if run_dir is None:
            run_dir = args.work / "run"
            if not (run_dir / "checkpoints" / "best.ckpt").exists():
                shutil.rmtree(run_dir, ignore_errors=True)
                args.work.mkdir(parents=True, exist_ok=True)
                train_run(args.work)  # trains into work/run
        res["run_dir"] = str(run_dir)
        res["targets"] = targets(run_dir)
        rate = res["rate"] = args.rate or res["targets"]["throughput_qps"]
        tag = package(run_dir, [])  # the default deploy: 2 API workers
        res["tag"] = tag
        serving = json.loads((Path(__import__("bentoml").models.get(tag).path) / "serving.json").read_text())["deploy"]
        res["deploy"] = {k: serving[k] for k in ("workers", "max_body_mb", "max_concurrency", "max_clip_seconds")}
        keywords = [wav for _, wav in make_clips(args.clips)]
        clips = keywords + fsdd_clips(args.clips)
        res["clips"] = {"espeak": len(keywords), "fsdd": len(clips) - len(keywords)}
        bad = malformed_bodies(keywords[0], int(serving["max_body_mb"] * 2**20))
        print(f"model {tag}; deploy {res['deploy']}; clips {res['clips']}", flush=True)

        srv = start_server(tmp, log, tag, "soak")
        reqs = Requests(clips, bad, args.malformed, args.seed)
        drive(srv.url, reqs, rate, 3, "warmup")  # connections, first-request paths (not counted)
        res["soak"] = soak(srv, reqs, args, rate, log)
        srv.stop()
        srv = None
        res["fault"] = fault(tmp, log, tag, reqs, args, rate)
        text, ok = report(res)
        res["pass"] = ok
        res["total_s"] = time.monotonic() - started
        print()
        print(text)
        print(f"\ntotal {res['total_s']:.0f} s")
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(res, indent=2, default=str))
            print(f"wrote {args.json}")
    finally:
        if srv is not None:
            srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if res.get("pass") else 1


if __name__ == "__main__":
    sys.exit(main())
