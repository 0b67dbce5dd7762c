"""Words that are not keywords: the 12-class default's `unknown` and `silence` classes, the metrics that judge
them (keyword recall, false-accept rate), the synthesized recipe that makes their clips, and the
out-of-vocabulary monitoring scenario."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scopeml.config import ConfigError
from scopeml.config.schema import ScenarioConfig
from scopeml.data.preprocess import measure
from scopeml.data.synth import SynthKeywords
from scopeml.metrics import category_indices, classification_metrics

CLASSES = ["yes", "no", "unknown", "silence"]


def test_category_classes_are_the_ones_that_name_a_kind_of_clip():
    assert category_indices(CLASSES) == [2, 3]
    assert category_indices(["yes", "no", "_background_noise_"]) == [2]
    assert category_indices(["zero", "one"]) == []


def test_keyword_recall_and_false_accept_rate_count_what_they_say():
    # 4 keyword clips: 3 right, 1 wrong keyword. 5 category clips: unknown->yes and silence->no are false
    # accepts; unknown->silence is a confusion between two rejections, not a false accept.
    y_true = np.array([0, 0, 1, 1, 2, 2, 2, 3, 3])
    y_pred = np.array([0, 0, 1, 0, 2, 0, 3, 3, 1])
    m = classification_metrics(y_true, y_pred, 4, category_indices(CLASSES))
    assert m["keyword_recall"] == pytest.approx(3 / 4)
    assert m["false_accept_rate"] == pytest.approx(2 / 5)
    assert m["accuracy"] == pytest.approx(5 / 9)
    # without category classes neither is defined, and none is reported
    assert "false_accept_rate" not in classification_metrics(y_true % 2, y_pred % 2, 2)
    # a split with no category clip cannot measure false accepts: NaN, not 0
    only_keywords = classification_metrics(np.array([0, 1]), np.array([0, 2]), 4, [2, 3])
    assert math.isnan(only_keywords["false_accept_rate"]) and only_keywords["keyword_recall"] == 0.5


def source(**kw) -> SynthKeywords:
    args = dict(voices=["en+m1", "en+f1"], pitches=[50], rates=[175], progress=False)
    return SynthKeywords(**{**args, **kw})


def test_the_synthesized_recipe_says_other_words_for_unknown_and_no_word_for_silence():
    words = ["yet", "know", "cup", "dawn"]
    clips = list(source(words=CLASSES, unknown_words=words, unknown_clips=2).clips())
    by_label = {label: [c for c in clips if c["label"] == label] for label in CLASSES}
    assert [len(by_label[label]) for label in CLASSES] == [2, 2, 4, 2]  # 2 voices; unknown_clips=2 each
    assert len({c["clip_id"] for c in clips}) == len(clips)
    unknown = by_label["unknown"]
    assert all(c["spoken"] in words for c in unknown)
    for voice in ("en+m1", "en+f1"):  # one voice does not repeat a word until it has said them all
        said = [c["spoken"] for c in unknown if c["voice"] == voice]
        assert len(set(said)) == len(said)
    assert all(c["spoken"] == c["label"] for c in by_label["yes"] + by_label["no"])
    for c in by_label["silence"]:
        assert c["spoken"] == ""
        stats = measure(c["samples"], c["sample_rate"])
        # background noise, not digital zeros (which the data checks flag as silent), within silence_dbfs
        assert not stats["silent"] and -56 <= stats["rms_dbfs"] <= -24
    # same config, same audio
    again = list(source(words=CLASSES, unknown_words=words, unknown_clips=2).clips())
    assert all(np.array_equal(a["samples"], b["samples"]) for a, b in zip(clips, again))


@pytest.mark.parametrize(
    "kw,key",
    [
        ({"words": CLASSES}, "unknown_words"),  # `unknown` with nothing to say
        ({"words": CLASSES, "unknown_words": ["yes", "yet"]}, "unknown_words"),  # a keyword cannot be unknown
        ({"words": CLASSES, "unknown_words": ["yet"], "unknown_clips": 0}, "unknown_clips"),
        ({"words": CLASSES, "unknown_words": ["yet"], "silence_dbfs": [-20, -40]}, "silence_dbfs"),
    ],
)
def test_bad_unknown_settings_are_refused_naming_the_key(kw, key):
    with pytest.raises(ValueError, match=f"{key}: "):
        source(**kw)


def test_out_of_vocabulary_traffic_needs_a_model_with_its_true_class(tmp_path):
    from scopeml.monitoring.simulate import load_scenario, run_scenario

    scenario = load_scenario("out_of_vocabulary")
    assert scenario.true_label == "unknown" and "three" in scenario.words and "unknown" not in scenario.words
    ten = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
    with pytest.raises(ConfigError, match="out_of_vocabulary.true_label"):
        run_scenario(scenario, None, tmp_path, tmp_path / "batch", ten, tmp_path)  # before any clip is made
    assert not (tmp_path / "batch").exists()


def test_only_a_synthesized_scenario_says_words_of_its_own():
    problems = ScenarioConfig(name="x", source="fsdd", fsdd_root="/x", fsdd_speakers=["theo"], words=["a"]).check()
    assert ("words", "only a synthesized scenario says words of its own") in problems
