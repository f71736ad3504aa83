"""Ensembles on a real SLURM cluster through dask-jobqueue, from the config's ``[run]`` table.

The SLURM tests need a running cluster: ``.ci/start_slurm.sh`` (as root) installs Debian's
slurm-wlm and munge and starts a one-node cluster on this machine. Without one they are skipped
with the reason (the script's own, when it could not start the cluster) -- never passed. The
executor tests above them need no SLURM.
"""

import contextlib
import os
import shutil
import subprocess
import threading
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from bayescal.run.cluster import ClusterError, check_run_config, make_executor
from bayescal.run.ensemble import EnsembleStore, run_ensemble
from bayescal.testing import ToySimulator

STATE_DIR = Path(os.environ.get("SLURM_CI_DIR", "/var/spool/bayescal-slurm"))


def design(n, seed=0, k=4):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, k))
    return xr.DataArray(x, dims=("member", "parameter"),
                        coords={"member": np.arange(n), "parameter": [f"p{i}" for i in range(k)]})


def mtimes(store: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (store / "members").glob("member_*.nc")}


def assert_same_store(a: Path, b: Path) -> None:
    xr.testing.assert_identical(EnsembleStore(a).load().drop_vars("wall_time"),
                                EnsembleStore(b).load().drop_vars("wall_time"))


# ------------------------------------------------------------------ executors without SLURM
def test_run_config_routes_and_named_errors():
    with make_executor({}) as ex:
        assert ex.executor is None and ex.kind == "serial"
    with make_executor({"workers": 3}) as ex:
        assert ex.executor == 3 and ex.kind == "processes"
    aliases = {"scheduler": "slurm", "slurm": {"partition": "debug", "n_workers": 4}}
    assert check_run_config(aliases) == "slurm"
    assert check_run_config({"scheduler": "inproc://10.0.0.1/123/1"}) == "dask"  # processes=False
    bad = [
        ({"workers": 2, "scheduler": "slurm"}, "two executors"),
        ({"workers": -1}, "'run.workers' must be >= 0"),
        ({"scheduler": "localhost:8786"}, "'run.scheduler' must be"),
        ({"scheduler": "tcp://host"}, "'run.scheduler' must be"),
        ({"scheduler": "tcp://host:99999"}, "'run.scheduler' must be"),
        ({"scheduler": "tls://host:8786"}, "'run.scheduler' must be"),
        ({"slurm": {"jobs": 2}}, r"\[run.slurm\] is read only with"),
        ({"scheduler": "slurm", "slurm": {"cpus": 2}}, r"unknown key\(s\) \['cpus'\]"),
        ({"scheduler": "slurm", "slurm": {"jobs": "2"}}, "'run.slurm.jobs' must be int"),
        ({"scheduler": "slurm", "slurm": {"jobs": 0}}, "'run.slurm.jobs' must be >= 1"),
        ({"scheduler": "slurm", "slurm": {"memory": "lots"}}, "'run.slurm.memory' must be"),
        ({"scheduler": "slurm", "slurm": {"walltime": "1h"}}, "'run.slurm.walltime' must be"),
        ({"scheduler": "slurm", "slurm": {"queue": "a", "partition": "b"}}, "the same key"),
        ({"scheduler": "slurm", "slurm": {"job_extra_directives": "--qos=x"}}, "must be list"),
        ({"scheduler": "slurm", "slurm": {"jobs": 2, "wait_for_workers": 3}}, "more workers than the jobs"),
    ]
    for cfg, match in bad:
        with pytest.raises(ClusterError, match=match):
            make_executor(cfg)
    assert issubclass(ClusterError, ValueError)


def test_unreachable_scheduler_is_a_named_error_within_seconds():
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match=r"'run.scheduler': no Dask scheduler answers at tcp://127.0.0.1:9"):
        make_executor({"scheduler": "tcp://127.0.0.1:9"})
    assert time.monotonic() - t0 < 30


def test_a_scheduler_that_does_not_answer_stops_check_and_run_before_any_model_run(tmp_path, capsys):
    """``bayescal check`` tries the address (it said "valid" before), ``bayescal run`` starts the
    executor before its stages (it ran the model at its defaults first): exit 2 naming the key,
    no stage begun."""
    from bayescal.cli import main
    from bayescal.run.cluster import probe_executor

    tiny = (Path(__file__).parent / "data" / "tiny.toml").read_text()
    cfg = tmp_path / "c.toml"
    cfg.write_text(tiny.replace("[run]\n", '[run]\nscheduler = "tcp://127.0.0.1:9"\n', 1))
    for argv in (["check", str(cfg)], ["run", str(cfg), "--run-dir", str(tmp_path / "run"), "--quiet"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "'run.scheduler': no Dask scheduler answers at tcp://127.0.0.1:9" in err
        assert "Traceback" not in err
    assert not [p.name for p in (tmp_path / "run").iterdir() if p.is_dir()]  # no stage began
    assert probe_executor({}) is None and probe_executor({"workers": 2}) is None
    with pytest.raises(ClusterError, match=r"unknown key\(s\) \['partiton'\] in \[run.slurm\]; did you mean "
                                           r"'partition'\? .*'partition' for 'queue'"):
        check_run_config({"scheduler": "slurm", "slurm": {"partiton": "debug"}})


def test_scheduler_address_route(tmp_path):
    from distributed import LocalCluster

    sim = ToySimulator(raise_above=0.9)
    d = design(8)
    run_ensemble(sim, d, tmp_path / "ref", batch_size=2, progress=False)
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp://",
                      host="127.0.0.1", dashboard_address=None) as cluster:
        with make_executor({"scheduler": cluster.scheduler_address}) as ex:
            assert ex.kind == "dask" and "the Dask scheduler at tcp://127.0.0.1:" in str(ex)
            run_ensemble(sim, d, tmp_path / "dask", executor=ex.executor, batch_size=2, progress=False)
        assert ex.executor is None  # closed
    assert_same_store(tmp_path / "dask", tmp_path / "ref")


# ------------------------------------------------------------------ a real SLURM cluster
def _slurm_unavailable() -> str | None:
    """Why the SLURM tests cannot run here, or None."""
    why = ""
    if (STATE_DIR / "unavailable").exists():
        why = f" (.ci/start_slurm.sh: {(STATE_DIR / 'unavailable').read_text().strip()})"
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        return f"no SLURM here: sinfo/sbatch not found; start one with `.ci/start_slurm.sh` as root{why}"
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError) as err:
        return f"sinfo failed: {err}{why}"
    if out.returncode != 0:
        said = (out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1]
        return f"SLURM is not running: sinfo: {said}{why}"
    states = out.stdout.split()
    if not any(s in ("idle", "mixed", "allocated", "completing") for s in states):
        return f"no SLURM node up (sinfo states: {states or 'none'}){why}"
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError as err:
        return f"dask-jobqueue is not installed (pip install 'bayescal[dask]'): {err}"
    return None


_WHY = _slurm_unavailable()
needs_slurm = pytest.mark.skipif(_WHY is not None, reason=f"SLURM tests skipped: {_WHY}")

SLURM_TOML = """
[run]
scheduler = "slurm"

[run.slurm]
jobs = 2
cores = 1
memory = "1GB"
walltime = "00:10:00"
interface = "lo"            # one host: scheduler and workers on the loopback
death_timeout = 15
wait_for_workers = 2
wait_timeout = 150
dashboard_address = "127.0.0.1:0"
"""


def slurm_run_config(tmp_path: Path) -> dict:
    run = tomllib.loads(SLURM_TOML)["run"]
    run["slurm"].update(log_directory=str(tmp_path / "slurm-logs"), local_directory=str(tmp_path / "dask"))
    return run


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """Two SLURM jobs, each a Dask worker, from the config, shared by this module's tests (the
    cancel test, last, takes one of them away); their jobs are cancelled afterwards."""
    with make_executor(slurm_run_config(tmp_path_factory.mktemp("slurm"))) as ex:
        assert ex.kind == "slurm" and len(ex.executor.nthreads()) == 2
        yield ex


@needs_slurm
@pytest.mark.slow
def test_embedded_model_ensemble_on_slurm_equals_the_in_process_run(tmp_path, slurm):
    from bayescal.models import LandCarbonModel, make_drivers, make_grid
    from bayescal.parameters.design import latin_hypercube

    jobs = slurm.executor.run(os.getenv, "SLURM_JOB_ID")  # the workers really are SLURM jobs
    assert jobs and all(jobs.values()), jobs
    # the embedded model, small: 18 cells, 5 years, one thread per worker
    grid = make_grid(n_cells=18, seed=3)
    drivers = make_drivers(grid, start=2000, end=2004, ramp_start=1996, seed=3)
    model = LandCarbonModel(grid=grid, drivers=drivers, chunk_size=2, n_threads=1)
    space = model.space
    full = space.to_dataarray(space.expand(latin_hypercube(space, 4, seed=4).values), full=True)
    keep = ["gpp_global", "nbp_global", "lai"]
    run_ensemble(model, full, tmp_path / "lcm-ref", batch_size=2, keep=keep, progress=False)
    run_ensemble(model, full, tmp_path / "lcm", executor=slurm.executor, batch_size=2, keep=keep,
                 progress=False)
    assert_same_store(tmp_path / "lcm", tmp_path / "lcm-ref")


@needs_slurm
@pytest.mark.slow
def test_bayescal_run_with_run_scheduler_slurm_stores_the_in_process_members(tmp_path):
    """A small calibration from its config file: ``bayescal run --until design`` with ``[run]
    scheduler = "slurm"`` (its own two worker jobs) makes the optimiser's and the design's model
    runs through SLURM, and stores exactly the members of the same config run in-process."""
    import sys

    tiny = (Path(__file__).parent / "data" / "tiny.toml").read_text()
    run = slurm_run_config(tmp_path)
    slurm_table = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in run["slurm"].items())
    configs = {"inproc": tiny, "slurm": tiny.replace('[run]\n', '[run]\nscheduler = "slurm"\n', 1)
               + f"\n[run.slurm]\n{slurm_table}\n"}
    for name, text in configs.items():
        (tmp_path / f"{name}.toml").write_text(text)
        proc = subprocess.run([sys.executable, "-m", "bayescal", "run", str(tmp_path / f"{name}.toml"),
                               "--run-dir", str(tmp_path / name), "--until", "design", "--quiet"],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    logs = list((tmp_path / "slurm-logs").glob("*"))
    assert logs, "no SLURM job wrote a log: the runs did not go through SLURM"
    assert_same_store(tmp_path / "slurm" / "design" / "ensemble", tmp_path / "inproc" / "design" / "ensemble")
    opt = sorted(p.name for p in (tmp_path / "inproc" / "optimize" / "runs").iterdir())
    assert opt and opt == sorted(p.name for p in (tmp_path / "slurm" / "optimize" / "runs").iterdir())
    for batch in opt:
        assert_same_store(tmp_path / "slurm" / "optimize" / "runs" / batch,
                          tmp_path / "inproc" / "optimize" / "runs" / batch)


@needs_slurm
def test_a_worker_job_slurm_refuses_is_a_named_error(tmp_path):
    run = slurm_run_config(tmp_path)
    run["slurm"]["partition"] = "no-such-partition"
    with pytest.raises(ClusterError, match="SLURM refuses the worker job: .*partition"):
        make_executor(run)
    from bayescal.run.cluster import probe_executor  # bayescal check: the same answer, no job submitted

    with pytest.raises(ClusterError, match="SLURM refuses the worker job: .*partition"):
        probe_executor(run)
    assert probe_executor(slurm_run_config(tmp_path)) == "SLURM accepts the worker job (sbatch --test-only)"


def _cancel_a_busy_job(client, store: Path, jobs: dict, done: dict, deadline: float) -> None:
    """Once a few members are stored, ``scancel`` the SLURM job of a worker that is running one."""
    while time.monotonic() < deadline:
        n_stored = len(mtimes(store)) if (store / "members").exists() else 0
        busy = [addr for addr, keys in client.processing().items() if keys and addr in jobs]
        if n_stored >= 3 and busy:
            done["before"] = mtimes(store)
            done["job"] = jobs[busy[0]]
            subprocess.run(["scancel", done["job"]], check=True, timeout=30)
            return
        time.sleep(0.1)


@needs_slurm
@pytest.mark.slow
@pytest.mark.parametrize("retries", ["dask-default", "none"])
def test_a_cancelled_job_costs_only_its_members_and_the_resume_reruns_them(tmp_path, retries, request):
    """scancel one of the two worker jobs while members run. With Dask's default retries the run
    finishes on the other worker (or raises); with none (allowed-failures = 0) Dask gives the lost
    batches up and bayescal sends them again, to the other worker: the run finishes. Either way
    the resume runs exactly the missing members, leaves every stored one untouched, and the store
    equals the in-process run's -- failed members included."""
    import dask

    slow, fast = (ToySimulator(raise_above=0.85, nan_above=0.9, sleep=s) for s in (0.5, 0.0))
    d, n = design(12, seed=3), 12
    ref, store = tmp_path / "ref", tmp_path / "store"
    run_ensemble(fast, d, ref, progress=False)
    assert EnsembleStore(ref).status()["status"].values.tolist().count("failed") == 3
    if retries == "dask-default":  # the module's cluster, workers warm
        ex = contextlib.nullcontext(request.getfixturevalue("slurm"))
    else:
        with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
            ex = make_executor(slurm_run_config(tmp_path))
    with ex as ex:
        client = ex.executor
        jobs = client.run(os.getenv, "SLURM_JOB_ID")  # worker address -> its SLURM job
        assert len(set(jobs.values())) == 2, jobs
        cancelled: dict = {}
        killer = threading.Thread(target=_cancel_a_busy_job, daemon=True,
                                  args=(client, store, jobs, cancelled, time.monotonic() + 120))
        killer.start()
        try:
            summary = run_ensemble(slow, d, store, executor=client, progress=False)
            outcome = f"completed ({summary.done} done)"
        except Exception as err:  # noqa: BLE001 - a lost worker may stop the run; the resume follows
            summary, outcome = None, f"raised {type(err).__name__}: {err}"
        killer.join(130)
        assert "job" in cancelled, "no worker job was cancelled while members ran"
        gone = subprocess.run(["squeue", "-h", "-j", cancelled["job"], "-o", "%T"], capture_output=True,
                              text=True, timeout=30).stdout.strip()
        assert gone in ("", "CANCELLED", "COMPLETING"), f"job {cancelled['job']} still {gone}"
    print(f"run with job {cancelled['job']} cancelled after {len(cancelled['before'])} members: {outcome}")
    if retries == "dask-default" and summary is not None:
        assert summary.done + summary.failed == n  # the other worker ran the cancelled job's members
    if retries == "none":  # Dask gave the lost batches up; bayescal sent them again
        assert summary is not None and summary.done + summary.failed == n, outcome
    stored = mtimes(store)
    assert set(cancelled["before"]) <= set(stored)
    resumed = run_ensemble(fast, d, store, progress=False)  # in this process (same outputs, no sleep)
    assert resumed.already_done == len(stored) and resumed.ran == n - len(stored)
    after = mtimes(store)
    assert len(after) == n
    for name, mtime in stored.items():  # nothing finished was run again
        assert after[name] == mtime, name
    assert_same_store(store, ref)
