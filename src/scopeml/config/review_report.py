"""The config review as text (a terminal) or markdown (a pull-request comment)."""

from __future__ import annotations

from dataclasses import dataclass

from scopeml.config.composer import display
from scopeml.config.diff import Outcome
from scopeml.config.invalidation import STAGES, RunsImpact, StageImpact
from scopeml.config.key_groups import KeyLine, config_events, file_changes
from scopeml.config.snapshot import describe, fmt

NAMES_SHOWN = 8  # configs named per line before "and N more"
RUNS_SHOWN = 5
MARKER = "<!-- scopeml-config-review -->"  # lets CI find and update its own comment


@dataclass
class Review:
    old_name: str
    new_name: str
    outcomes: list[Outcome]
    lines: list[KeyLine]
    stages: list[StageImpact]
    runs: RunsImpact | None
    seconds: float
    composes: int = 0  # Hydra compositions it took

    @property
    def changed_configs(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.counted]

    @property
    def changed(self) -> bool:
        return bool(self.changed_configs)

    def summary(self) -> str:
        span = f"{self.old_name} -> {self.new_name}"
        if not self.changed:
            return f"no semantic changes ({span}, {len(self.outcomes)} configs, {self.seconds:.1f} s)"
        keys = len({line.change.key for line in self.lines}) + sum(len(o.changes) for o in file_changes(self.outcomes))
        configs = f"{len(self.changed_configs)} of {len(self.outcomes)} configs"
        what = f"{keys} changed key{'s' * (keys != 1)} in {configs}" if keys else f"{configs} changed"
        return f"{what} ({span}, {self.seconds:.1f} s)"


# --------------------------------------------------------------------------- text
def as_text(review: Review) -> str:
    out = [f"{describe(line.change)}  ({reach_text(line, str)}{follow_text(line, str)})" for line in review.lines]
    out += [f"{o.target.label}: {describe(c)}" for o in file_changes(review.outcomes) for c in o.changes]
    out += [event_text(o, review) for o in config_events(review.outcomes)]
    if review.changed and review.stages:
        out.append("lifecycle stages that would re-run:")
        out += [f"  {s.lifecycle}: {stage_text(s)}" for s in review.stages]
    if review.changed and review.runs is not None and review.runs.exists:
        out += runs_text(review.runs)
    out.append(review.summary())
    return "\n".join(out)


def reach_text(line: KeyLine, name) -> str:
    """`N of M configs`, with the exceptions named (or the configs, when they are the fewer)."""
    n, m, others = len(line.configs), len(line.holders), line.others
    if not others:
        return f"{n} of {m} configs"
    if len(others) <= n:
        return f"{n} of {m} configs; not in: {names(others, name)}"
    return f"{n} of {m} configs: {names(line.configs, name)}"


def follow_text(line: KeyLine, name) -> str:
    """`; followed by KEY, ...`: the keys that interpolate the changed one and change with it."""
    return f"; followed by {names(line.followers, name)}" if line.followers else ""


def names(labels: list[str], name) -> str:
    shown = ", ".join(name(label) for label in labels[:NAMES_SHOWN])
    return shown + (f" and {len(labels) - NAMES_SHOWN} more" if len(labels) > NAMES_SHOWN else "")


def event_text(o: Outcome, review: Review) -> str:
    label = o.target.label
    if o.status in ("added", "removed"):
        sign, where = ("+", review.new_name) if o.status == "added" else ("-", review.old_name)
        text = f"{sign} {label}: {'new config' if o.status == 'added' else 'removed config'} (only in {where})"
        if o.error:
            return f"{text}; {o.error}"
        if o.vs_config:
            text += "; vs config: " + ", ".join(describe(c) for c in o.vs_config[:5])
            text += f" and {len(o.vs_config) - 5} more" if len(o.vs_config) > 5 else ""
        return text
    if o.status == "now fails":
        return f"{label}: now fails ({o.error})"
    if o.status == "now composes":
        return f"{label}: now composes ({o.error})"
    return f"{label}: fails differently: {o.error}"


def stage_text(s: StageImpact) -> str:
    if s.status == "unchanged":
        return "nothing re-runs"
    if s.status == "added":
        return "new lifecycle config: every stage runs"
    if s.status == "removed":
        return "removed"
    if s.status == "fails":
        return f"does not load: {s.error}"
    which = f"all {len(STAGES)} stages" if len(s.reruns) == len(STAGES) else ", ".join(s.reruns)
    return f"re-runs from {s.first} ({which}): {s.triggers[s.first]}"


def runs_text(runs: RunsImpact) -> list[str]:
    head = f"recorded runs made with the old values: {len(runs.affected)} of {runs.scanned} in {display(runs.folder)}/"
    lines = [head] + [f"  {display(path)}  ({', '.join(keys)})" for path, keys in runs.affected[:RUNS_SHOWN]]
    if len(runs.affected) > RUNS_SHOWN:
        lines.append(f"  ... and {len(runs.affected) - RUNS_SHOWN} more")
    return lines


# --------------------------------------------------------------------------- markdown
def as_markdown(review: Review) -> str:
    out = [MARKER, f"### Config review: {code(review.old_name)} → {code(review.new_name)}", ""]
    if not review.changed:
        out.append(f"No semantic changes in the {len(review.outcomes)} configs.")
        return "\n".join(out) + "\n"
    out += [f"**{review.summary()}**", ""]
    if review.lines:
        followed = any(line.followers for line in review.lines)
        out += [
            "| key | old | new | configs | exceptions |" + (" followed by |" if followed else ""),
            "| --- | --- | --- | --- | --- |" + (" --- |" if followed else ""),
        ]
        for line in review.lines:
            c = line.change
            reach = f"{len(line.configs)} of {len(line.holders)}"
            row = f"| {code(c.key)} | {value(c.old)} | {value(c.new)} | {reach} | {exceptions_md(line)} |"
            out.append(row + (f" {names(line.followers, code)} |" if followed else ""))
        out.append("")
    files = file_changes(review.outcomes)
    if files:
        out += ["| file | key | old | new |", "| --- | --- | --- | --- |"]
        out += [
            f"| {code(o.target.label)} | {code(c.key)} | {value(c.old)} | {value(c.new)} |"
            for o in files
            for c in o.changes
        ]
        out.append("")
    events = config_events(review.outcomes)
    if events:
        out += ["Configs added, removed or (no longer) failing:", ""]
        out += [f"- {event_text(o, review)}".replace("|", "\\|") for o in events]
        out.append("")
    if review.stages:
        out += [
            "**Lifecycle stages that would re-run**",
            "",
            "| lifecycle | first stage | re-runs | because |",
            "| --- | --- | --- | --- |",
        ]
        for s in review.stages:
            first = code(s.first) if s.first else "—"
            reruns = (f"all {len(STAGES)}" if len(s.reruns) == len(STAGES) else ", ".join(s.reruns)) or stage_text(s)
            because = s.triggers.get(s.first, s.error)
            out.append(f"| {code(s.lifecycle)} | {first} | {cell(reruns)} | {cell(because)} |")
        out.append("")
    if review.runs is not None and review.runs.exists:
        runs = review.runs
        out.append(
            f"**Recorded runs made with the old values:** {len(runs.affected)} of {runs.scanned} "
            f"in {code(display(runs.folder) + '/')}"
        )
        out += [
            f"- {code(display(path))} ({', '.join(code(k) for k in keys)})" for path, keys in runs.affected[:RUNS_SHOWN]
        ]
        if len(runs.affected) > RUNS_SHOWN:
            out.append(f"- and {len(runs.affected) - RUNS_SHOWN} more")
        out.append("")
    out.append(f"<sub>scopeml-config diff: {review.composes} compositions, {review.seconds:.1f} s</sub>")
    return "\n".join(out) + "\n"


def exceptions_md(line: KeyLine) -> str:
    if not line.others:
        return ""
    if len(line.others) <= len(line.configs):
        return "not in: " + names(line.others, code)
    return "only: " + names(line.configs, code)


def value(v) -> str:
    return code(fmt(v)) if fmt(v) != "(absent)" else "*(absent)*"


def code(text: str) -> str:
    """Inline code that survives backticks in the text and pipes inside a table."""
    text = text.replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")
