"""deploy.vad: silero-vad (the default) and the energy gate find spoken words between silences, say nothing
on silence, and their settings are checked, naming the key."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from scopeml.config import ConfigError, load
from scopeml.config.paths import compose
from scopeml.data import espeak
from scopeml.data.audio import resample
from scopeml.serving.vad import EnergyVAD, SileroVAD, from_settings

SR = 16000
# of the word's first/last audible sample: both pad 60-80 ms by design, and silero lags a frame or two
TOLERANCE_S = 0.2


def spoken(words: list[str], gap_s: float = 0.8, sr: int = SR) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Words (eSpeak NG, two voices) joined by silence, and where each word's audible part lies, in seconds."""
    parts, truth, at = [np.zeros(int(gap_s * sr), np.float32)], [], gap_s
    for i, w in enumerate(words):
        x = resample(espeak.synthesize(w, voice=("en+m3", "en+f2")[i % 2]), espeak.sample_rate(), sr)
        audible = np.flatnonzero(np.abs(x) > 0.02 * np.abs(x).max())
        truth.append((at + audible[0] / sr, at + (audible[-1] + 1) / sr))
        parts += [x, np.zeros(int(gap_s * sr), np.float32)]
        at += (len(x) + int(gap_s * sr)) / sr
    return np.concatenate(parts), truth


VADS = {"silero": SileroVAD, "energy": EnergyVAD}


@pytest.mark.parametrize("name", VADS)
def test_silence_and_faint_hiss_give_no_segments(name):
    vad = VADS[name]()
    assert vad.segments(np.zeros(3 * SR, np.float32), SR) == []
    hiss = (0.001 * np.random.default_rng(0).standard_normal(3 * SR)).astype(np.float32)  # -60 dBFS
    assert vad.segments(hiss, SR) == []
    assert vad.segments(np.zeros(10, np.float32), SR) == []


@pytest.mark.parametrize("name", VADS)
@pytest.mark.parametrize("sr", [16000, 8000, 22050])  # silero's two rates, and one it is resampled from
def test_words_between_silences_give_one_segment_each(name, sr):
    audio, truth = spoken(["left", "seven", "stop"], sr=sr)
    found = VADS[name]().segments(audio, sr)
    assert len(found) == len(truth), (found, truth)
    for (a, b), (start, end) in zip(found, truth):
        assert 0 <= a < b <= len(audio)
        assert abs(a / sr - start) <= TOLERANCE_S and abs(b / sr - end) <= TOLERANCE_S, (a / sr, b / sr, start, end)


def test_silero_finds_speech_the_energy_gate_misses_under_loud_noise():
    """The reason silero is the default: at 0 dB SNR the energy gate's relative threshold sees only noise."""
    audio, truth = spoken(["one", "two", "three"])
    rng = np.random.default_rng(1)
    speech_power = np.mean(np.concatenate([audio[int(a * SR) : int(b * SR)] for a, b in truth]) ** 2)
    noisy = (audio + np.sqrt(speech_power) * rng.standard_normal(len(audio))).astype(np.float32)
    assert len(SileroVAD().segments(noisy, SR)) == 3
    assert len(EnergyVAD().segments(noisy, SR)) != 3


def test_settings_reach_the_detector_and_round_trip():
    vad = from_settings({"_target_": "scopeml.serving.vad.SileroVAD", "threshold": 0.7, "min_silence_ms": 300})
    assert isinstance(vad, SileroVAD) and vad.threshold == 0.7 and vad.min_silence_ms == 300
    assert from_settings(vad.settings()).settings() == vad.settings()
    assert isinstance(from_settings(None), SileroVAD)  # a bundle packaged before deploy.vad existed
    legacy = from_settings({"floor_dbfs": -40.0, "min_gap_ms": 200.0})  # an edge.json of format 1
    assert isinstance(legacy, EnergyVAD) and legacy.floor_dbfs == -40.0 and legacy.min_silence_ms == 200.0


def test_a_higher_threshold_needs_more_confidence():
    audio, _ = spoken(["go"])
    noisy = (audio + 0.05 * np.random.default_rng(2).standard_normal(len(audio))).astype(np.float32)
    assert len(SileroVAD(threshold=0.5).segments(noisy, SR)) >= len(SileroVAD(threshold=0.99).segments(noisy, SR))


def test_the_default_is_silero_and_energy_is_one_override():
    assert load(compose("config", [])).deploy.vad == {"_target_": "scopeml.serving.vad.SileroVAD"}
    cfg = load(compose("config", ["deploy/vad=energy", "+deploy.vad.min_silence_ms=300"]))
    assert cfg.deploy.vad == {"_target_": "scopeml.serving.vad.EnergyVAD", "min_silence_ms": 300}
    assert load(compose("config", ["deploy=edge", "+deploy.vad.threshold=0.6"])).deploy.vad["threshold"] == 0.6


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (["+deploy.vad.threshold=1.5"], "deploy.vad.threshold: must be between 0 and 1"),
        (["+deploy.vad.threshold=0"], "deploy.vad.threshold: must be between 0 and 1"),
        (["+deploy.vad.min_speech_ms=-5"], "deploy.vad.min_speech_ms: must be >= 0"),
        (["deploy/vad=energy", "+deploy.vad.frame_ms=0"], "deploy.vad.frame_ms: must be > 0"),
        (["+deploy.vad.treshold=0.6"], "deploy.vad.treshold: unknown keyword for scopeml.serving.vad.SileroVAD"),
        (["deploy/vad=energy", "+deploy.vad.threshold=0.6"], "deploy.vad.threshold: unknown keyword"),
        (["+deploy.vad.threshold=high"], "deploy.vad.threshold: expected float"),
    ],
)
def test_a_bad_setting_names_its_key(overrides, expected):
    with pytest.raises(ConfigError) as err:
        load(compose("config", overrides))
    assert expected in str(err.value)


def test_a_bad_setting_from_a_manifest_names_it():
    with pytest.raises(ValueError, match=r"edge.json vad.threshold: must be between 0 and 1"):
        from_settings({"_target_": "scopeml.serving.vad.SileroVAD", "threshold": 2}, key="edge.json vad")
    with pytest.raises(ValueError, match=r"deploy.vad._target_: cannot import 'nowhere.VAD'"):
        from_settings({"_target_": "nowhere.VAD"})


def test_without_silero_installed_the_runtime_says_what_to_do(monkeypatch):
    monkeypatch.setitem(sys.modules, "silero_vad", None)  # as on a device runtime without the package
    with pytest.raises(ImportError, match=r"silero-vad package is not installed.*deploy/vad=energy"):
        SileroVAD().load()


def test_a_users_own_detector_travels_in_the_bundle(tiny_run, tmp_path, monkeypatch):
    """A deploy.vad from the user's folder (a package holding nothing else) is carried like their network, so
    the server builds it with no PYTHONPATH (served end to end in tests/test_example_project.py)."""
    from scopeml.serving.bundle import CODE_DIR, write_bundle

    (tmp_path / "src" / "my_gates").mkdir(parents=True)
    source = "class Gate:\n    def segments(self, samples, sr):\n        return [(0, len(samples))]\n"
    (tmp_path / "src" / "my_gates" / "__init__.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    info = write_bundle(tiny_run, tmp_path / "bundle", {"vad": {"_target_": "my_gates.Gate"}})
    assert info["code"] == ["my_gates"]
    assert (tmp_path / "bundle" / CODE_DIR / "my_gates" / "__init__.py").read_text() == source


def test_a_users_detector_that_refuses_its_settings_is_named(monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples" / "sound_events"))
    with pytest.raises(ValueError, match=r"^deploy\.vad: sound_events\.gate\.LoudnessGate refused .*floor_dbfs"):
        from_settings({"_target_": "sound_events.gate.LoudnessGate", "floor_dbfs": 3.0})
    assert from_settings({"_target_": "sound_events.gate.LoudnessGate"}).settings()["floor_dbfs"] == -40.0
