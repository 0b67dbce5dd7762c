"""scopeml-select's work: pick the model to ship from finished training runs.

Reads the run folders that scopeml-train leaves (one run, or a sweep folder of runs: discover.py),
rejects every run that did not finish or missed an offline scoping target (gates.py), ranks the
rest by the primary metric on the validation split or the CV mean, never the test split (rank.py),
and writes selection.json (its layout is
scopeml.run_files.Selection): the winner's checkpoint and files, the ranking, and why each rejected
run was rejected. explain.py prints it for people. Nothing here imports torch: it starts fast.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class SelectError(Exception):
    """A usage problem (nothing to select from, an unknown metric): bad input, exit code 2."""


def select(paths: list[Path], out: Path | None = None, primary: str | None = None, require: Iterable[str] = ()):
    """Select from the runs under `paths`, write selection.json to `out` and print the ranking.

    Returns ExitCode.CHECK_FAILED when no run passed the gates (selection.json is written all the same,
    with "selected": null and every run's reasons); raises SelectError on a usage problem.
    """
    from scopeml.run_files import SELECTION_FILE, write_selection
    from scopeml.selection.discover import default_out
    from scopeml.selection.explain import print_no_winner, print_report
    from scopeml.selection.rank import select_runs
    from scopeml.stage import ExitCode

    selection = select_runs(paths, primary=primary, require=require)
    out = out if out is not None else default_out(paths)
    if out.is_dir():
        out = out / SELECTION_FILE
    out = write_selection(out.resolve(), selection)
    print_report(selection, out)
    if selection.selected is None:
        print_no_winner(selection)
        return ExitCode.CHECK_FAILED
    return ExitCode.OK
