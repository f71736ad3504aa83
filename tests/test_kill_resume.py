"""Fault injection in the site and Dagon workflows (the global one: tests/test_pipeline.py).

``bayescal run`` is killed with SIGKILL at a seeded random moment inside each stage in turn --
the site posterior mid-chain included -- and run again each time. The final run directory holds
what an uninterrupted run gives, and no model run or chain step finished before a kill is made
again: member files keep their inode and mtime, and the resumed chain's HDF5 backend keeps the
steps it had.
"""

import json
import os
import signal
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bayescal.testing import write_toy_site_csv


def _site_config(folder: Path, name: str) -> Path:
    write_toy_site_csv(folder / "nee.csv")
    cfg = folder / "site.toml"
    cfg.write_text(textwrap.dedent(f"""
        [run]
        output = "{name}"
        seed = 5
        [model]
        kind = "python"
        entry_point = "bayescal.testing:ToySiteModel"
        options = {{start = "2001-01-01", end = "2003-12-31"}}
        [site]
        calibration_years = [2001, 2002]
        validation_years = [2003, 2003]
        discrepancy = "none"
        autocorrelation = false
        ml_evaluations = 80
        [[observations.products]]
        variable = "nee"
        format = "csv"
        file = "nee.csv"
        units = "gC m-2 d-1"
        [posterior]
        n_steps = 600
        max_steps = 600
        n_walkers = 8
        n_particles = 200
        [propagate]
        n_draws = 6
        """))
    return cfg


def _dagon_config(folder: Path, name: str) -> Path:
    cfg = folder / "dagon.toml"
    cfg.write_text(textwrap.dedent(f"""
        [run]
        output = "{name}"
        seed = 3
        workflow = "dagon"
        [model]
        n_cells = 20
        start = 2000
        end = 2002
        ramp_start = 1997
        [parameters]
        candidates = ["gamma_w", "beta2", "vmax[GRASS-C3]"]
        [observations]
        variables = ["gpp"]
        gcb_years = [2000, 2002]
        truth = {{gamma_w = 0.3}}
        [oat]
        top_k = 2
        [design]
        n_runs = 24
        batch_size = 2
        [emulator]
        eof_modes = 1
        network = [4, 4]
        [emulator_screen]
        n_points = 1000
        keep = 10
        refine_rounds = 1
        [propagate]
        table_years = [2000, 2002]
        """))
    return cfg


def _run(cli, cfg: Path, run_dir: Path, until: str):
    """``bayescal run`` up to stage ``until`` (the report is not under test here), a fresh child
    process of the ``cli`` fork server (tests/conftest.py)."""
    return cli("run", str(cfg), "--run-dir", str(run_dir), "--quiet", "--until", until)


def _member_files(run_dir: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(run_dir)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in run_dir.glob("**/members/member_*.nc")}


def _chain_steps(run_dir: Path) -> np.ndarray | None:
    """The site chain's stored steps (iteration, walkers, parameters), or None."""
    import h5py

    path = run_dir / "posterior" / "chain.h5"
    try:
        with h5py.File(path, "r") as f:
            g = f["mcmc"]
            return g["chain"][: g.attrs["iteration"]]
    except (OSError, KeyError):
        return None


def _kill_in_every_stage(cli, cfg: Path, run_dir: Path, stages: tuple[str, ...], seed: int) -> list[bool]:
    """SIGKILL a seeded random moment after each stage starts (``"stage/file"``: after that file
    of the stage appears); check nothing finished is redone."""
    rng = np.random.default_rng(seed)
    seen, steps, hit = {}, None, []
    for stage in stages:
        proc = _run(cli, cfg, run_dir, stages[-1])
        started = run_dir / (stage if "/" in stage else f"{stage}/started.json")
        stage = stage.split("/")[0]
        t0 = time.perf_counter()
        while not started.exists() and proc.poll() is None and time.perf_counter() - t0 < 240:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 1.0))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        hit.append(not (run_dir / stage / "stage.json").exists())
        now = _member_files(run_dir)
        for name, ident in seen.items():
            assert now.get(name) == ident, f"{name} was run again after the kill in {stage}"
        seen = now
        chain = _chain_steps(run_dir)
        if steps is not None and chain is not None:  # the chain's finished steps are kept, not redone
            assert chain.shape[0] >= steps.shape[0]
            np.testing.assert_array_equal(chain[: steps.shape[0]], steps)
        steps = chain if chain is not None else steps
    proc = _run(cli, cfg, run_dir, stages[-1])
    err, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    for name, ident in seen.items():
        assert _member_files(run_dir).get(name) == ident, f"{name} was run again"
    return hit


def _same(ref: Path, run: Path, files: tuple[str, ...], groups: tuple[str, ...] = ()) -> None:
    clock = ["time", "wall_time"]  # wall-clock seconds differ between any two runs
    for rel in files:
        xr.testing.assert_identical(xr.load_dataset(ref / rel).drop_vars(clock, errors="ignore"),
                                    xr.load_dataset(run / rel).drop_vars(clock, errors="ignore"))
    for group in groups:
        a = xr.load_dataset(ref / "posterior" / "posterior.nc", group=group)
        b = xr.load_dataset(run / "posterior" / "posterior.nc", group=group)
        xr.testing.assert_identical(a, b)
    assert set(_member_files(ref)) == set(_member_files(run))


@pytest.mark.slow
def test_site_workflow_killed_in_every_stage_mid_chain_included(tmp_path, cli):
    cfg = _site_config(tmp_path, "ref")
    proc = _run(cli, cfg, tmp_path / "ref", "propagate")
    err = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, err
    # the posterior stage twice: once at a random moment, once surely mid-chain (its chain begun)
    stages = ("optimize", "posterior", "posterior/chain.h5", "propagate")
    hit = _kill_in_every_stage(cli, cfg, tmp_path / "faults", stages, seed=23)
    assert sum(hit) >= 2, hit
    _same(tmp_path / "ref", tmp_path / "faults", ("optimize/history.nc", "propagate/bands.nc"),
          ("posterior", "sample_stats", "log_likelihood", "posterior_predictive"))
    np.testing.assert_array_equal(_chain_steps(tmp_path / "ref"), _chain_steps(tmp_path / "faults"))
    # the chain's runs are counted, not stored: over every invocation (steps redone after a kill
    # count again; a killed invocation's last 0.2 s of runs may be missing)
    ref, faults = (json.loads((tmp_path / r / "posterior" / "evaluations.json").read_text())["runs"]
                   for r in ("ref", "faults"))
    assert 0.8 * ref <= faults <= 1.5 * ref, (ref, faults)
    # and the stage's record, resumed, counts them too (it counted its last invocation's)
    ref, faults = (json.loads((tmp_path / r / "posterior" / "stage.json").read_text())["runs"]
                   for r in ("ref", "faults"))
    assert 0.8 * ref <= faults <= 1.5 * ref, (ref, faults)


@pytest.mark.slow
def test_dagon_workflow_killed_in_every_stage(tmp_path, cli):
    cfg = _dagon_config(tmp_path, "ref")
    proc = _run(cli, cfg, tmp_path / "ref", "emulator_screen")
    err = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, err
    hit = _kill_in_every_stage(cli, cfg, tmp_path / "faults", ("oat", "design", "emulate", "emulator_screen"),
                               seed=29)
    assert sum(hit) >= 2, hit
    _same(tmp_path / "ref", tmp_path / "faults",
          ("oat/ranking.nc", "emulate/eof.nc", "emulator_screen/screen.nc"))
    # every run of this workflow goes through a store: the stage records, each stage resumed over
    # kills, count them all, as the uninterrupted run's do
    from bayescal.workflow.rundir import RunDir

    runs = {r.name: r.runs for r in RunDir(tmp_path / "faults").records()}
    assert runs == {r.name: r.runs for r in RunDir(tmp_path / "ref").records()}
    assert sum(runs.values()) == len(_member_files(tmp_path / "faults"))
