"""scopeml-lifecycle: scoping to monitored production in one command, on the built-in offline data.

    scopeml-lifecycle                      # conf/lifecycle/default.yaml -> outputs/lifecycle/
    scopeml-lifecycle --config quick       # a reduced run (tests, demos)
    scopeml-lifecycle --force sweep        # re-run from the sweep on, even if its inputs did not change

Each stage runs the project's own command on the previous stage's artifacts, in
outputs/lifecycle/<nn>_<stage>/, and records what it read in stage.json: a re-run skips a
stage whose inputs (its config and the files it reads) have not changed. A failing stage is
named, with its log; the earlier stages' artifacts stay usable. At the end report.html and
report.md put every scoping target beside what each phase achieved.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from scopeml.lifecycle.config import LifecycleConfig, load_lifecycle
from scopeml.stage import ExitCode


class StageError(RuntimeError):
    def __init__(self, stage: str, message: str, log: Path | None = None):
        self.stage, self.log = stage, log
        super().__init__(f"stage {stage} failed: {message}" + (f" (log: {log})" if log else ""))


class Lifecycle:
    STAGES = ("data", "sweep", "select", "package", "serve", "loadtest", "simulate", "label", "monitor", "report")

    def __init__(
        self, cfg: LifecycleConfig, force: set[str] = frozenset(), console=None, config_dir: str | Path | None = None
    ):
        self.cfg, self.force = cfg, force
        # A user's own config folder (models, data, experiments): every Hydra stage composes with it.
        self.config_dir = str(Path(config_dir).expanduser().resolve()) if config_dir else None
        self.hydra_args = ["--config-dir", self.config_dir] if self.config_dir else []
        self.out = Path(cfg.out).resolve()
        self.out.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "BENTOML_HOME": str(self.out / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "True",
            "SCOPEML_PREDICTION_LOG": str(self.dir("serve") / "predictions.sqlite"),
        }
        self.server = None
        self.console = console
        self.forced_from = min((self.STAGES.index(s) for s in force), default=len(self.STAGES))

    def dir(self, stage: str) -> Path:
        return self.out / f"{self.STAGES.index(stage) + 1:02d}_{stage}"

    def composed(self, *overrides: str) -> dict:
        """The resolved config the stages will run with: a change in conf/ or in the overrides re-runs them."""
        from scopeml.config import to_plain
        from scopeml.config.paths import compose

        plain = to_plain(compose("config", list(overrides), self.config_dir))
        plain.pop("hydra", None)
        return plain

    # ------------------------------------------------------------------ the table of contents
    def run(self) -> dict:
        config = self.composed(*self.cfg.train)
        try:
            self.stage("data", self.validate_data, inputs=[config])
            self.stage("sweep", self.sweep, inputs=[config, self.cfg.sweep, self.dir("data") / "data_fingerprint.json"])
            self.stage("select", self.select, inputs=[self.dir("sweep") / "sweep_summary.csv"])
            self.stage("package", self.package, inputs=[self.dir("select") / "selection.json"])
            package = self.dir("package") / "package.json"
            served = {
                "loadtest": [package, asdict(self.cfg.loadtest)],
                "simulate": [package, asdict(self.cfg.simulate)],
                # stage.json changes whenever its stage runs again: new traffic needs its labels delivered
                # again (they live in the log), and new labels or a new model need a new monitoring run
                "label": [self.dir("simulate") / "stage.json", self.cfg.simulate.labelled],
                "monitor": [
                    package,
                    self.dir("label") / "stage.json",
                    self.composed(*self.cfg.train, *self.cfg.monitor),
                ],
            }
            if not all(self.up_to_date(name, inputs) for name, inputs in served.items()):
                self.start_service()  # the serving stages share one running service
            self.stage("loadtest", self.loadtest, inputs=served["loadtest"])
            self.stage("simulate", self.simulate, inputs=served["simulate"])
            self.stage("label", self.label, inputs=served["label"])
            self.stage("monitor", self.monitor, inputs=served["monitor"])
        finally:
            self.stop_service()
        self.stage("report", self.report, inputs=[self.dir(s) / "stage.json" for s in self.STAGES[:-1]])
        return json.loads((self.dir("report") / "stage.json").read_text())

    # ------------------------------------------------------------------ stages
    def validate_data(self, d: Path) -> dict:
        self.cli("data", d, "scopeml.cli.data", *self.hydra_args, f"hydra.run.dir={d}", *self.cfg.train, ok=(0,))
        return {"report": str(d / "report.html")}

    def sweep(self, d: Path) -> dict:
        self.cli(
            "sweep",
            d,
            "scopeml.cli.train",
            "-m",
            *self.hydra_args,
            f"hydra.sweep.dir={d}",
            *self.cfg.train,
            *self.cfg.sweep,
            ok=(0,),
        )
        return {"summary": str(d / "sweep_summary.md")}

    def select(self, d: Path) -> dict:
        self.cli("select", d, "scopeml.cli.select", str(self.dir("sweep")), "--out", str(d / "selection.json"), ok=(0,))
        return {"selection": str(d / "selection.json")}

    def package(self, d: Path) -> dict:
        out = self.cli(
            "package",
            d,
            "scopeml.cli.package",
            str(self.dir("select") / "selection.json"),
            *(["--config-dir", self.config_dir] if self.config_dir else []),
            ok=(0,),
        )
        tag = out.strip().splitlines()[-1]
        (d / "package.json").write_text(json.dumps({"tag": tag}))
        return {"tag": tag}

    def loadtest(self, d: Path) -> dict:
        lt = self.cfg.loadtest
        # exit 1 (CHECK_FAILED) is a missed latency or throughput target: reported, not a failed stage
        code = self.cli(
            "loadtest",
            d,
            "scopeml.cli.loadtest",
            "--url",
            self.server.url,
            "--out",
            str(d),
            "--duration",
            str(lt.duration),
            "--concurrency",
            *map(str, lt.concurrency),
            ok=(ExitCode.OK, ExitCode.CHECK_FAILED),
            want_code=True,
        )
        return {"scorecard": str(d / "scorecard.json"), "targets_met": code == ExitCode.OK}

    def simulate(self, d: Path) -> dict:
        sim = self.cfg.simulate
        self.cli(
            "simulate",
            d,
            "scopeml.cli.simulate",
            *sim.scenarios,
            "--url",
            self.server.url,
            "--out",
            str(d),
            "--clips",
            str(sim.clips),
            ok=(0,),
        )
        return {"simulation": str(d / "simulation.json")}

    def label(self, d: Path) -> dict:
        delivered = {}
        for scenario in self.cfg.simulate.labelled:
            self.cli(
                "label",
                d,
                "scopeml.cli.label",
                str(self.dir("simulate") / f"{scenario}_labels.csv"),
                "--log",
                self.env["SCOPEML_PREDICTION_LOG"],
                ok=(0,),
            )
            delivered[scenario] = True
        (d / "labels.json").write_text(json.dumps(delivered))
        return {"labelled": sorted(delivered)}

    def monitor(self, d: Path) -> dict:
        tag = json.loads((self.dir("package") / "package.json").read_text())["tag"]
        # exit 1 (CHECK_FAILED) is the monitor doing its job (an alert on drifted traffic), not a failed stage
        code = self.cli(
            "monitor",
            d,
            "scopeml.cli.monitor",
            f"hydra.run.dir={d}",
            f"monitor.log={self.env['SCOPEML_PREDICTION_LOG']}",
            f"monitor.model={tag}",
            *self.cfg.train,
            *self.cfg.monitor,
            ok=(ExitCode.OK, ExitCode.CHECK_FAILED),
            want_code=True,
        )
        return {"summary": str(d / "summary.json"), "alerts": code == ExitCode.CHECK_FAILED}

    def report(self, d: Path) -> dict:
        from scopeml.lifecycle.report import write_report

        html, md = write_report(self, d)
        return {"html": str(html), "markdown": str(md)}

    # ------------------------------------------------------------------ machinery
    def stage(self, name: str, fn, inputs: list) -> None:
        d = self.dir(name)
        number = f"[{self.STAGES.index(name) + 1}/{len(self.STAGES)}]"
        if self.up_to_date(name, inputs):
            self.say(f"{number} {name}: inputs unchanged, skipped")
            return
        d.mkdir(parents=True, exist_ok=True)
        self.say(f"{number} {name} ...")
        started = time.perf_counter()
        (d / "stage.json").unlink(missing_ok=True)  # a half-run stage never looks done
        result = fn(d)
        record = {
            "stage": name,
            "inputs": _fingerprint(inputs),
            "seconds": time.perf_counter() - started,
            "result": result,
        }
        (d / "stage.json").write_text(json.dumps(record, indent=2, default=str))
        self.say(f"{number} {name}: done in {record['seconds']:.1f} s")

    def up_to_date(self, name: str, inputs: list) -> bool:
        if self.STAGES.index(name) >= self.forced_from:
            return False
        path = self.dir(name) / "stage.json"
        try:
            return json.loads(path.read_text())["inputs"] == _fingerprint(inputs)
        except (OSError, ValueError, KeyError):
            return False

    def cli(self, stage: str, d: Path, module: str, *args: str, ok=(0,), want_code: bool = False):
        log = d / f"{stage}.log"
        with open(log, "w") as f:
            proc = subprocess.run(
                [sys.executable, "-m", module, *args], env=self.env, stdout=subprocess.PIPE, stderr=f, text=True
            )
            f.write(proc.stdout)
        if proc.returncode not in ok:
            tail = log.read_text().strip().splitlines()[-8:]
            raise StageError(stage, f"`{module}` exited {proc.returncode}:\n    " + "\n    ".join(tail), log)
        return proc.returncode if want_code else proc.stdout

    def start_service(self) -> None:
        from scopeml.lifecycle.server import LocalServer

        self.dir("serve").mkdir(parents=True, exist_ok=True)
        self.say(f"[5/{len(self.STAGES)}] serve: starting bentoml serve ...")
        self.server = LocalServer(self.env, self.dir("serve") / "server.log")
        (self.dir("serve") / "stage.json").write_text(json.dumps({"stage": "serve", "url": self.server.url}))
        self.say(f"[5/{len(self.STAGES)}] serve: ready at {self.server.url}")

    def stop_service(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
            self.say("service stopped")

    def say(self, message: str) -> None:
        if self.console is not None:
            self.console.print(message)


def _fingerprint(inputs: list) -> str:
    import hashlib

    h = hashlib.sha256()
    for item in inputs:
        if isinstance(item, Path):
            h.update(item.read_bytes() if item.exists() else b"<missing>")
        else:
            h.update(json.dumps(item, sort_keys=True, default=str).encode())
    return h.hexdigest()


def run_lifecycle(
    config: str, out: str | None = None, config_dir: str | None = None, force: Iterable[str] = ()
) -> bool:
    """scopeml-lifecycle's work. Returns False when a stage failed (named, with its log; the earlier stages'
    artifacts stay usable); raises ConfigError for a bad lifecycle config."""
    from rich.console import Console

    console = Console(stderr=True)
    cfg = load_lifecycle(config, {"out": out} if out else None, config_dir=config_dir)
    started = time.perf_counter()
    try:
        Lifecycle(cfg, set(force), console, config_dir=config_dir).run()
    except StageError as exc:
        console.print(f"[red]scopeml-lifecycle: {exc}[/]\nArtifacts of the stages before it are in {cfg.out}.")
        return False
    report = Path(cfg.out).resolve() / "10_report"
    console.print(f"lifecycle finished in {time.perf_counter() - started:.0f} s; report: {report / 'report.html'}")
    return True
