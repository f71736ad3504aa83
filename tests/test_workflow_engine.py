"""The workflow engine: declared stage keys (each workflow reruns exactly the stages that read a
change), kept model runs, and a run directory that never hurts the user's files.

Each workflow runs once per module on a tiny config, with every stage's config reads recorded:
the test checks them against the declarations, then reruns copies of the run directory with one
change each and counts what reran and how many model runs it made.
"""

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayescal.cli import main
from bayescal.run.ensemble import EnsembleStore
from bayescal.testing import write_toy_site_csv
from bayescal.workflow import Stage, Workflow, WorkflowError
from bayescal.workflow.rundir import MARKER, RunDir, RunDirRefused
from bayescal.workflow.rundir_guard import stale_size
from bayescal.workflows import ConfigError, load_config, make_context, validate_config

#: keys that change how runs are made, not what they are: no stage declares them
HOW = {"design.batch_size", "run.workers", "run.scheduler", "run.slurm", "model.chunk_size"}


# --------------------------------------------------------------------------- helpers
class _Tracked(dict):
    """A config that records the dotted keys read from it (sections handed out tracked)."""

    def __init__(self, data, seen, prefix=""):
        super().__init__(data)
        self._seen, self._prefix = seen, prefix

    def __getitem__(self, key):
        value = super().__getitem__(key)
        path = f"{self._prefix}.{key}" if self._prefix else key
        if not self._prefix and isinstance(value, dict):
            return _Tracked(value, self._seen, path)
        self._seen.add(path)
        return value

    def get(self, key, default=None):
        return self[key] if key in self else default

    def _whole(self):
        self._seen.add(self._prefix or "*")

    def items(self):
        self._whole()
        return super().items()

    def values(self):
        self._whole()
        return super().values()

    def __iter__(self):
        self._whole()
        return super().__iter__()


def _audited(workflow: Workflow, seen: dict) -> Workflow:
    """The workflow with each stage function recording what it reads of ``ctx.config`` (the
    context's caches emptied first, so a stage cannot hide a read behind an earlier one)."""

    def wrap(stage: Stage) -> Stage:
        def function(ctx):
            keys, real = seen.setdefault(stage.name, set()), ctx.config
            for k in [k for k in ctx._cache if k not in ("engine", "executor")]:
                del ctx._cache[k]
            ctx.__dict__.pop("calibration_model", None)
            ctx._model = None  # built again from the config, read again
            ctx.config = _Tracked(real, keys)
            try:
                stage.function(ctx)
            finally:
                ctx.config = real

        return dataclasses.replace(stage, function=function)

    return dataclasses.replace(workflow, stages=tuple(wrap(s) for s in workflow.stages))


def _covered(path: str, declared: tuple[str, ...]) -> bool:
    return path in HOW or any(path == k or path.startswith(k + ".") for k in declared)


def _assert_declared(pipe, seen: dict) -> None:
    """Every key a stage read is declared by it or by a stage it needs (whose key is in its own)."""
    wf = pipe.workflow
    for name, keys in seen.items():
        declared = tuple(k for s in (name, *wf.upstream(name)) for k in wf.stage(s).keys(pipe.config))
        undeclared = sorted(k for k in keys if not _covered(k, declared))
        assert not undeclared, f"stage {name} reads {undeclared}, not declared in {declared}"


def _copy(run: Path, tmp_path: Path, name: str = "copy") -> Path:
    dst = tmp_path / name
    shutil.copytree(run, dst)
    return dst


def _rerun(cfg: dict, run_dir: Path, stages, change=None, **kw) -> dict:
    """Run ``stages`` on ``run_dir`` with ``change(cfg)`` applied; {stage: (status, model runs)}."""
    cfg = json.loads(json.dumps(cfg))
    if change:
        change(cfg)
    pipe = make_context(cfg, run_dir, **{"progress": False, **kw})
    return {r.name: (r.status, r.runs) for r in pipe.run(stages)}


def _planned(cfg: dict, run_dir: Path, change) -> set[str]:
    """The stages ``bayescal check`` says a change would rerun (of those that ran in ``run_dir``)."""
    cfg = json.loads(json.dumps(cfg))
    change(cfg)
    plan = make_context(cfg, run_dir, progress=False).plan()
    return {p.name for p in plan if p.status != "reuse" and (run_dir / p.name / "stage.json").exists()}


def _kept(cfg: dict, run_dir: Path, change) -> dict[str, list[str]]:
    """The run stores whose finished runs ``bayescal check`` says a rerun would keep, per stage."""
    cfg = json.loads(json.dumps(cfg))
    change(cfg)
    return {p.name: p.kept for p in make_context(cfg, run_dir, progress=False).plan() if p.kept}


def _set(dotted: str, value):
    section, key = dotted.split(".")

    def change(cfg):
        cfg[section][key] = value

    return change


# ------------------------------------------------------------------------ the global route
GLOBAL_STAGES = ("screen", "optimize", "design", "emulate", "posterior", "equifinality", "propagate")


@pytest.fixture(scope="module")
def global_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("global") / "run"
    cfg = validate_config({
        "run": {"output": str(run), "seed": 2},
        "model": {"n_cells": 20, "start": 2000, "end": 2003, "ramp_start": 1997, "chunk_size": 64},
        "parameters": {"free": ["vmax[GRASS-C3]", "gamma_w"]},
        "observations": {"variables": ["gpp"], "gcb_years": [2000, 2003], "truth": {"gamma_w": 0.55}},
        "screen": {"enabled": False}, "optimize": {"method": "none"},
        "design": {"n_runs": 10, "batch_size": 10},
        "posterior": {"n_steps": 100, "max_steps": 100, "refine_rounds": 1, "n_new": 2, "left_out": "fix"},
        "equifinality": {"n_alternatives": 1, "cloud_points": 100, "seiler_points": 100},
        "propagate": {"n_draws": 2, "table_years": [2000, 2003]},
    })
    seen: dict = {}
    pipe = make_context(cfg, progress=False)
    pipe = make_context(cfg, progress=False, workflow=_audited(pipe.workflow, seen))
    recs = pipe.run(GLOBAL_STAGES)
    assert [r.status for r in recs] == ["ran"] * len(GLOBAL_STAGES)
    return cfg, run, seen, pipe


def test_global_stages_declare_every_key_they_read(global_run):
    cfg, run, seen, pipe = global_run
    assert set(seen) == set(GLOBAL_STAGES) and seen["design"]
    _assert_declared(pipe, seen)


def test_global_changes_rerun_exactly_the_stages_that_read_them(global_run, tmp_path):
    cfg, run, _, _ = global_run
    after = {"posterior", "equifinality", "propagate"}
    expect = {
        "run.seed": {"design", "emulate"} | after,
        "posterior.n_steps": after,
        "emulator.n_restarts": {"emulate", "equifinality", "propagate"},
        "emulator.variance_threshold": after,
        "equifinality.cloud_points": {"equifinality", "propagate"},
        "propagate.n_draws": {"propagate"},
        "optimize.misfit": {"design", "emulate", "propagate"} | after,
        "design.batch_size": set(),  # how, not what
        "model.chunk_size": set(),  # likewise: members per kernel call (lowered after running out of memory)
        "report.title": set(),  # only the report reads it, and it is not asked for here
    }
    values = {"run.seed": 5, "posterior.n_steps": 150, "emulator.n_restarts": 1,
              "emulator.variance_threshold": 0.99, "equifinality.cloud_points": 200, "propagate.n_draws": 3,
              "optimize.misfit": "score", "design.batch_size": 3, "model.chunk_size": 2, "report.title": "x"}
    for key, stages in expect.items():
        assert _planned(cfg, run, _set(key, values[key])) == stages, key
    # the plan is what a run does: the seed reruns the design and what follows, never the screen
    done = _rerun(cfg, _copy(run, tmp_path), GLOBAL_STAGES[:4], _set("run.seed", 5))
    assert {s for s, (st, _) in done.items() if st == "ran"} == {"design", "emulate"}
    assert done["design"] == ("ran", 10) and done["screen"][0] == done["optimize"][0] == "reused"


def test_global_change_no_stage_reads_reruns_nothing(global_run, tmp_path):
    cfg, run, _, _ = global_run
    done = _rerun(cfg, _copy(run, tmp_path), GLOBAL_STAGES, _set("design.batch_size", 4))
    assert all(st == "reused" for st, _ in done.values()), done


def test_rerun_keeps_the_design_runs_when_only_the_misfit_measure_changed(global_run, tmp_path):
    """optimize.misfit changes the design's misfits, not its model runs: the store is kept."""
    cfg, run, _, _ = global_run
    copy = _copy(run, tmp_path)
    done = _rerun(cfg, copy, ("screen", "optimize", "design"), _set("optimize.misfit", "score"))
    assert done["design"] == ("ran", 0)
    assert len(list((copy / ".stale").iterdir())) == 1  # the old design folder: set aside, not deleted


def test_a_global_config_edited_back_reuses_every_stage(global_run, tmp_path, capsys):
    """A change reruns its stages; changed back, their folders of the first inputs come back
    from .stale/ (``bayescal check`` says so) and nothing runs: the same posterior, bit for bit;
    the folders of the change go to .stale/ in their place."""
    cfg, run, _, _ = global_run
    copy = _copy(run, tmp_path)
    first = xr.load_dataset(copy / "posterior" / "posterior.nc", group="posterior")
    done = _rerun(cfg, copy, GLOBAL_STAGES, _set("run.seed", 5))
    assert done["design"] == ("ran", 10) and done["posterior"][0] == "ran"
    plan = make_context(cfg, copy, progress=False).plan()
    restored = {p.name: p.restored for p in plan if p.restored}
    assert set(restored) == {"design", "emulate", "posterior", "equifinality", "propagate"}
    assert all(p.status == "reuse" for p in plan if p.name in GLOBAL_STAGES)
    from bayescal.cli import _print_plan

    capsys.readouterr()
    _print_plan(make_context(cfg, copy, progress=False), None, None)
    said = capsys.readouterr().out
    assert f"design          reused from {restored['design']} (made with these inputs)" in said
    done = _rerun(cfg, copy, GLOBAL_STAGES, progress=True)
    said = capsys.readouterr().out
    assert all(st == "reused" for st, _ in done.values()), done
    assert f"[design] {restored['design']} was made with these inputs: brought back" in said
    again = xr.load_dataset(copy / "posterior" / "posterior.nc", group="posterior")
    xr.testing.assert_identical(first, again)
    assert len(list((copy / "design" / "ensemble" / "members").glob("member_*.nc"))) == 10
    seeded = [p for p in (copy / ".stale").iterdir() if p.name.startswith("design-")]
    assert len(seeded) == 1 and (seeded[0] / "ensemble" / "store.json").exists()


def test_a_torn_stage_record_is_set_aside_and_its_stage_reruns(global_run, tmp_path):
    cfg, run, _, _ = global_run
    copy = _copy(run, tmp_path)
    (copy / "emulate" / "stage.json").write_text('{"key": "abc", "wall"')  # torn mid-write
    (copy / "design" / "started.json").write_text("")  # and an empty one
    with pytest.warns(RuntimeWarning, match="damaged record"):
        done = _rerun(cfg, copy, ("screen", "optimize", "design", "emulate"))
    assert done["emulate"] == ("ran", 0) and done["design"] == ("reused", 10)
    assert (copy / "emulate" / "stage.json.damaged").exists()
    assert json.loads((copy / "emulate" / "stage.json").read_text())["key"]


def test_user_files_in_a_rerun_stage_folder_stay_in_place(global_run, tmp_path, capsys):
    """A rerun moves the stage's own results to .stale/ (saying which input changed) and leaves
    the user's files (a note, a folder of their own) where they were; every entry a full run
    leaves is declared in its stage's ``writes`` (else it would count as the user's)."""
    cfg, run, _, _ = global_run
    workflow = make_context(cfg, run, progress=False).workflow
    for stage in workflow.stages:
        assert stage.foreign_files(run / stage.name) == [], stage.name
    copy = _copy(run, tmp_path)
    (copy / "emulate" / "my_notes.txt").write_text("mine")
    (copy / "emulate" / "mine").mkdir()
    (copy / "emulate" / "mine" / "a.csv").write_text("1,2")
    capsys.readouterr()
    _rerun(cfg, copy, ("screen", "optimize", "design", "emulate"), _set("emulator.n_restarts", 1),
           progress=True)
    said = capsys.readouterr().out
    assert "[emulate] results of other inputs (emulator.n_restarts changed) moved to .stale/emulate-1" in said
    assert (copy / "emulate" / "my_notes.txt").read_text() == "mine"
    assert (copy / "emulate" / "mine" / "a.csv").read_text() == "1,2"
    assert not list((copy / ".stale").rglob("my_notes.txt"))
    assert (copy / ".stale" / "emulate-1" / "misfit_emulator.nc").exists()  # bayescal's own, set aside
    size = sum(f.stat().st_size for f in (copy / ".stale").rglob("*") if f.is_file())
    assert stale_size(copy) == (f".stale/ holds 1 earlier stage folder, {size / 2**20:.1f} MiB; delete "
                                "what you no longer need")


def test_a_rerun_report_keeps_the_old_page_and_figures_beside_its_old_folder(global_run, tmp_path):
    """The report writes beside its folder (report.html, figures/): a rerun of other inputs moves
    them into ``.stale/report-<n>/`` with the folder, so the previous report is not lost."""
    cfg, run, _, _ = global_run
    copy = _copy(run, tmp_path)
    assert _rerun(cfg, copy, (*GLOBAL_STAGES, "report"))["report"][0] == "ran"
    old_page = (copy / "report.html").read_text()
    figures = sorted(p.name for p in (copy / "figures").iterdir())
    (copy / "figures" / "my_figure.png").write_bytes(b"mine")  # a figure of the user's: stays in place
    done = _rerun(cfg, copy, (*GLOBAL_STAGES, "report"), lambda c: c["report"].update(title="another title"))
    assert done["report"][0] == "ran" and done["propagate"][0] == "reused"
    stale = copy / ".stale" / "report-1"
    assert (stale / "report.html").read_text() == old_page
    assert sorted(p.name for p in (stale / "figures").iterdir()) == figures
    assert "another title" in (copy / "report.html").read_text()
    assert (copy / "figures" / "my_figure.png").read_bytes() == b"mine"
    assert sorted(p.name for p in (copy / "figures").iterdir()) == sorted([*figures, "my_figure.png"])


# ---------------------------------------------------------------------------- the site route
def _site_config(tmp_path: Path, route: str = "direct", seed: int = 3, n_particles: int = 200) -> Path:
    """The toy site model; a tempered start of ``n_particles`` (the tests here are of reruns,
    stores and records, which its size does not change)."""
    write_toy_site_csv(tmp_path / "nee.csv")
    cfg = tmp_path / "site.toml"
    cfg.write_text(f"""
[run]
output = "run"
seed = {seed}
[model]
kind = "python"
entry_point = "bayescal.testing:ToySiteModel"
options = {{start = "2001-01-01", end = "2003-12-31"}}
[site]
calibration_years = [2001, 2002]
validation_years = [2003, 2003]
discrepancy = "none"
autocorrelation = false
ml_evaluations = 60
[[observations.products]]
variable = "nee"
format = "csv"
file = "nee.csv"
units = "gC m-2 d-1"
[posterior]
n_steps = 100
max_steps = 100
n_walkers = 8
n_particles = {n_particles}
route = "{route}"
refine_rounds = 1
n_new = 3
[design]
n_runs = 10
[propagate]
n_draws = 3
""")
    return cfg


SITE_STAGES = ("optimize", "posterior", "propagate")


@pytest.fixture(scope="module")
def site_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("site")
    cfg = load_config(_site_config(folder, route="emulator"))
    assert cfg["run"]["output"] == str(folder / "run")  # relative to the config file's folder
    seen: dict = {}
    pipe = make_context(cfg, progress=False)
    pipe = make_context(cfg, progress=False, workflow=_audited(pipe.workflow, seen))
    recs = pipe.run(SITE_STAGES)
    assert [r.status for r in recs] == ["ran"] * 3 and recs[0].runs >= 10
    return cfg, Path(cfg["run"]["output"]), seen, pipe


def test_site_stages_declare_every_key_they_read(site_run):
    cfg, run, seen, pipe = site_run
    assert set(seen) == set(SITE_STAGES)
    _assert_declared(pipe, seen)
    for stage in pipe.workflow.stages:  # and every file they write (else a rerun counts it as the user's)
        assert stage.foreign_files(run / stage.name) == [], stage.name


def test_site_changes_rerun_exactly_the_stages_that_read_them(site_run):
    cfg, run, _, _ = site_run
    expect = [
        ("run.seed", 4, set(SITE_STAGES)),
        ("posterior.n_steps", 120, {"posterior", "propagate"}),
        ("site.validation_years", [2002, 2003], {"propagate"}),
        ("propagate.n_draws", 4, {"propagate"}),  # the posterior keeps its 1,000 draws either way
        ("site.ml_evaluations", 80, set(SITE_STAGES)),
        ("design.batch_size", 2, set()),
        ("model.spinup_cycles", 4, set(SITE_STAGES)),
        # the embedded global model's own keys: a site model does not read them
        ("model.chunk_size", 64, set()),
        ("model.n_cells", 30, set()),
        ("observations.gcb_years", [2001, 2002], set()),
    ]
    for key, value, stages in expect:
        assert _planned(cfg, run, _set(key, value)) == stages, key


def test_a_damaged_output_file_is_set_aside_and_its_stage_reruns(site_run, tmp_path, capsys):
    """A torn posterior.nc (its stage.json intact): ``bayescal report`` names the file (exit 1, no
    traceback); ``run`` sets it aside and reruns that stage alone, with the same result."""
    cfg, run, _, _ = site_run
    copy = _copy(run, tmp_path)
    nc = copy / "posterior" / "posterior.nc"
    whole = nc.read_bytes()
    nc.write_bytes(whole[: len(whole) // 2])
    mine = copy / "posterior" / "my_settings.json"  # the user's, unreadable to bayescal: left alone
    mine.write_text("{'not': json, // a comment}")
    (copy / ".stale").mkdir(exist_ok=True)
    (copy / ".stale" / "old.nc").write_bytes(b"CDF torn")
    assert main(["report", str(copy)]) == 1
    err = capsys.readouterr().err
    assert "posterior/posterior.nc: OSError" in err and "Traceback" not in err
    assert "my_settings" not in err and ".stale" not in err
    plan = {st.name: (st.status, st.changed) for st in make_context(cfg, copy, progress=False).plan()}
    assert plan["posterior"] == ("rerun", ["damaged file posterior.nc"])  # `bayescal check` says so
    assert plan["optimize"][0] == "reuse" and nc.exists()  # the plan writes nothing
    with pytest.warns(RuntimeWarning, match="posterior.nc: damaged"):
        done = _rerun(cfg, copy, SITE_STAGES)
    assert done["posterior"][0] == "ran" and done["optimize"][0] == done["propagate"][0] == "reused"
    assert (copy / "posterior" / "posterior.nc.damaged").exists()
    assert mine.read_text() == "{'not': json, // a comment}"  # in place, not set aside
    a = xr.open_dataset(run / "posterior" / "posterior.nc", group="posterior")
    b = xr.open_dataset(nc, group="posterior")
    xr.testing.assert_identical(a, b)  # the chain resumed from chain.h5: the same draws


def test_site_emulator_design_kept_when_other_inputs_change(site_run, tmp_path):
    """The emulator route: a new n_steps reruns no design run (only the refinement's chains, so
    its one round of 3 runs); a new ml_evaluations reruns the search but keeps the design's
    finished runs; a new seed reruns them."""
    cfg, run, _, _ = site_run
    copy = _copy(run, tmp_path)
    done = _rerun(cfg, copy, ("optimize", "posterior"), _set("posterior.n_steps", 120))
    assert done["optimize"] == ("reused", 10) and done["posterior"] == ("ran", 3)
    assert _kept(cfg, copy, _set("site.ml_evaluations", 80)) == {"optimize": ["design"]}  # check says so
    done = _rerun(cfg, copy, ("optimize",), _set("site.ml_evaluations", 80))
    assert done["optimize"] == ("ran", 0)  # the search runs the emulator; the design runs were kept
    assert len(list((copy / "optimize" / "design" / "members").glob("*.nc"))) == 10
    # and the record says them, so the report counts the 10 runs the results rest on
    from bayescal.report.page import runs_behind

    recs = RunDir(copy).records()
    rec = {r.name: r for r in recs}["optimize"]
    assert (rec.runs, rec.kept_runs) == (0, len(list((copy / "optimize").rglob("members/member_*.nc"))))
    kept = sum(r.kept_runs for r in recs)  # the optimize stage's 10, and any other stage's
    assert kept >= 10 and runs_behind(recs) == (f"{sum(r.runs for r in recs) + kept} model runs ({kept} of "
                                                "them made by a run of other inputs)")
    assert _kept(cfg, copy, _set("run.seed", 4)) == {}
    done = _rerun(cfg, copy, ("optimize",), _set("run.seed", 4))
    assert done["optimize"] == ("ran", 10)


def test_site_posterior_keeps_its_chain_when_only_the_draws_kept_change(site_run, tmp_path):
    """The emulator route: another number of propagated draws reuses the posterior stage (it keeps
    1,000 draws whatever the number); a change of the chain's length reruns it, with its
    refinement runs and round chains kept, so the rerun makes no model run (the optimum's run is
    kept too)."""
    cfg, run, _, _ = site_run
    copy = _copy(run, tmp_path)
    chain = (copy / "posterior" / "chains" / "round1.h5").stat()
    done = _rerun(cfg, copy, ("optimize", "posterior"), _set("propagate.n_draws", 4))
    assert done["optimize"][0] == "reused" and done["posterior"][0] == "reused"
    done = _rerun(cfg, copy, ("optimize", "posterior"), _set("posterior.emulator_target", "mean"))
    assert done["optimize"][0] == "reused" and done["posterior"] == ("ran", 0)
    assert (copy / "posterior" / "chains" / "round1.h5").stat().st_ino == chain.st_ino  # moved back


def test_a_site_run_of_the_earlier_propagate_code_reruns_it_without_model_runs(site_run, tmp_path):
    """The site propagate stage is at revision 2 (means of sparse states; products of months and
    years): a run directory whose records are of revision 0 (no "revision" in the inputs, no key
    for its ensemble store) reruns
    propagate alone, keeping its ensemble -- no model run -- and writes the bands anew."""
    from bayescal.workflow import stage_key

    cfg, run, _, _ = site_run
    copy = _copy(run, tmp_path)
    for name in ("started.json", "stage.json"):
        path = copy / "propagate" / name
        rec = json.loads(path.read_text())
        assert rec["inputs"]["revision"] == 2
        inputs = {k: v for k, v in rec["inputs"].items() if k != "revision"}
        rec.update(inputs=inputs, key=stage_key("propagate", inputs), stores={})
        path.write_text(json.dumps(rec))
    ensemble = (copy / "propagate" / "ensemble").stat()
    assert _planned(cfg, copy, lambda c: None) == {"propagate"}
    done = _rerun(cfg, copy, SITE_STAGES)
    assert {k: v[0] for k, v in done.items()} == {"optimize": "reused", "posterior": "reused",
                                                  "propagate": "ran"}
    assert done["propagate"][1] == 0
    assert (copy / "propagate" / "ensemble").stat().st_ino == ensemble.st_ino  # moved back, not rerun
    bands = xr.load_dataset(copy / "propagate" / "bands.nc")
    assert bands.identical(xr.load_dataset(run / "propagate" / "bands.nc"))


def test_site_emulator_target_reruns_the_posterior_with_no_model_run(site_run, tmp_path):
    """The emulator route: posterior.emulator_target is the posterior stage's key but not its
    stores': "mean" reruns the stage with the rounds' runs and chains kept (no model run) and the
    last round's chain as the posterior; back to "expected", the first posterior's folder comes
    back from .stale/ with its rounds' runs and chains. emulator.n_restarts changes the
    emulator, so the design is kept and the refinement's runs are not."""
    from bayescal.posterior import load_inference_data, unit_samples
    from bayescal.workflow.rundir import RunDir

    cfg, run, _, _ = site_run
    copy = _copy(run, tmp_path)
    chain = (copy / "posterior" / "chains" / "round1.h5").stat()

    def draws():
        idata = load_inference_data(copy / "posterior" / "posterior.nc")
        return unit_samples(idata, RunDir(copy).space()).values

    first = draws()
    done = _rerun(cfg, copy, ("optimize", "posterior"), _set("posterior.emulator_target", "mean"))
    assert done["optimize"][0] == "reused" and done["posterior"] == ("ran", 0)
    assert (copy / "posterior" / "chains" / "round1.h5").stat().st_ino == chain.st_ino
    assert "final_target" not in xr.load_dataset(copy / "posterior" / "refinement.nc").attrs
    assert (copy / "posterior" / "chains" / "round_final.h5").is_file()
    assert not np.array_equal(draws(), first)
    done = _rerun(cfg, copy, ("optimize", "posterior"), _set("posterior.emulator_target", "expected"))
    assert done["posterior"][0] == "reused"  # its folder of these inputs brought back from .stale/
    np.testing.assert_array_equal(draws(), first)
    assert (copy / "posterior" / "chains" / "round1.h5").stat().st_ino == chain.st_ino
    assert _kept(cfg, copy, _set("emulator.n_restarts", 1)) == {"optimize": ["design"]}


def test_site_observation_file_content_reruns_its_readers(site_run, tmp_path):
    cfg, run, _, _ = site_run
    copy = _copy(run, tmp_path)
    new = json.loads(json.dumps(cfg))
    csv = tmp_path / "nee.csv"
    shutil.copy(cfg["observations"]["products"][0]["file"], csv)
    new["observations"]["products"][0]["file"] = str(csv)
    assert _planned(new, copy, lambda c: None) == set(SITE_STAGES)  # a new path: read by all three
    done = _rerun(new, copy, ("optimize",))
    assert done["optimize"] == ("ran", 0)  # same model runs: the design store was kept
    assert _planned(new, copy, lambda c: None) == {"posterior", "propagate"}  # not rerun yet
    frame = pd.read_csv(csv)
    frame.loc[5, "value"] += 1.0  # the same file, one value edited
    frame.to_csv(csv, index=False)
    assert _planned(new, copy, lambda c: None) == set(SITE_STAGES)


def test_a_moved_project_folder_keeps_every_stage(site_run, tmp_path):
    """The project (config, data, run directory) copied elsewhere: its paths are hashed relative to
    the config's folder, so nothing reruns; a data file outside the folder is still its path."""
    cfg, run, _, _ = site_run
    moved = tmp_path / "elsewhere" / "project"
    shutil.copytree(run.parent, moved)
    new = load_config(moved / "site.toml")
    assert new["run"]["output"] == str(moved / "run") != str(run)
    assert _planned(new, moved / "run", lambda c: None) == set()
    done = _rerun(new, moved / "run", SITE_STAGES)
    assert {status for status, _ in done.values()} == {"reused"}, done
    from importlib import resources

    from bayescal.workflow.keys import portable

    name = "data/fluxnet/FLX_DE-Hai_DD_2000-2012.csv"  # shipped data: the same key from any install
    shipped = str(resources.files("bayescal") / name)
    assert portable({"file": shipped}, str(moved)) == {"file": f"bayescal:{name}"}
    outside = tmp_path / "nee.csv"  # the same content at a path outside the project: a new input
    shutil.copy(moved / "nee.csv", outside)
    assert _planned(new, moved / "run", _product_file(str(outside))) == set(SITE_STAGES)


def _product_file(path: str):
    def change(cfg):
        cfg["observations"]["products"][0]["file"] = path

    return change


# ---------------------------------------------------------------------------- Dagon's route
DAGON_STAGES = ("oat", "design", "emulate", "emulator_screen")


@pytest.fixture(scope="module")
def dagon_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("dagon") / "run"
    cfg = validate_config({
        "run": {"output": str(run), "seed": 3, "workflow": "dagon"},
        "model": {"n_cells": 20, "start": 2000, "end": 2002, "ramp_start": 1997},
        "parameters": {"candidates": ["gamma_w", "beta2", "vmax[GRASS-C3]"]},
        "observations": {"variables": ["gpp"], "gcb_years": [2000, 2002], "truth": {"gamma_w": 0.3}},
        "oat": {"top_k": 2},
        "design": {"n_runs": 12, "batch_size": 12},
        "emulator": {"eof_modes": 1, "network": [4, 4]},
        "emulator_screen": {"n_points": 1000, "keep": 10, "refine_rounds": 0},
        "propagate": {"table_years": [2000, 2002]},
    })
    seen: dict = {}
    pipe = make_context(cfg, progress=False)
    pipe = make_context(cfg, progress=False, workflow=_audited(pipe.workflow, seen))
    recs = pipe.run(DAGON_STAGES)
    assert [r.status for r in recs] == ["ran"] * 4 and recs[0].runs == 7
    return cfg, run, seen, pipe


def test_dagon_stages_declare_every_key_they_read(dagon_run):
    cfg, run, seen, pipe = dagon_run
    assert set(seen) == set(DAGON_STAGES)
    _assert_declared(pipe, seen)


def test_dagon_changes_rerun_exactly_the_stages_that_read_them(dagon_run, tmp_path):
    cfg, run, _, _ = dagon_run
    expect = [
        ("design.n_runs", 14, {"design", "emulate", "emulator_screen"}),  # never the OAT runs
        ("run.seed", 4, {"design", "emulate", "emulator_screen"}),
        ("emulator_screen.keep", 20, {"emulator_screen"}),
        ("emulator.network", [5, 5], {"emulate", "emulator_screen"}),
        ("oat.top_k", 1, set(DAGON_STAGES)),
        ("oat.unit", "value", set(DAGON_STAGES)),
        ("oat.outputs", ["gpp"], set(DAGON_STAGES)),
        ("design.batch_size", 3, set()),
    ]
    for key, value, stages in expect:
        assert _planned(cfg, run, _set(key, value)) == stages, key
    done = _rerun(cfg, _copy(run, tmp_path), ("oat", "design"), _set("design.n_runs", 14))
    assert done["oat"][0] == "reused" and done["design"] == ("ran", 14)
    done = _rerun(cfg, _copy(run, tmp_path, "top_k"), ("oat",), _set("oat.top_k", 1))
    assert done["oat"] == ("ran", 0)  # a new selection from the same one-at-a-time runs
    done = _rerun(cfg, _copy(run, tmp_path, "outputs"), ("oat",), _set("oat.outputs", ["gpp"]))
    assert done["oat"] == ("ran", 0)  # fewer outputs: every run taken from the stale store's
    # each run kept by its values: a new candidate runs its two, a narrowed bound its one
    more = _set("parameters.candidates", ["gamma_w", "beta2", "vmax[GRASS-C3]", "kn[BDL-EVG]"])
    copy = _copy(run, tmp_path, "cands")
    changed = json.loads(json.dumps(cfg))
    more(changed)
    plan = {p.name: p for p in make_context(changed, copy, progress=False).plan()}
    assert plan["oat"].status == "rerun" and plan["oat"].expected_runs == "9" and plan["oat"].lending == 7
    done = _rerun(cfg, copy, ("oat",), more)
    assert done["oat"] == ("ran", 2)
    from bayescal.models.landcarbon import default_parameter_space
    from bayescal.parameters import ParameterSpace

    table = default_parameter_space().to_dict()
    table["parameters"] = {"beta2": {**table["parameters"]["beta2"], "lower": 0.85}}  # from 0.8
    ParameterSpace.from_dict(table).to_toml(tmp_path / "space.toml")
    copy = _copy(run, tmp_path, "bound")
    done = _rerun(cfg, copy, ("oat",), _set("model.parameters_file", str(tmp_path / "space.toml")))
    assert done["oat"] == ("ran", 1)  # beta2 at its new lower bound; at its upper one and the rest kept
    record = json.loads((copy / "oat" / "stage.json").read_text())
    assert record["kept_runs"] == 6 and len(list((copy / "oat" / "ensemble" / "members").glob("*.nc"))) == 7
    ranking = xr.load_dataset(copy / "oat" / "ranking.nc")
    fresh = _rerun(cfg, tmp_path / "fresh", ("oat",),
                   _set("model.parameters_file", str(tmp_path / "space.toml")))
    assert fresh["oat"] == ("ran", 7)
    xr.testing.assert_identical(xr.load_dataset(tmp_path / "fresh" / "oat" / "ranking.nc"), ranking)


# ------------------------------------------------------------------- the run directory is owned
def test_output_at_a_users_folder_is_refused_and_nothing_is_deleted(tmp_path, capsys):
    project = tmp_path / "project"
    for rel, text in (("report/x.txt", "my report"), ("optimize/notes.txt", "my notes"), ("data.csv", "1")):
        (project / rel).parent.mkdir(parents=True, exist_ok=True)
        (project / rel).write_text(text)
    before = {p: p.read_bytes() for p in project.rglob("*") if p.is_file()}
    cfg = _site_config(tmp_path)
    cfg.write_text(cfg.read_text().replace('output = "run"', 'output = "project"'))
    assert main(["run", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "run directory refused" in err and str(project) in err and "Traceback" not in err
    assert {p: p.read_bytes() for p in project.rglob("*") if p.is_file()} == before
    assert not (project / MARKER).exists()
    with pytest.raises(RunDirRefused, match="not empty"):
        make_context(load_config(cfg), progress=False).run()
    assert main(["check", str(cfg)]) == 2


_HOLDER = """
import os, sys, time
from bayescal.workflow.rundir_guard import hold_run_dir
with hold_run_dir(sys.argv[1]):
    if os.fork() == 0:  # a worker of the run's pool, still alive when its parent is killed
        time.sleep(60)
        os._exit(0)
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_run_in_a_run_directory_in_use_is_refused_and_a_killed_run_leaves_no_lock(tmp_path, capsys):
    """A job submitted twice: the second is refused by name (exit 2, no traceback) before it
    writes anything; the first killed with SIGKILL -- its forked worker still alive -- leaves the
    folder free at once."""
    import signal
    import subprocess
    import sys

    from bayescal.workflow.rundir_guard import LOCK, hold_run_dir

    cfg = _site_config(tmp_path)
    run = tmp_path / "run"
    run.mkdir()
    marker = {"created_by": "bayescal", "workflow": "site", "bayescal": "the first run's"}
    (run / MARKER).write_text(json.dumps(marker))
    first = subprocess.Popen([sys.executable, "-c", _HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "held"
        assert main(["run", str(cfg), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"{run} is in use" in err and f"process {first.pid}" in err and "Traceback" not in err
        assert sorted(p.name for p in run.iterdir()) == sorted([LOCK, MARKER])  # nothing else written,
        assert json.loads((run / MARKER).read_text()) == marker  # nor the marker rewritten
        assert main(["check", str(cfg), "--no-model-run"]) == 0  # check only reads, and says so
        assert f"in use now by bayescal (process {first.pid}" in capsys.readouterr().out
        first.send_signal(signal.SIGKILL)
        first.wait()
        with hold_run_dir(run, wait=0):  # free at once: the worker closed its copy at fork
            pass
    finally:
        first.kill()
        subprocess.run(["pkill", "-KILL", "-f", str(run)], check=False)  # the worker


def test_without_flock_a_run_goes_on_unlocked_and_its_errors_are_its_own(tmp_path, monkeypatch):
    """Windows has no fcntl: the run is not locked, and an error in it is not chained to the
    missing module; a folder where only the lock exists yet is a new one."""
    from bayescal.workflow import rundir_guard

    monkeypatch.setattr(rundir_guard, "_fcntl", lambda: None)
    with pytest.raises(RuntimeError) as err, rundir_guard.hold_run_dir(tmp_path):
        raise RuntimeError("a stage failed")
    assert err.value.__context__ is None
    monkeypatch.undo()
    with rundir_guard.hold_run_dir(tmp_path):
        assert rundir_guard.check_run_dir(tmp_path, "site") == "new"  # the lock alone: a run starting


@pytest.mark.parametrize(("code", "said"), [("ENOLCK", "cannot lock files"),
                                             ("EBADF", "cannot lock a file this user may only read")])
def test_a_file_system_that_cannot_lock_lets_the_run_go_on_with_a_warning(tmp_path, monkeypatch, code, said):
    """NFS without a lock daemon (ENOLCK), or one that locks only files opened for writing
    (EBADF on another user's read-only lock file): the run goes on, told why it is unlocked."""
    import errno
    import types

    from bayescal.workflow import rundir_guard

    def flock(fd, op):
        raise OSError(getattr(errno, code), os.strerror(getattr(errno, code)))

    fake = types.SimpleNamespace(flock=flock, LOCK_EX=2, LOCK_NB=4)
    monkeypatch.setattr(rundir_guard, "_fcntl", lambda: fake)
    ran = False
    with pytest.warns(RuntimeWarning, match=f"this file system {said} .*would both run"), \
            rundir_guard.hold_run_dir(tmp_path):
        ran = True
    assert ran


def test_a_lock_file_naming_a_process_that_is_gone_is_not_named_as_the_holder(tmp_path):
    """A run that could only open the lock read-only holds it without writing itself into it: the
    file still names an earlier run, whose process is gone -- not named as the holder."""
    import socket
    import subprocess
    import sys

    from bayescal.workflow.rundir_guard import LOCK, _holder

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock = tmp_path / LOCK
    for pid, said in ((gone.pid, "another bayescal process"), (os.getpid(), f"process {os.getpid()} on")):
        lock.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "since": "2026-12-07 08:00"}))
        assert said in _holder(lock)


def test_output_that_is_empty_or_a_file_is_a_named_config_error(tmp_path, capsys):
    cfg = _site_config(tmp_path)
    text = cfg.read_text()
    cfg.write_text(text.replace('output = "run"', 'output = ""'))
    with pytest.raises(ConfigError, match="'run.output'.*empty"):
        load_config(cfg)
    (tmp_path / "afile").write_text("x")
    cfg.write_text(text.replace('output = "run"', 'output = "afile"'))
    with pytest.raises(ConfigError, match="'run.output'.*is a file"):
        load_config(cfg)
    assert main(["run", str(cfg), "--quiet"]) == 2
    assert "run.output" in capsys.readouterr().err
    cfg.write_text(text)
    assert main(["run", str(cfg), "--quiet", "--run-dir", str(tmp_path / "afile")]) == 2


def test_a_run_directory_of_another_workflow_is_refused(tmp_path, capsys):
    """A site config pointed at a global run's folder (its marker says so) is refused by name
    before anything is written: the two runs' stages and reports would mix."""
    from bayescal.workflow.rundir_guard import check_run_dir, claim_run_dir

    run = tmp_path / "run"
    claim_run_dir(run, "global", ("screen", "report"))
    marker = (run / MARKER).read_text()
    with pytest.raises(RunDirRefused, match=r"holds a run of the global workflow; this config runs the site "
                                            r"workflow: set '\[run\] output' \(or --run-dir\) to a folder"):
        check_run_dir(run, "site")
    assert check_run_dir(run, "global") == check_run_dir(run) == "owned"
    cfg = _site_config(tmp_path)
    assert main(["run", str(cfg), "--quiet"]) == 2 and main(["check", str(cfg), "--no-model-run"]) == 2
    assert "holds a run of the global workflow" in capsys.readouterr().err
    assert (run / MARKER).read_text() == marker and sorted(p.name for p in run.iterdir()) == [MARKER]


def _read_only_outputs(tmp_path: Path) -> list[Path]:
    """Run directories no process here may create: in a folder without write permission (root
    ignores that), and in /sys, which refuses every new folder (root included)."""
    cases = []
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        cases.append(locked / "run")
    if Path("/sys/kernel").is_dir():
        cases.append(Path("/sys/bayescal-test-run"))
    return cases


def test_output_that_cannot_be_written_is_refused_by_name_before_any_run(tmp_path, capsys):
    cfg = _site_config(tmp_path)
    (tmp_path / "afile").write_text("mine")  # a file on the way: said as such, left as it was
    out = tmp_path / "afile" / "sub"
    assert main(["run", str(cfg), "--quiet", "--run-dir", str(out)]) == 2
    assert f"{tmp_path / 'afile'} is a file, so no folder can be made in it" in capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "mine"
    cases = _read_only_outputs(tmp_path)
    if not cases:
        pytest.skip("no read-only place on this machine (root, no /sys)")
    for out in cases:
        assert main(["run", str(cfg), "--quiet", "--run-dir", str(out)]) == 2
        err = capsys.readouterr().err
        assert f"run directory {out}" in err and ("not writable" in err or "cannot be written" in err), err
        assert "Traceback" not in err and not out.exists()


def test_marker_and_records_of_an_owned_run_directory(global_run):
    cfg, run, _, _ = global_run
    marker = json.loads((run / MARKER).read_text())
    assert marker["workflow"] == "global" and marker["stages"][0] == "screen"
    assert [r.name for r in RunDir(run).records()] == list(GLOBAL_STAGES)
    assert not list(run.rglob("*.tmp"))  # every record renamed into place


# -------------------------------------------------------------------------------- the CLI
def test_version_help_and_check_show_the_chosen_workflow(site_run, capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("bayescal ")
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for name in ("global workflow", "site workflow", "dagon workflow", "emulator_screen", "equifinality"):
        assert name in text
    cfg, run, _, _ = site_run
    toml = run.parent / "site.toml"
    assert main(["check", str(toml)]) == 0
    out = capsys.readouterr().out
    assert "workflow: site" in out and "screen" not in out
    assert "optimize" in out and "reused (inputs unchanged)" in out


def test_every_plan_count_gives_check_a_number_of_runs():
    """``bayescal check`` times a stage from its plan's run count: every workflow's count parses
    (the GA's generations, the site route's default walkers from the model's parameters)."""
    from bayescal.cli import _rough_runs
    from bayescal.workflows.global_.workflow import _optimize_runs
    from bayescal.workflows.site.workflow import _posterior_runs

    examples = Path(__file__).parents[1] / "examples"
    twin = load_config(examples / "global_twin.toml")  # GA: 24 x 12 generations
    assert _rough_runs(_optimize_runs(twin)) == (288, 288)
    hai = load_config(examples / "site_hainich.toml")  # DALEC-D, 17 + 1 values: 38 walkers
    hai["posterior"]["n_walkers"] = 0
    lo, hi = _rough_runs(_posterior_runs(hai))
    c = hai["posterior"]
    assert (lo, hi) == (38 * c["n_steps"], 38 * c["max_steps"])
    plans = {"120": (120, 120), "<= 2000": (0, 2000), "about 50 (5 x 10 generations)": (50, 50),
             "1 + up to 6 x 30 (refinement; the chains run the emulator: each of the 7 chains takes "
             "one to a few minutes)": (1, 181)}
    for text, runs in plans.items():
        assert _rough_runs(text) == runs


def test_a_workflow_declaration_that_does_not_hold_together_is_named():
    def f(ctx):
        return None

    with pytest.raises(WorkflowError, match="needs 'b'"):
        Workflow("w", (Stage("a", f, "a", needs=("b",)), Stage("b", f, "b")))
    with pytest.raises(WorkflowError, match="declared twice"):
        Workflow("w", (Stage("a", f, "a"), Stage("a", f, "a")))


# ------------------------------------------------------------------- the engine on its own
class _Context:
    """The least a stage function's context needs: config, run_dir, say, model_runs."""

    def __init__(self, config, run_dir):
        self.config, self.run_dir, self.runs = config, Path(run_dir), 0

    def say(self, msg):
        pass

    def model_runs(self):
        return self.runs


def _toy_workflow(fail: dict) -> Workflow:
    """``a`` (reads a.x) -> ``b`` (reads b.y, keeps its store while a.x is unchanged)."""
    from bayescal.workflow import RunStore

    def a(ctx):
        (ctx.run_dir / "a" / "out.txt").write_text(str(ctx.config["a"]["x"]))

    def b(ctx):
        store = ctx.run_dir / "b" / "store"
        store.mkdir(exist_ok=True)
        for i in range(3):  # three "model runs", each kept once finished
            if not (store / f"{i}.json").exists():
                if fail.pop(i, False):
                    raise KeyboardInterrupt  # killed
                (store / f"{i}.json").write_text("{}")
                ctx.runs += 1

    return Workflow("toy", (Stage("a", a, "a", reads=("a.x",)),
                            Stage("b", b, "b", reads=("b",), needs=("a",), writes=("store/",),
                                  keeps=(RunStore("store", reads=("a.x",)),))))


def test_engine_resumes_a_killed_stage_and_keeps_declared_stores(tmp_path):
    from bayescal.workflow import Engine

    cfg = {"a": {"x": 1}, "b": {"y": 1}}
    fail = {2: True}
    engine = Engine(_toy_workflow(fail), _Context(cfg, tmp_path / "run"))
    engine.claim()
    with pytest.raises(KeyboardInterrupt):
        engine.run()
    assert [(p.status, p.finished_runs) for p in engine.plan()] == [("reuse", 0), ("resume", 0)]
    recs = Engine(_toy_workflow(fail), _Context(cfg, tmp_path / "run")).run()
    assert [(r.status, r.runs) for r in recs] == [("reused", 0), ("ran", 1)]  # only the missing run
    from bayescal.workflow.engine import summary_table

    table = summary_table(recs).splitlines()  # the results' totals, and this invocation's
    assert [row.split()[0] for row in table[-2:]] == ["total", "ran"] and table[-1].split()[-1] == "1"
    from bayescal.workflow.rundir import StageRecord

    resumed = summary_table([StageRecord("b", "ran", 1.0, 0.1, 201, earlier_runs=100)]).splitlines()
    assert resumed[-2].split()[-1] == "201" and resumed[-1].split()[:2] == ["ran", "now"]
    assert resumed[-1].split()[-1] == "101"  # this invocation's runs: not the stopped one's
    cfg["b"]["y"] = 2  # b reruns; its store depends on a.x only: kept, and its runs are the record's
    recs = Engine(_toy_workflow(fail), _Context(cfg, tmp_path / "run")).run()
    assert [(r.status, r.runs) for r in recs] == [("reused", 0), ("ran", 0)]  # (not an EnsembleStore)
    plan = Engine(_toy_workflow(fail), _Context({"a": {"x": 2}, "b": {"y": 2}}, tmp_path / "run")).plan()
    assert [(p.status, p.changed) for p in plan] == [("rerun", ["a.x"]), ("rerun", ["stage a"])]
    # a record of before the per-value hashes (no "detail") has the same key: nothing reruns
    from bayescal.workflow import stage_key

    recorded = json.loads((tmp_path / "run" / "b" / "stage.json").read_text())
    assert recorded["inputs"]["detail"] == {"b": {"y": recorded["inputs"]["detail"]["b"]["y"]}}
    older = {k: v for k, v in recorded["inputs"].items() if k != "detail"}
    assert stage_key("b", older) == stage_key("b", recorded["inputs"]) == recorded["key"]
    # b reads the table b: an edit inside it is named by its key, an added key too
    plan = Engine(_toy_workflow(fail), _Context({"a": {"x": 1}, "b": {"y": 3, "z": {"w": 1}}},
                                                tmp_path / "run")).plan()
    assert [(p.status, p.changed) for p in plan] == [("reuse", []), ("rerun", ["b.y", "b.z.w"])]


def test_inputs_edited_back_bring_their_folder_back_from_stale(tmp_path):
    """A config edited and then edited back: the stage's folder of those inputs comes back from
    .stale/ (reused, no model run) with the run store a rerun in between kept and moved on; a
    store that changed since (a run added) leaves it there and the stage reruns (store kept)."""
    from bayescal.workflow import Engine

    def run(x, y):
        ctx = _Context({"a": {"x": x}, "b": {"y": y}}, tmp_path / "run")
        engine = Engine(_toy_workflow({}), ctx)
        engine.claim()
        plan = [(p.status, p.restored) for p in engine.plan()]
        return plan, [r.status for r in engine.run()], ctx.runs

    stale, store = tmp_path / "run" / ".stale", tmp_path / "run" / "b" / "store"
    assert run(1, 1)[1:] == (["ran", "ran"], 3)
    assert run(1, 2) == ([("reuse", ""), ("rerun", "")], ["reused", "ran"], 0)  # store kept
    assert run(1, 1) == ([("reuse", ""), ("reuse", ".stale/b-1")], ["reused", "reused"], 0)
    assert sorted(p.name for p in store.iterdir()) == ["0.json", "1.json", "2.json"]
    assert sorted(p.name for p in stale.iterdir()) == ["b-2"] and not (stale / "b-2" / "store").exists()
    assert run(1, 2) == ([("reuse", ""), ("reuse", ".stale/b-2")], ["reused", "reused"], 0)
    # a store that changed since it was moved on: the folder stays in .stale/, the stage reruns
    (store / "3.json").write_text("{}")
    assert run(1, 1) == ([("reuse", ""), ("rerun", "")], ["reused", "ran"], 0)
    # a stopped stage of other inputs comes back to resume: only its missing run is made
    engine = Engine(_toy_workflow({1: True}), _Context({"a": {"x": 3}, "b": {"y": 1}}, tmp_path / "run"))
    with pytest.raises(KeyboardInterrupt):
        engine.run()
    assert run(4, 1)[1:] == (["ran", "ran"], 3)
    plan, done, runs = run(3, 1)
    assert plan[0] == ("reuse", ".stale/a-2") and plan[1][0] == "resume" and done == ["reused", "ran"]
    assert runs == 2 and sorted(p.name for p in store.iterdir()) == ["0.json", "1.json", "2.json"]


def test_your_files_in_a_stage_folder_and_its_store_do_not_stop_a_folder_coming_back(tmp_path):
    """A note in a stage's folder and one in its run store: an edit (the store kept, the notes in
    place) and the edit taken back bring the folder back with its store, no model run, the notes
    where they were (the store's fingerprint counts bayescal's files only)."""
    from bayescal.workflow import Engine

    def run(y):
        ctx = _Context({"a": {"x": 1}, "b": {"y": y}}, tmp_path / "run")
        engine = Engine(_toy_workflow({}), ctx)
        engine.claim()
        plan = [p.status for p in engine.plan()]
        return plan, [r.status for r in engine.run()], ctx.runs

    folder = tmp_path / "run" / "b"
    assert run(1)[1:] == (["ran", "ran"], 3)
    (folder / "notes.txt").write_text("mine")
    (folder / "store" / "notes.txt").write_text("mine too")
    assert run(2) == (["reuse", "rerun"], ["reused", "ran"], 0)
    assert run(1) == (["reuse", "reuse"], ["reused", "reused"], 0)
    assert (folder / "notes.txt").read_text() == "mine"
    assert (folder / "store" / "notes.txt").read_text() == "mine too"
    assert sorted(p.name for p in (folder / "store").iterdir()) == ["0.json", "1.json", "2.json", "notes.txt"]
    assert not list((tmp_path / "run" / ".stale").rglob("notes.txt"))


def test_a_folder_brought_back_beside_your_files_survives_a_kill_midway(tmp_path, monkeypatch):
    """A bring-back killed after your files moved beside the stage's folder and before the folder
    of the key took its place; then another edit, then the edit taken back: your files are back in
    place, and the folder comes back whole (its records, outputs and store: no model run)."""
    from bayescal.workflow import Engine

    def run(y):
        ctx = _Context({"a": {"x": 1}, "b": {"y": y}}, tmp_path / "run")
        engine = Engine(_toy_workflow({}), ctx)
        engine.claim()
        return [r.status for r in engine.run()], ctx.runs

    folder = tmp_path / "run" / "b"
    assert run(1) == (["ran", "ran"], 3) and run(2) == (["reused", "ran"], 0)
    (folder / "notes.txt").write_text("mine")
    real = os.replace

    def killed(src, dest):
        real(src, dest)
        if Path(dest).name == ".b.yours":
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        run(1)
    monkeypatch.setattr(os, "replace", real)
    assert not folder.exists() and (tmp_path / "run" / ".b.yours" / "notes.txt").exists()
    assert run(3) == (["reused", "ran"], 0)  # another edit: your note back first; the store taken
    assert (folder / "notes.txt").read_text() == "mine"
    assert run(1) == (["reused", "reused"], 0)
    assert (folder / "notes.txt").read_text() == "mine" and not (tmp_path / "run" / ".b.yours").exists()
    assert sorted(p.name for p in (folder / "store").iterdir()) == ["0.json", "1.json", "2.json"]
    assert json.loads((folder / "stage.json").read_text())["key"] == \
        json.loads((folder / "started.json").read_text())["key"]


def test_a_new_folder_takes_a_store_of_its_inputs_from_stale(tmp_path):
    """a.x 1 -> 2 -> 1 with b.y edited on the way back: b's folder of those inputs never existed,
    but its store of a.x = 1 is in .stale/: check says it is kept, the run takes it, no model run."""
    from bayescal.workflow import Engine

    def run(x, y):
        engine = Engine(_toy_workflow({}), _Context({"a": {"x": x}, "b": {"y": y}}, tmp_path / "run"))
        engine.claim()
        plan = [(p.status, p.kept) for p in engine.plan()]
        ctx = engine.ctx
        return plan, [r.status for r in engine.run()], ctx.runs

    assert run(1, 1)[2] == 3 and run(2, 1)[2] == 3
    plan, done, runs = run(1, 2)
    assert plan[1][0] == "rerun" and plan[1][1] == ["store (in .stale/b-1)"]
    assert done == ["reused", "ran"] and runs == 0


def test_a_folder_whose_store_is_gone_or_unknown_stays_in_stale(tmp_path):
    """A finished folder comes back only with its run stores as they were when it finished: not
    when a store was deleted from its copy in .stale/ (to save space), nor from a record that does
    not list its stores (an older bayescal's); the stage then reruns."""
    from bayescal.workflow import Engine

    def run(x, y=1):
        ctx = _Context({"a": {"x": x}, "b": {"y": y}}, tmp_path / "run")
        engine = Engine(_toy_workflow({}), ctx)
        engine.claim()
        plan = [p.status for p in engine.plan()]
        return plan, [r.status for r in engine.run()], ctx.runs

    stale = tmp_path / "run" / ".stale"
    assert run(1)[1:] == (["ran", "ran"], 3) and run(2)[1:] == (["ran", "ran"], 3)  # a.x: store not kept
    shutil.rmtree(stale / "b-1" / "store")  # deleted from .stale/ by hand
    assert run(1) == (["reuse", "rerun"], ["reused", "ran"], 3)
    record = next(p for p in stale.glob("b-*/stage.json") if "store_fingerprints" in p.read_text())
    data = json.loads(record.read_text())
    record.write_text(json.dumps({k: v for k, v in data.items() if k != "store_fingerprints"}))
    assert run(2)[0] == ["reuse", "rerun"]  # its record does not say which stores it had


def test_a_folder_in_stale_with_a_damaged_file_is_planned_as_the_run_does_it(tmp_path):
    """A folder of the key in .stale/ whose output file is torn: check says the stage reruns for
    it, and the run brings it back, sets the file aside and reruns the stage."""
    from bayescal.workflow import Engine

    def a(ctx):
        (ctx.run_dir / "a" / "out.json").write_text(json.dumps(ctx.config["a"]["x"]))

    def engine(x):
        flow = Workflow("toy", (Stage("a", a, "a", reads=("a.x",), writes=("out.json",)),))
        e = Engine(flow, _Context({"a": {"x": x}}, tmp_path / "run"))
        e.claim()
        return e

    engine(1).run()
    engine(2).run()
    (tmp_path / "run" / ".stale" / "a-1" / "out.json").write_text('{"torn": ')
    plan = engine(1).plan()
    assert (plan[0].status, plan[0].changed) == ("rerun", ["damaged file out.json"])
    with pytest.warns(RuntimeWarning, match="damaged"):
        assert [r.status for r in engine(1).run()] == ["ran"]
    assert (tmp_path / "run" / "a" / "out.json.damaged").exists()
    assert json.loads((tmp_path / "run" / "a" / "out.json").read_text()) == 1


def test_your_file_made_again_while_a_folder_came_back_is_kept_beside_it(tmp_path):
    """Your files set beside a stage's folder while a folder comes back go back into it; one of a
    name the folder brought back also holds stays, renamed, and the run says so."""
    from bayescal.workflow.restore import recover

    folder, beside = tmp_path / "b", tmp_path / ".b.yours"
    (folder / "store").mkdir(parents=True)
    (beside / "store").mkdir(parents=True)
    (folder / "notes.txt").write_text("brought back")
    (beside / "notes.txt").write_text("mine, newer")
    (beside / "store" / "mine.txt").write_text("mine")
    with pytest.warns(RuntimeWarning, match=r"notes.txt was also in the folder brought back: yours is "
                                            r"notes.txt.yours-1"):
        recover(folder)
    assert (folder / "notes.txt.yours-1").read_text() == "mine, newer"
    assert (folder / "store" / "mine.txt").read_text() == "mine" and not beside.exists()


def test_a_file_moved_with_the_same_content_is_named_as_moved():
    """A product outside the config's folder, moved with its project: its path counts (the stages
    that read it rerun), and check names the move, not a change of the old path's file."""
    from bayescal.workflow.keys import changed_inputs

    old = {"files": {"/a/x.nc": "h1", "/a/y.nc": "h2", "/a/z.nc": "h4"}}
    new = {"files": {"/b/x.nc": "h1", "/a/y.nc": "h3", "/b/w.nc": "h5"}}
    assert changed_inputs(old, new) == [
        "file /a/x.nc (moved to /b/x.nc, the same content: its path counts)",
        "file /a/y.nc", "file /a/z.nc", "file /b/w.nc"]


def test_a_changed_product_is_named_by_its_item_and_key():
    """``observations.products`` is a list of tables: an edit is named by item and key, a product
    added or left out by the count (the stage's key itself is the same as before: detail only)."""
    import copy

    from bayescal.workflow.keys import changed_inputs, stage_inputs, stage_key

    stage = Stage("s", lambda ctx: None, "s", reads=("observations.products",))
    cfg = {"observations": {"products": [{"variable": "nee", "sigma_floor": 0.2}, {"variable": "gpp"}]}}
    edited = copy.deepcopy(cfg)
    edited["observations"]["products"][0]["sigma_floor"] = 0.6
    added = copy.deepcopy(cfg)
    added["observations"]["products"].append({"variable": "lai"})
    old = stage_inputs(stage, cfg, {})
    assert changed_inputs(old, stage_inputs(stage, edited, {})) == ["observations.products[0].sigma_floor"]
    assert changed_inputs(old, stage_inputs(stage, added, {})) == ["observations.products (2 -> 3 items)"]
    assert stage_key("s", {k: v for k, v in old.items() if k != "detail"}) == stage_key("s", old)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_ctrl_c_dropped_in_a_finaliser_does_not_record_the_stage_as_done(tmp_path, signame):
    """A Ctrl-C (or SIGTERM) that lands in a finaliser is printed and dropped by Python: a report
    stage went on and was recorded as done. The engine raises it after the stage function and
    writes no record: the stage resumes next time."""
    import signal

    from bayescal.cli import Terminated, _terminate
    from bayescal.workflow import Engine

    signum = getattr(signal, signame)

    class Dropper:
        def __del__(self):
            signal.raise_signal(signum)
            sum(range(100))  # the handler runs here, inside the finaliser

    def a(ctx):
        Dropper()  # collected at once: its interrupt is dropped
        (ctx.run_dir / "a" / "out.txt").write_text("done")

    handler = signal.default_int_handler if signum == signal.SIGINT else _terminate
    before = signal.signal(signum, handler)
    try:
        engine = Engine(Workflow("toy", (Stage("a", a, "a", reads=("a.x",)),)),
                        _Context({"a": {"x": 1}}, tmp_path / "run"))
        engine.claim()
        with pytest.raises(Terminated if signum == signal.SIGTERM else KeyboardInterrupt):
            engine.run()
    finally:
        signal.signal(signum, before)
    folder = tmp_path / "run" / "a"
    assert (folder / "out.txt").exists() and not (folder / "stage.json").exists()
    assert [p.status for p in engine.plan()] == ["resume"]


def test_a_revised_stage_reruns_and_keeps_its_stores(tmp_path):
    """A stage whose code is revised (``Stage.revision``): a run directory of the earlier code
    reruns it and the stages after it, not those before; its stores are kept, also one that the
    earlier record has no key for, and no model runs again; revision 0 leaves keys as they were."""
    import dataclasses

    from bayescal.workflow import Engine, stage_key

    cfg = {"a": {"x": 1}, "b": {"y": 1}}
    flow = _toy_workflow({})
    engine = Engine(flow, _Context(cfg, tmp_path / "run"))
    engine.claim()
    engine.run()
    started = tmp_path / "run" / "b" / "started.json"
    record = json.loads(started.read_text())
    assert stage_key("b", record["inputs"]) == record["key"] and "revision" not in record["inputs"]
    started.write_text(json.dumps({**record, "stores": {}}))  # an earlier record: no store keys
    b = dataclasses.replace(flow.stage("b"), revision=1)
    revised = Workflow("toy", (flow.stage("a"), b))
    plan = Engine(revised, _Context(cfg, tmp_path / "run")).plan()
    assert [(p.status, p.kept) for p in plan] == [("reuse", []), ("rerun", ["store"])]
    assert plan[1].changed == ["the stage's code (revision 0 -> 1: CHANGELOG.md says what changed)"]
    ctx = _Context(cfg, tmp_path / "run")
    assert [r.status for r in Engine(revised, ctx).run()] == ["reused", "ran"] and ctx.runs == 0
    stored = sorted(p.name for p in (tmp_path / "run" / "b" / "store").iterdir())
    assert stored == ["0.json", "1.json", "2.json"]
    # a revision and another change: the store's own key decides (a.x is in it: not kept)
    plan = Engine(Workflow("toy", (flow.stage("a"), dataclasses.replace(b, revision=2))),
                  _Context({"a": {"x": 2}, "b": {"y": 1}}, tmp_path / "run")).plan()
    assert plan[1].kept == []
    # a store whose runs the new code makes otherwise has a revision of its own: not kept
    store = dataclasses.replace(b.keeps[0], revision=1)
    plan = Engine(Workflow("toy", (flow.stage("a"), dataclasses.replace(b, revision=2, keeps=(store,)))),
                  _Context(cfg, tmp_path / "run")).plan()
    assert [(p.status, p.kept) for p in plan] == [("reuse", []), ("rerun", [])]


def test_your_files_in_a_stage_folder_before_its_first_run_move_nothing_aside(tmp_path):
    """A note put in a stage's folder before the stage ever ran: the stage runs beside it, and
    nothing goes to .stale/ (an empty .stale/b-1 was made, said as "results moved")."""
    from bayescal.workflow import Engine

    engine = Engine(_toy_workflow({}), _Context({"a": {"x": 1}, "b": {"y": 1}}, tmp_path / "run"))
    engine.claim()
    (tmp_path / "run" / "b").mkdir(parents=True)
    (tmp_path / "run" / "b" / "notes.txt").write_text("mine")
    assert [r.status for r in engine.run()] == ["ran", "ran"]
    assert (tmp_path / "run" / "b" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "run" / ".stale").exists()


def test_your_files_in_a_rerun_stages_subfolders_stay_in_place(tmp_path):
    """A note in a store folder of a stage that reruns (optimize/design/ say) stays where it is,
    and the run says so; the stage's own files there (netCDF, JSON) go to .stale/."""
    from bayescal.workflow import Engine

    said = []

    def b(ctx):
        for sub in ("store/members", "chains"):
            (ctx.run_dir / "b" / sub).mkdir(parents=True, exist_ok=True)
        (ctx.run_dir / "b" / "store" / "members" / "member_000000.nc").write_text(str(ctx.config["b"]))
        (ctx.run_dir / "b" / "store" / "store.json").write_text("{}")
        (ctx.run_dir / "b" / "chains" / "round0.h5").write_text("chain")
        wave = ctx.run_dir / "b" / "chains" / "wave1_design.npy"  # a killed stage resumes with it
        wave.write_text(wave.read_text() if wave.exists() else str(ctx.config["b"]))

    class Context(_Context):
        def say(self, msg):
            said.append(msg)

    workflow = Workflow("toy", (Stage("b", b, "b", reads=("b",), writes=("store/", "chains/")),))
    Engine(workflow, Context({"b": {"y": 1}}, tmp_path / "run")).run()
    run = tmp_path / "run"
    (run / "b" / "store" / "my_design_notes.txt").write_text("mine")
    (run / "b" / "store" / "members" / "why.md").write_text("mine too")
    for left in ("members/member_000001.nc.tmp", "members/member_000002.nc.corrupt",
                 "round0_tempered.partial"):  # a killed run's, a check's, an SMC's
        (run / "b" / "store" / left).write_text("bayescal's")
    (run / "b" / "store" / "results.nc.txt").write_text("mine, named alike")
    Engine(workflow, Context({"b": {"y": 2}}, run)).run()
    for own in ("store/members/member_000001.nc.tmp", "store/members/member_000002.nc.corrupt",
                "store/round0_tempered.partial"):
        assert (run / ".stale" / "b-1" / own).exists() and not (run / "b" / own).exists()
    assert (run / "b" / "store" / "results.nc.txt").read_text() == "mine, named alike"
    # bayescal's, not yours: set aside, so the new inputs' run does not resume the old design
    assert (run / ".stale" / "b-1" / "chains" / "wave1_design.npy").read_text() == "{'y': 1}"
    assert (run / "b" / "chains" / "wave1_design.npy").read_text() == "{'y': 2}"
    assert (run / "b" / "store" / "my_design_notes.txt").read_text() == "mine"
    assert (run / "b" / "store" / "members" / "why.md").read_text() == "mine too"
    assert (run / ".stale" / "b-1" / "store" / "members" / "member_000000.nc").read_text() == "{'y': 1}"
    assert (run / ".stale" / "b-1" / "chains" / "round0.h5").exists()
    assert not list((run / ".stale").rglob("*.txt")) and not list((run / ".stale").rglob("*.md"))
    assert any(m.endswith("kept in place, not bayescal's: store/members/why.md, store/my_design_notes.txt, "
                          "store/results.nc.txt") for m in said), said


class _PoolContext(_Context):
    """Members run in other processes: the context cannot count them (the engine counts files)."""

    def model_runs(self):
        return None


@pytest.mark.parametrize("context", [_Context, _PoolContext])
def test_a_resumed_stage_counts_the_runs_its_stopped_invocations_counted(tmp_path, context):
    """A stage whose runs no store keeps (the site chain's) counts them in evaluations_progress.json;
    killed after 5 and resumed for 4 more, its record says 9 (it said 4: the last invocation's) --
    also when its context cannot count runs (a process pool: it said 0 when fresh)."""
    from bayescal.workflow import Engine
    from bayescal.workflow.engine import RUN_COUNT_FILE

    kill = [5]

    def chain(ctx):
        progress = ctx.run_dir / "c" / RUN_COUNT_FILE
        done = json.loads(progress.read_text())["runs"] if progress.exists() else 0
        for n in range(done, 9):
            if kill and n == kill[0]:
                kill.clear()
                raise KeyboardInterrupt  # killed, its count saved
            ctx.runs += 1
            progress.write_text(json.dumps({"runs": n + 1}))

    workflow = Workflow("toy", (Stage("c", chain, "c", reads=()),))
    engine = Engine(workflow, context({}, tmp_path / "run"))
    engine.claim()
    with pytest.raises(KeyboardInterrupt):
        engine.run()
    assert [(p.status, p.finished_runs) for p in engine.plan()] == [("resume", 5)]  # `bayescal check` says
    said = []
    resumed = context({}, tmp_path / "run")
    resumed.say = said.append
    recs = Engine(workflow, resumed).run()
    assert [(r.status, r.runs) for r in recs] == [("ran", 9)]
    assert any(m.startswith("[c] done in") and "9 model runs (5 of them by an earlier invocation, kept)" in m
               for m in said), said
    fresh = Engine(workflow, context({}, tmp_path / "fresh"))
    fresh.claim()
    assert [(r.status, r.runs) for r in fresh.run()] == [("ran", 9)]


def test_a_resume_after_a_rerun_that_kept_a_store_says_the_kept_runs_apart(tmp_path):
    """A rerun keeps the run count of its store (5 runs) and is killed after 2 of its 4 new runs;
    the resumed record says 4 runs and 5 kept (it said 9 runs and none kept: the kept ones
    relabelled as its own)."""
    from bayescal.workflow import Engine, RunStore
    from bayescal.workflow.engine import RUN_COUNT_FILE

    fail = {7: True}

    def chain(ctx):
        progress = ctx.run_dir / "c" / RUN_COUNT_FILE
        done = json.loads(progress.read_text())["runs"] if progress.exists() else 0
        for n in range(done, ctx.config["c"]["n"] + ctx.config["c"]["more"]):
            if fail.pop(n, False):
                raise KeyboardInterrupt  # killed, its count saved
            ctx.runs += 1
            progress.write_text(json.dumps({"runs": n + 1}))

    workflow = Workflow("toy", (Stage("c", chain, "c", reads=("c",),
                                      keeps=(RunStore(RUN_COUNT_FILE, reads=("c.n",)),)),))
    run = tmp_path / "run"
    engine = Engine(workflow, _Context({"c": {"n": 5, "more": 0}}, run))
    engine.claim()
    assert [(r.runs, r.kept_runs) for r in engine.run()] == [(5, 0)]
    with pytest.raises(KeyboardInterrupt):
        Engine(workflow, _Context({"c": {"n": 5, "more": 4}}, run)).run()
    recs = Engine(workflow, _Context({"c": {"n": 5, "more": 4}}, run)).run()
    assert [(r.status, r.runs, r.kept_runs) for r in recs] == [("ran", 4, 5)]


def test_a_stage_writing_beside_its_folder_sets_aside_only_its_own_files(tmp_path):
    """A stage that writes ``../figs/`` (as the report writes figures/): a rerun of other inputs
    sets aside the files it wrote, and leaves yours -- also after a run of it that was killed
    half-way (no record of what it wrote: the files that were there before it are yours)."""
    from bayescal.workflow import Engine

    def report(ctx):
        figs = ctx.run_dir / "figs"
        figs.mkdir(exist_ok=True)
        for i in range(2):
            (figs / f"fig{i}_{ctx.config['r']['t']}.png").write_text("figure")
            if ctx.config["r"]["t"] == "killed" and i == 0:
                raise KeyboardInterrupt

    flow = Workflow("toy", (Stage("r", report, "r", reads=("r.t",), writes=("../figs/",)),))
    run = tmp_path / "run"
    engine = Engine(flow, _Context({"r": {"t": "one"}}, run))
    engine.claim()
    engine.run()
    (run / "figs" / "mine.png").write_text("yours")
    with pytest.raises(KeyboardInterrupt):
        Engine(flow, _Context({"r": {"t": "killed"}}, run)).run()
    assert sorted(p.name for p in (run / "figs").iterdir()) == ["fig0_killed.png", "mine.png"]
    Engine(flow, _Context({"r": {"t": "three"}}, run)).run()
    assert sorted(p.name for p in (run / "figs").iterdir()) == ["fig0_three.png", "fig1_three.png",
                                                                  "mine.png"]
    stale = sorted(p.relative_to(run / ".stale").as_posix() for p in (run / ".stale").rglob("*.png"))
    assert stale == ["r-1/figs/fig0_one.png", "r-1/figs/fig1_one.png", "r-2/figs/fig0_killed.png"]


def test_run_directory_states_and_set_aside(tmp_path):
    from bayescal.workflow import check_run_dir, claim_run_dir, set_aside

    assert check_run_dir(tmp_path / "new") == "new"
    old = tmp_path / "old"  # an older bayescal's run directory: adopted
    (old / "screen").mkdir(parents=True)
    for name in ("config.json", "space.json"):
        (old / name).write_text("{}")
    assert check_run_dir(old) == "legacy"
    claim_run_dir(old, "global", ("screen",))
    assert check_run_dir(old) == "owned"
    (old / MARKER).write_text("{not json")  # a torn marker is bayescal's: set aside, rewritten
    with pytest.warns(RuntimeWarning, match="damaged record"):
        claim_run_dir(old, "global", ("screen",))
    assert json.loads((old / MARKER).read_text())["stages"] == ["screen"]
    assert set_aside(old, old / "screen").name == "screen-1"
    (old / "screen").mkdir()
    assert set_aside(old, old / "screen").name == "screen-2"


def test_checks_time_estimate_names_where_the_runs_go():
    from bayescal.cli import _where

    assert _where({"workers": 0, "scheduler": ""}) == "one process"
    assert "4 workers" in _where({"workers": 4, "scheduler": ""})
    assert "cluster" in _where({"workers": 0, "scheduler": "slurm"})


#: the main job's stage keys on this version: pinned, so that no change of the code reruns users'
#: run directories unnoticed (a stage whose keys change redoes its work, its model runs included,
#: in every run directory made before). A deliberate change (a new version, a stage's revision, a
#: key it now reads): update these and say in CHANGELOG.md what reruns.
MAIN_JOB_KEYS = {"screen": "81961fccdbe0ae6a", "optimize": "d36547db0d5fe7ee", "design": "3f6eeb674d767b90",
                 "emulate": "440f615af29fc8b1", "posterior": "1e2eb7c1b22a2c75",
                 "equifinality": "55e0f7b565a1a147", "propagate": "9ac2d48fbac02b86",
                 "report": "1e6cd21040f87838"}


def test_the_main_jobs_stage_keys_are_pinned(tmp_path):
    """The keys of examples/global_twin.toml (no file of a machine's own in them: the same in a
    clone anywhere), and equal with another ``model.chunk_size`` (how runs are made)."""
    root = Path(__file__).parent.parent
    cfg = load_config(root / "examples" / "global_twin.toml")
    keys = {name: key for name, (key, _) in make_context(cfg, tmp_path / "run").engine.keys().items()}
    assert keys == MAIN_JOB_KEYS
    cfg["model"]["chunk_size"] = 7
    keys = {name: key for name, (key, _) in make_context(cfg, tmp_path / "run").engine.keys().items()}
    assert keys == MAIN_JOB_KEYS


def test_a_python_files_key_is_the_same_on_every_python():
    """A model's source counts by its syntax tree written out the same way on every Python
    (``ast.dump`` is not: 3.12 added ``type_params=[]``, 3.13 leaves empty fields out): a project
    moved from Python 3.11 to 3.13 (ArviZ 1.x) keeps its stages. Checked against each other
    interpreter on this machine, and against the text every version must give."""
    import ast
    import inspect
    import shutil
    import subprocess
    import sys

    from bayescal.workflow.keys import _pieces, _syntax_text, _Text

    source = ("import numpy as np\n\n\nclass Model:\n    def __call__(self, theta, *, k: int = 2) -> dict:\n"
              "        return {'nee': np.sin(theta) ** k, 'f': f'{k!r:>3}', 'g': f'{k:{k}}{k:>{k}.{k}}'}\n")
    source += "def g(x):\n" + "".join(f"    {'el' if i else ''}if x == {i}:\n        return {i}\n"
                                      for i in range(600))  # deeper than ast.dump could write
    text = _syntax_text(ast.parse(source))
    assert _syntax_text(ast.parse("def f(x): pass")) == (
        "Module(body=[FunctionDef(name='f', args=arguments(args=[arg(arg='x')]), body=[Pass()])])")
    program = "import ast, sys\nprint(sys.version_info[:2])\n" + "\n".join(
        inspect.getsource(f) for f in (_Text, _syntax_text, _pieces)).replace("Any", "object")
    program += "\nprint(_syntax_text(ast.parse(sys.stdin.read())), end='')\n"
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [shutil.which(f"python3.{v}") for v in range(11, 15)]
    candidates += sorted(pyenv.glob("3.1[1-9]*/bin/python"))
    compared = set()
    for exe in filter(None, candidates):
        if subprocess.run([str(exe), "-c", "pass"], capture_output=True).returncode:
            continue  # a pyenv shim of a version not selected: nothing to compare with
        out = subprocess.run([str(exe), "-c", program], input=source, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        version, _, got = out.stdout.partition("\n")
        assert got == text, version
        compared.add(version)
    print("compared with", sorted(compared), "on", sys.version_info[:2])


def test_a_comment_in_a_toml_or_python_input_keeps_the_stages_that_read_it(tmp_path):
    """A parameters file or a model's source counts by its values / syntax tree: a comment or
    another layout keeps the stage's key; a changed value or statement changes it; a file that
    does not parse counts byte for byte."""
    from bayescal.workflow.keys import stage_inputs, stage_key

    space, model = tmp_path / "space.toml", tmp_path / "model.py"
    stage = Stage("s", lambda ctx: None, "a stage", input_files=lambda cfg: [space, model])

    def key():
        return stage_key("s", stage_inputs(stage, {"run": {"config_dir": str(tmp_path)}}, {}))

    def write(path, text):  # a new size and mtime: the digest cache cannot answer for the old text
        path.write_text(text)
        os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)

    write(space, '[vmax]\nlower = 10.0\nupper = 90.0\n')
    write(model, 'def f(x):\n    return 2 * x\n')
    first = key()
    write(space, '# tuned by hand\n[vmax]\nlower = 10.0   # umol m-2 s-1\nupper = 90.0\n\n')
    write(model, '# my model\ndef f(x):\n\n    return 2*x  # doubled\n')
    assert key() == first
    write(space, '[vmax]\nlower = 10.0\nupper = 95.0\n')
    assert key() != first
    write(space, '[vmax]\nlower = 10.0\nupper = 90.0\n')
    assert key() == first
    write(model, 'def f(x):\n    return 3 * x\n')
    assert key() != first
    write(model, 'def f(x):\n    return 2 * x\n')
    assert key() == first
    write(space, '[kmax]\nlower = 1.0\n[vmax]\nlower = 10.0\nupper = 90.0\n')
    ordered = key()
    write(space, '[vmax]\nlower = 10.0\nupper = 90.0\n[kmax]\nlower = 1.0\n')  # the order of the tables
    assert key() not in (first, ordered)
    write(space, '[vmax]\nsince = 2001-01-01\n')
    dated = key()
    write(space, '[vmax]\nsince = "2001-01-01"\n')  # a string is not the date
    assert key() != dated
    write(model, '#!/usr/bin/env python3.11\ndef f(x):\n    return 2 * x\n')  # the interpreter of ./model.py
    assert key() != dated
    write(space, '[vmax]\nlower = 10.0\nupper = \n')  # not TOML: its bytes count
    broken = key()
    write(space, '[vmax]\nlower = 10.0\nupper =  \n')
    assert key() not in (first, broken)


def _posterior_draws(run: Path) -> np.ndarray:
    from bayescal.posterior import load_inference_data, unit_samples

    return unit_samples(load_inference_data(run / "posterior" / "posterior.nc"), RunDir(run).space()).values


def test_more_refinement_rounds_continue_the_earlier_ones(site_run, tmp_path):
    """posterior.refine_rounds raised after the route said it did not converge: the earlier
    rounds' runs and chains are kept (seeded rounds: the same points), only the new round's runs
    are made, and the posterior is a fresh run's with that many rounds, bit for bit; back to
    fewer rounds, no model run and the first posterior again."""
    cfg, run, _, _ = site_run
    first = _posterior_draws(run)
    copy = _copy(run, tmp_path)
    round0 = (copy / "posterior" / "refine" / "round0").stat()
    kept = _kept(cfg, copy, _set("posterior.refine_rounds", 2))
    assert kept["posterior"] == ["optimum_run", "refine", "chains"]
    done = _rerun(cfg, copy, ("optimize", "posterior"), _set("posterior.refine_rounds", 2))
    assert done["optimize"][0] == "reused" and done["posterior"][0] == "ran" and done["posterior"][1] <= 3
    assert (copy / "posterior" / "refine" / "round0").stat().st_ino == round0.st_ino
    fresh = tmp_path / "fresh"
    shutil.copytree(run.parent, fresh, ignore=shutil.ignore_patterns("run"))
    fresh_cfg = load_config(fresh / "site.toml")
    fresh_cfg["posterior"]["refine_rounds"] = 2
    make_context(fresh_cfg, progress=False).run(("optimize", "posterior"))
    np.testing.assert_array_equal(_posterior_draws(copy), _posterior_draws(fresh / "run"))
    done = _rerun(cfg, copy, ("optimize", "posterior"))
    assert done["posterior"] == ("ran", 0)
    np.testing.assert_array_equal(_posterior_draws(copy), first)


def test_a_higher_max_steps_continues_the_direct_routes_chain(tmp_path):
    """posterior.max_steps raised (the route said the chain is short): the chain is continued, not
    run again from its first step, and equals a fresh run's of that length bit for bit; lowered
    again, the longer chain is set aside (not this run's) and the first posterior comes back."""
    # the default 1,000 particles: the bound below is a tenth of the first run's runs, SMC's mostly
    cfg = load_config(_site_config(tmp_path, route="direct", n_particles=1000))
    run = Path(cfg["run"]["output"])
    make_context(cfg, progress=False).run(("optimize", "posterior"))
    first = _posterior_draws(run)
    runs = json.loads((run / "posterior" / "evaluations.json").read_text())["runs"]
    assert {"optimum_run", "chain.h5", "evaluations_progress.json"} <= set(
        _kept(cfg, run, _set("posterior.max_steps", 400))["posterior"])
    done = _rerun(cfg, run, ("optimize", "posterior"), _set("posterior.max_steps", 400))
    assert done["posterior"][0] == "ran"
    steps = json.loads((run / "posterior" / "evaluations.json").read_text())
    assert steps["resumed_at_step"] == 100
    import emcee

    assert emcee.backends.HDFBackend(str(run / "posterior" / "chain.h5"), read_only=True).iteration == 400
    # the 300 new steps of 8 walkers and the draws' pointwise terms, not the SMC and chain again
    assert 300 * 8 <= steps["runs"] - runs < runs / 10
    fresh = tmp_path / "fresh"
    fresh_cfg = json.loads(json.dumps(cfg))
    fresh_cfg["run"]["output"] = str(fresh)
    fresh_cfg["posterior"]["max_steps"] = 400
    make_context(fresh_cfg, progress=False).run(("optimize", "posterior"))
    np.testing.assert_array_equal(_posterior_draws(run), _posterior_draws(fresh))
    _rerun(cfg, run, ("optimize", "posterior"))
    np.testing.assert_array_equal(_posterior_draws(run), first)
    assert len(list((run / ".stale").glob("chain.h5-*"))) == 1


def test_a_site_model_runs_its_members_on_worker_processes_as_in_this_one(site_run, tmp_path):
    """run.workers on the site route (a costly model's design and refinement runs side by side):
    the same model runs, finished and stored, and the same posterior as the serial run, its
    records counting the runs from the stores' member files."""
    cfg, run, _, _ = site_run
    pooled = json.loads(json.dumps(cfg))
    pooled["run"].update(workers=2, output=str(tmp_path / "pooled"))
    pooled["design"]["batch_size"] = 3  # several batches: the pool is used
    recs = {r.name: r for r in make_context(pooled, progress=False).run(("optimize", "posterior"))}
    for rel in ("optimize/design", "posterior/refine/round0"):
        a, b = (EnsembleStore(d / rel).load().drop_vars("wall_time") for d in (run, tmp_path / "pooled"))
        xr.testing.assert_identical(a, b)
    assert recs["optimize"].runs == len(list((run / "optimize" / "design" / "members").glob("*.nc")))
    np.testing.assert_array_equal(_posterior_draws(tmp_path / "pooled"), _posterior_draws(run))
