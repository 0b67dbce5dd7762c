"""The warm server the tests start commands from (tests/warm_python.py) behaves as a fresh `python -m` does."""

from __future__ import annotations

import json
import subprocess

import pytest
from conftest import ROOT, run_cli

PROBE = """
import atexit, json, os, sys
atexit.register(lambda: print("atexit ran", file=sys.stderr))
print(json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "path": sys.path[:2], "ppid": os.getppid(),
                  "env": os.environ.get("PROBE_VALUE"), "main": __name__, "spec": __spec__.name}))
if sys.argv[1] == "raise":
    raise ValueError("planted")
if sys.argv[1] == "sleep":
    import time; time.sleep(60)
sys.exit(int(sys.argv[1]))
"""


@pytest.fixture
def probe_env(tmp_path) -> dict:
    (tmp_path / "scopeml_probe.py").write_text(PROBE)
    return {"PYTHONPATH": str(tmp_path), "PROBE_VALUE": "from the caller"}


@pytest.mark.parametrize("outcome", ["0", "3", "raise"])
def test_a_forked_command_reports_what_a_fresh_one_does(warm_python, probe_env, outcome):
    warm = run_cli("scopeml_probe", outcome, env=probe_env)
    fresh = run_cli("scopeml_probe", outcome, env=probe_env, fresh=True)
    seen_warm, seen_fresh = json.loads(warm.stdout), json.loads(fresh.stdout)
    assert seen_warm["ppid"] == warm_python.proc.pid != seen_fresh["ppid"]  # it was served warm
    del seen_warm["ppid"], seen_fresh["ppid"]
    assert (
        seen_warm
        == seen_fresh
        == {
            "argv": [outcome],
            "cwd": str(ROOT),
            "path": [str(ROOT), probe_env["PYTHONPATH"]],
            "env": "from the caller",
            "main": "__main__",
            "spec": "scopeml_probe",
        }
    )
    assert warm.returncode == fresh.returncode == {"0": 0, "3": 3, "raise": 1}[outcome]
    assert warm.stderr.endswith("atexit ran\n") and fresh.stderr.endswith("atexit ran\n")
    if outcome == "raise":
        assert "ValueError: planted" in warm.stderr and "Traceback" in warm.stderr


def test_a_command_past_its_timeout_is_killed(probe_env):
    with pytest.raises(subprocess.TimeoutExpired):
        run_cli("scopeml_probe", "sleep", env=probe_env, timeout=2)
    assert run_cli("scopeml_probe", "0", env=probe_env).returncode == 0  # and the server goes on


def test_a_command_that_changes_a_start_up_setting_gets_a_fresh_interpreter(warm_python, probe_env):
    with pytest.warns(UserWarning, match="changes OMP_NUM_THREADS"):
        proc = run_cli("scopeml_probe", "0", env={**probe_env, "OMP_NUM_THREADS": "7"})
    assert proc.returncode == 0 and json.loads(proc.stdout)["ppid"] != warm_python.proc.pid
