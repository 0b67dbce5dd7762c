"""scopeml-simulate: send production scenarios to the running service, keeping the true labels for later.

    scopeml-simulate in_distribution younger noisy --url http://127.0.0.1:3000 --out outputs/simulate
    scopeml-label outputs/simulate/younger_labels.csv          # labels "arrive" whenever you say so

Scenarios are conf/simulate/<name>.yaml (or a path to a YAML file). Synthesized scenarios speak
the model's classes with voices it never trained on (its validation split, the population of the
monitoring reference) and, unless a scenario says
otherwise, the pitches, rates, noise and levels of its training data. With --batch-dir the clips
are written as WAV files for scopeml-batch instead of being sent.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from scopeml.config.paths import conf_dir
from scopeml.config.schema import ScenarioConfig

CONF = conf_dir() / "simulate"


class SimulateError(ValueError):
    """No service to send the scenarios to at the URL given."""


def load_scenario(name: str) -> ScenarioConfig:
    from omegaconf import OmegaConf

    from scopeml.config import ConfigError, _validate, to_plain

    path = Path(name) if name.endswith((".yaml", ".yml")) else CONF / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in CONF.glob("*.yaml"))
        raise ConfigError([f"scenario {name!r}: no {path} (known: {known})"])
    return _validate.parse(ScenarioConfig, to_plain(OmegaConf.load(path)), f"simulate.{path.stem}")


def model_data(run_dir: Path):
    """The served model's data config and the voices of its validation split.

    Those voices were never trained on, and they are the population of the monitoring
    reference (the validation split): traffic from them is in-distribution by definition.
    """
    import yaml

    from scopeml.config import load
    from scopeml.data import espeak
    from scopeml.data.synth import voice_family

    config = load(yaml.safe_load((run_dir / "config.yaml").read_text()))
    val_speakers = set(json.loads((run_dir / "data_fingerprint.json").read_text())["splits"]["val"]["speakers"])
    synth = _synth_source(config.data)
    excluded = set(synth.exclude_voices) if synth else set()
    voices = [v for v in espeak.list_voices("en") if voice_family(v) in val_speakers and v not in excluded]
    return config, voices


def _synth_source(data):
    """The model's synthesized training data (a SynthKeywords source), or None when it trained on other data."""
    from scopeml.data.synth import from_source

    return from_source(getattr(data, "source", None))


def clips_for(scenario: ScenarioConfig, classes: list[str], run_dir: Path) -> list[tuple[np.ndarray, int, str]]:
    """(samples, sample_rate, true label) for every clip of the scenario, deterministic in its seed."""
    rng = np.random.default_rng(scenario.seed)
    if scenario.source == "fsdd":
        from scopeml.data.audio import read_audio

        root = Path(scenario.fsdd_root).expanduser()
        files = sorted(p for p in (root / "recordings").glob("*.wav") if p.name.split("_")[1] in scenario.fsdd_speakers)
        digits = "zero one two three four five six seven eight nine".split()
        picked = [files[i] for i in rng.permutation(len(files))[: scenario.clips]]
        out = []
        for p in picked:
            samples, sr = read_audio(p)
            out.append((samples[0], sr, digits[int(p.name[0])]))
        return out
    from scopeml.data import espeak

    config, test_voices = model_data(run_dir)
    synth = _synth_source(config.data)
    if synth is None:
        from scopeml.config import ConfigError

        # A synthesized scenario borrows the voices, pitches, rates and levels of the model's own synthesized
        # training data; a model trained on other data has none to borrow.
        raise ConfigError(
            [
                f"simulate/{scenario.name}: a synthesized scenario needs a model trained on synthesized speech "
                f"(data.source: scopeml.data.synth.SynthKeywords); send your own production traffic instead"
            ]
        )
    voices = list(scenario.voices) or test_voices
    pitches = list(scenario.pitches) or synth.pitches
    rates = list(scenario.rates) or synth.rates
    words = list(scenario.words) or classes
    out = []
    for k in range(scenario.clips):
        word, voice = words[rng.integers(len(words))], voices[rng.integers(len(voices))]
        raw, _ = synth.speak(
            word,
            voice,
            int(rng.choice(pitches)),
            int(rng.choice(rates)),
            [scenario.seed, k],
            lead_silence_ms=scenario.lead_silence_ms,
            noise_snr_db=scenario.noise_snr_db,
            gain_db=scenario.gain_db,
        )
        out.append((raw, espeak.sample_rate(), word))
    return out


def wav(samples: np.ndarray, sr: int) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, samples, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def send(url: str, clips, concurrency: int = 4) -> list[dict]:
    import httpx

    def one(clip):
        samples, sr, _ = clip
        with httpx.Client(timeout=60) as http:
            r = http.post(f"{url}/classify", files={"audio": ("clip.wav", wav(samples, sr), "audio/wav")})
        return r.json() if r.status_code == 200 else {"error": r.status_code}

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, clips))


def run_scenario(
    scenario: ScenarioConfig, url: str | None, out: Path, batch_dir: Path | None, classes: list[str], run_dir: Path
) -> dict:
    import pandas as pd

    if scenario.true_label is not None and scenario.true_label not in classes:
        from scopeml.config import ConfigError

        raise ConfigError(
            [
                f"simulate/{scenario.name}.true_label: {scenario.true_label!r} is not a class of the served model "
                f"{classes}; out-of-vocabulary traffic needs a model with such a class (scoping=keywords)"
            ]
        )
    clips = clips_for(scenario, classes, run_dir)
    truth = [scenario.true_label or scenario.label_swap.get(label, label) for _, _, label in clips]
    if batch_dir is not None:
        folder = batch_dir / scenario.name
        folder.mkdir(parents=True, exist_ok=True)
        ids = []
        for k, (samples, sr, _) in enumerate(clips):
            (folder / f"{k:05d}.wav").write_bytes(wav(samples, sr))
            ids.append(f"batch:{scenario.name}/{k:05d}.wav")
        predicted = [None] * len(clips)
    else:
        responses = send(url, clips)
        ids = [r.get("request_id") for r in responses]
        predicted = [r.get("label") for r in responses]
    labels = pd.DataFrame({"request_id": ids, "label": truth})
    labels = labels[labels["request_id"].notna()]
    out.mkdir(parents=True, exist_ok=True)
    labels.to_csv(out / f"{scenario.name}_labels.csv", index=False)
    answered = [(p, t) for p, t in zip(predicted, truth) if p is not None]
    return {
        "scenario": scenario.name,
        "clips": len(clips),
        "answered": len(answered),
        "accuracy": float(np.mean([p == t for p, t in answered])) if answered else None,
        "labels_file": str(out / f"{scenario.name}_labels.csv"),
    }


def simulate(
    scenarios: list[str], url: str, out: Path, batch_dir: Path | None = None, clips: int | None = None
) -> list[dict]:
    """scopeml-simulate's work: load every scenario first (a bad one fails before any traffic), ask the service
    which model it serves, then send (or, with batch_dir, write) each scenario's clips. Writes simulation.json."""
    import httpx

    loaded = [load_scenario(s) for s in scenarios]
    try:
        info = httpx.post(f"{url}/info", json={}, timeout=10).json()
    except httpx.HTTPError as exc:
        raise SimulateError(f"no service at {url} ({exc}); start it with `bentoml serve`") from None
    results = []
    for scenario in loaded:
        if clips:
            scenario.clips = clips
        send_to = None if batch_dir else url
        results.append(run_scenario(scenario, send_to, out, batch_dir, info["classes"], Path(info["run_dir"])))
        r = results[-1]
        r["description"] = scenario.description  # what the scenario simulates, for the report
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        print(
            f"{r['scenario']:<18} {r['answered']:>5}/{r['clips']} answered   accuracy {acc}   "
            f"labels: {r['labels_file']}"
        )
    (out / "simulation.json").write_text(json.dumps(results, indent=2))
    return results
