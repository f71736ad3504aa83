"""``bayescal check`` on a run directory this user may only read (a colleague's, a finished
project's): it shows the plan and says that ``run`` would be refused there; ``run`` refuses."""

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bayescal.cli import main
from bayescal.testing import write_toy_site_csv

_CONFIG = """
[run]
output = "run"
seed = 3
[model]
kind = "python"
entry_point = "bayescal.testing:ToySiteModel"
options = {start = "2001-01-01", end = "2003-12-31"}
[site]
calibration_years = [2001, 2002]
validation_years = [2003, 2003]
discrepancy = "none"
autocorrelation = false
ml_evaluations = 40
[[observations.products]]
variable = "nee"
format = "csv"
file = "nee.csv"
units = "gC m-2 d-1"
"""


def _as_a_user(*args: str) -> subprocess.CompletedProcess:
    """``bayescal *args`` as a user file permissions apply to: root without the capabilities that
    bypass them (``setpriv``), or this user."""
    cmd = [sys.executable, "-m", "bayescal", *args]
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("root, and no setpriv to drop the capabilities that bypass file permissions")
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _read_only(folder: Path) -> None:
    for p in (folder, *folder.rglob("*")):
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def test_check_shows_the_plan_of_a_read_only_run_directory_and_run_refuses(tmp_path):
    write_toy_site_csv(tmp_path / "nee.csv")
    cfg = tmp_path / "site.toml"
    cfg.write_text(_CONFIG)
    assert main(["run", str(cfg), "--quiet", "--until", "optimize"]) == 0
    run = tmp_path / "run"
    # its copy of the config says where its relative paths start (nee.csv is not in run/)
    head, tail = (run / "config.toml").read_text().split("\n", 2)[:2], (run / "config.toml").read_text()
    assert str(cfg.resolve()) in head[0] and head[1].startswith(f"# relative to {tmp_path.resolve()} ")
    assert tail.endswith(_CONFIG)
    before = sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*"))
    _read_only(run)
    try:
        checked = _as_a_user("check", str(cfg), "--no-model-run")
        assert checked.returncode == 0, checked.stderr
        out = checked.stdout
        assert "read-only for this user: 'bayescal run' would be refused there" in out, out
        plan = {line.split()[0]: line.split(None, 1)[1] for line in out.splitlines()
                if line.startswith("  ") and not line.startswith("   ")}
        assert plan["optimize"].startswith("reused") and plan["posterior"].startswith("run"), plan
        ran = _as_a_user("run", str(cfg), "--quiet")
        assert ran.returncode == 2 and "not writable" in ran.stderr and "Traceback" not in ran.stderr
        assert sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*")) == before
    finally:
        for p in (run, *run.rglob("*")):
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
