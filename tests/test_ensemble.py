"""The ensemble runner: failures, resume after kill -9, executors, the store."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import xarray as xr

from bayescal.run.ensemble import EnsembleStore, run_ensemble
from bayescal.testing import ToySimulator


def design(n=24, p=4, seed=0):
    rng = np.random.default_rng(seed)
    return xr.DataArray(rng.random((n, p)), dims=("member", "parameter"),
                        coords={"member": np.arange(n), "parameter": [f"x{i}" for i in range(p)]})


def test_failures_are_exactly_the_failing_subset(tmp_path):
    sim = ToySimulator(raise_above=0.85, nan_above=0.9, report_above=0.92)
    d = design(40)
    summary = run_ensemble(sim, d, tmp_path / "store", batch_size=7, progress=False)
    expected = sim.expected_failures(d.values)
    assert expected.any() and not expected.all()
    ens = EnsembleStore(tmp_path / "store").load()
    failed = ens.status.values == "failed"
    np.testing.assert_array_equal(failed, expected)
    assert summary.failed == expected.sum() and summary.done == (~expected).sum()
    reasons = ens.reason.values
    for m in np.flatnonzero(expected):
        x = d.values[m]
        if x[0] > 0.85:
            assert "RuntimeError: toy model crashed" in reasons[m]
        elif x[2] > 0.92:
            assert reasons[m] == "toy model reports failure"
        else:
            assert reasons[m] == "non-finite output in y"
    # the other members are correct
    ok = ~expected
    direct = ToySimulator()(d.values[ok])
    np.testing.assert_allclose(ens.y.values[ok], direct.y.values, rtol=1e-12, atol=1e-14)
    assert np.isnan(ens.y.values[expected]).all()
    assert "failed: " in str(summary)


def test_resume_runs_only_missing_members(tmp_path):
    sim = ToySimulator()
    d = design(10)
    run_ensemble(sim, d, tmp_path / "s", progress=False)
    first = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s" / "members").iterdir()}
    (tmp_path / "s" / "members" / "member_000003.nc").unlink()
    (tmp_path / "s" / "members" / "member_000007.nc.tmp").write_text("half-written")
    summary = run_ensemble(sim, d, tmp_path / "s", progress=False)
    assert summary.ran == 1 and summary.already_done == 9
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "s" / "members").iterdir()}
    assert "member_000007.nc.tmp" not in after
    for name, mtime in first.items():
        if name != "member_000003.nc":
            assert after[name] == mtime
    with pytest.raises(ValueError, match="holds a different design"):
        run_ensemble(sim, design(10, seed=1), tmp_path / "s", progress=False)


def test_a_store_set_aside_lends_its_done_runs_at_the_same_values_and_nothing_else(tmp_path):
    """After an edit that changes some members, the new store takes the old one's done runs at
    equal parameter vectors (copied: the same outputs, status and file time; listed as adopted)
    and runs the rest; a failed run, another model's store (identity), other parameter names or
    fewer kept outputs lend nothing."""
    import json

    from bayescal.run.reuse import adopt_members, adopted_count, lenders

    calls = []

    def sim(theta):
        calls.append(np.asarray(theta).shape[0])
        return ToySimulator(raise_above=0.95)(theta)

    old = design(12)
    old.values[5, 0] = 0.99  # fails
    stale = tmp_path / "run" / ".stale" / "oat-1" / "ensemble"
    run_ensemble(sim, old, stale, progress=False, runs="model A", keep=["y"])
    new = old.copy(data=old.values.copy())
    new.values[[0, 1], 2] += 0.1  # two members changed by the edit; 5 failed before
    store = tmp_path / "run" / "oat" / "ensemble"
    lent = lenders(tmp_path / "run", "model A", store)
    assert [s.path for s in lent] == [stale] and lenders(tmp_path / "run", "model B", store) == []
    calls.clear()
    summary = run_ensemble(sim, new, store, progress=False, runs="model A", keep=["y"], lenders=lent)
    assert summary.adopted == 9 and summary.ran == 3 and sum(calls) == 3  # 0, 1 and the failed 5
    assert adopted_count(store) == 9 and json.loads((store / "adopted.json").read_text()) == \
        [2, 3, 4, 6, 7, 8, 9, 10, 11]
    a, b = EnsembleStore(store).load(), EnsembleStore(stale).load()
    xr.testing.assert_identical(a.drop_vars(["theta"]).isel(member=slice(6, 12)),
                                b.drop_vars(["theta"]).isel(member=slice(6, 12)))
    fresh = run_ensemble(ToySimulator(raise_above=0.95), new, tmp_path / "fresh", progress=False, keep=["y"])
    assert fresh.ran == 12
    np.testing.assert_array_equal(a["y"].values, EnsembleStore(tmp_path / "fresh").load()["y"].values)
    for m in (3, 9):
        assert (store / "members" / f"member_{m:06d}.nc").stat().st_mtime_ns == \
            (stale / "members" / f"member_{m:06d}.nc").stat().st_mtime_ns
    # nothing from a store that kept fewer outputs, or of other parameter names
    more = tmp_path / "run" / "oat" / "more"
    assert adopt_members(EnsembleStore(more), new.values, ["x0", "x1", "x2", "x3"], list(range(12)),
                         lent, ["y", "z"]) == []
    assert adopt_members(EnsembleStore(more), new.values, ["a", "b", "c", "d"], list(range(12)), lent,
                         ["y"]) == []


KILL_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np, xarray as xr
    from bayescal.run.ensemble import run_ensemble
    from bayescal.testing import ToySimulator
    rng = np.random.default_rng(0)
    d = xr.DataArray(rng.random((30, 4)), dims=("member", "parameter"),
                     coords={"member": np.arange(30), "parameter": ["a", "b", "c", "d"]})
    run_ensemble(ToySimulator(sleep=float(sys.argv[2]), nan_above=0.8), d, sys.argv[1], progress=False)
""")


def test_killed_run_resumes_to_identical_store(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(KILL_SCRIPT)
    store = tmp_path / "killed"
    # 0.4 s members: after the 8th is seen, the kill must come before 22 more (~9 s) under any load
    proc = subprocess.Popen([sys.executable, str(script), str(store), "0.4"])
    members = store / "members"
    deadline = time.time() + 60
    while time.time() < deadline:
        if members.exists() and len(list(members.glob("member_*.nc"))) >= 8:
            break
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = {p.name: p.stat().st_mtime_ns for p in members.glob("member_*.nc")}
    assert 8 <= len(done_before) < 30
    subprocess.run([sys.executable, str(script), str(store), "0.0"], check=True)
    for name, mtime in done_before.items():  # nothing finished was recomputed
        assert (members / name).stat().st_mtime_ns == mtime
    reference = tmp_path / "reference"
    subprocess.run([sys.executable, str(script), str(reference), "0.0"], check=True)
    a, b = EnsembleStore(store).load(), EnsembleStore(reference).load()
    xr.testing.assert_identical(a.drop_vars("wall_time"), b.drop_vars("wall_time"))


POOL_SIM = textwrap.dedent("""
    import os, time
    import numpy as np, xarray as xr

    class SlowLogged:
        def __init__(self, log):
            self.log = log

        def __call__(self, theta):
            with open(self.log, "a") as fh:
                fh.write(f"{os.getpid()}\\n")
            time.sleep(0.5)
            return xr.Dataset({"y": ("member", theta[:, 0])})
""")
POOL_SCRIPT = textwrap.dedent("""
    import signal, sys
    # Ctrl-C as at a terminal: a suite started in the background (`pytest &`, a CI script) has
    # SIGINT ignored, and a child Python keeps an ignored SIGINT ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from poolsim import SlowLogged
    from bayescal.run.ensemble import run_ensemble
    if __name__ == "__main__":
        run_ensemble(SlowLogged(sys.argv[2]), np.random.default_rng(0).random((40, 2)), sys.argv[3],
                     executor=2, batch_size=1, progress=False)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_pool_workers_stop_when_the_runner_is_killed(tmp_path):
    """The property, free of timing windows: once the runner is SIGKILLed its pool workers exit
    (however loaded the machine) and, once they are gone, no member starts any more; they never
    run the whole design."""
    (tmp_path / "poolsim.py").write_text(POOL_SIM)
    (tmp_path / "run.py").write_text(POOL_SCRIPT)
    log = tmp_path / "starts.log"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), str(tmp_path), str(log),
                             str(tmp_path / "store")])
    deadline = time.time() + 120
    def both_workers_started() -> bool:  # the pool has 2 workers; know both before the kill
        lines = log.read_text().split() if log.exists() else []
        return len(lines) >= 3 and len(set(lines)) == 2

    while time.time() < deadline and not both_workers_started():
        time.sleep(0.02)
    assert both_workers_started(), "the pool's two workers never started members"
    os.kill(proc.pid, signal.SIGKILL)  # the runner only, as the OOM killer or a scheduler would
    proc.wait()
    workers = {int(p) for p in log.read_text().split()}
    deadline = time.time() + 120  # generous: only a hung worker reaches it
    while time.time() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers), "pool workers outlived the runner"
    started = log.read_text().split()
    assert {int(p) for p in started} == workers, "a new worker started after the runner died"
    assert len(started) < 40, "workers ran the whole design after the runner died"


def test_ctrl_c_stops_the_pool_without_running_the_queued_batches(tmp_path):
    """Ctrl-C at a terminal (SIGINT to the runner's whole process group, workers included): the
    runner stops, its workers are terminated rather than waited for -- no batch starts after
    the runner has gone, and the design is not run to its end -- and what finished is kept."""
    (tmp_path / "poolsim.py").write_text(POOL_SIM)
    (tmp_path / "run.py").write_text(POOL_SCRIPT)
    log = tmp_path / "starts.log"
    proc = subprocess.Popen([sys.executable, str(tmp_path / "run.py"), str(tmp_path), str(log),
                             str(tmp_path / "store")], start_new_session=True, stderr=subprocess.PIPE)
    members = tmp_path / "store" / "members"
    deadline = time.time() + 120
    while time.time() < deadline and not (members.is_dir() and any(members.glob("member_*.nc"))):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and b"KeyboardInterrupt" in err, (proc.returncode, err[-3000:])
    workers = {int(p) for p in log.read_text().split()}
    assert not any(_alive(pid) for pid in workers), "pool workers outlived the interrupted runner"
    started = len(log.read_text().split())
    time.sleep(1.0)  # a worker left running would start another 0.5 s member by now
    assert len(log.read_text().split()) == started < 40
    finished = EnsembleStore(tmp_path / "store").finished()
    assert 0 < len(finished) <= started


SLOW_CLEANUP_SCRIPT = textwrap.dedent("""
    import os, signal, sys, threading, time
    import multiprocessing.synchronize as ms
    from multiprocessing.resource_tracker import unregister
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from poolsim import SlowLogged
    from bayescal.cli import _exit_at_once
    from bayescal.run import ensemble

    def slow_cleanup(name):  # the semaphore unlinked, the tracker told later (a loaded machine)
        ms.sem_unlink(name)
        if threading.current_thread() is not threading.main_thread():
            time.sleep(0.5)
        unregister(name, "semaphore")

    ms.SemLock._cleanup = staticmethod(slow_cleanup)
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
    try:
        ensemble._run_on_pool(2, SlowLogged(sys.argv[2]), np.zeros((8, 2)),
                              [np.array([i]) for i in range(8)], None, lambda result: None)
    except KeyboardInterrupt:
        _exit_at_once(130)
""")


def test_an_interrupted_pool_is_cleaned_up_before_the_exit_at_once(tmp_path):
    """After Ctrl-C the pool's manager thread frees its queues while the runner exits at once
    (``bayescal.cli.entry``): the runner waits for it, so the resource tracker is told of every
    semaphore unlinked -- no "leaked semaphore" report, even when the tracker is told late."""
    (tmp_path / "poolsim.py").write_text(POOL_SIM)
    (tmp_path / "run.py").write_text(SLOW_CLEANUP_SCRIPT)
    proc = subprocess.run([sys.executable, str(tmp_path / "run.py"), str(tmp_path), str(tmp_path / "log")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "leaked" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]


class _Dropper:
    """Raises SIGINT in its finaliser: the KeyboardInterrupt is raised inside ``__del__``, where
    Python prints and drops it -- as a Ctrl-C that lands while the garbage collector runs."""

    def __del__(self):
        signal.raise_signal(signal.SIGINT)
        sum(range(100))  # the handler runs here, inside the finaliser


class _DroppingSimulator(ToySimulator):
    def __call__(self, theta):
        self.calls = getattr(self, "calls", 0) + 1
        if self.calls == 3:
            _Dropper()  # collected at once
        return super().__call__(theta)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_ctrl_c_dropped_inside_a_finaliser_still_stops_the_run(tmp_path):
    """The third batch's Ctrl-C lands in a finaliser, where Python prints and drops the
    KeyboardInterrupt (the run went on to its end): the runner remembers it, stops after recording
    that batch, and keeps the three finished members."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # a terminal's Ctrl-C (another
    try:  # test's tools, Dask's say, may have left a handler of their own)
        with pytest.raises(KeyboardInterrupt):
            run_ensemble(_DroppingSimulator(), design(10), tmp_path / "store", progress=False)
    finally:
        signal.signal(signal.SIGINT, before)
    assert sorted(EnsembleStore(tmp_path / "store").finished()) == [0, 1, 2]
    # a Ctrl-C handler of yours that does not raise (a "stop after this" flag) is left to decide
    asked: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: asked.append(signum))
    try:
        run_ensemble(_DroppingSimulator(), design(10), tmp_path / "mine", progress=False)
        assert asked == [signal.SIGINT] and len(EnsembleStore(tmp_path / "mine").finished()) == 10
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_batch_lost_on_dask_is_sent_again(tmp_path, monkeypatch):
    """A batch whose worker goes (an OSError out of the task, as a lost SLURM job's) is sent
    again, with the model scattered anew: every member is stored. One lost on every attempt is
    raised after three, the others stored."""
    from distributed import Client, LocalCluster

    import bayescal.run.ensemble as ens

    real, marks = ens.run_batch, tmp_path / "lost"  # the tasks are pickled: their state in files
    marks.mkdir()

    def flaky(sim, theta, members, keep):  # each even member's first batch is lost
        mark = marks / str(members[0])
        if members[0] % 2 == 0 and not mark.exists():
            mark.touch()
            raise OSError("worker lost")
        return real(sim, theta, members, keep)

    def dead(sim, theta, members, keep):  # member 3's batch, every time
        if members[0] == 3:
            raise OSError("worker lost")
        return real(sim, theta, members, keep)

    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        monkeypatch.setattr(ens, "run_batch", flaky)
        run_ensemble(ToySimulator(), design(8), tmp_path / "s", executor=client, progress=False)
        assert sorted(p.name for p in marks.iterdir()) == ["0", "2", "4", "6"]
        assert sorted(EnsembleStore(tmp_path / "s").finished()) == list(range(8))
        monkeypatch.setattr(ens, "run_batch", dead)
        with pytest.raises(RuntimeError, match=r"1 batch\(es\) lost with their workers \(3 attempts; OS"):
            run_ensemble(ToySimulator(), design(6, seed=1), tmp_path / "t", executor=client, progress=False)
    assert sorted(EnsembleStore(tmp_path / "t").finished()) == [0, 1, 2, 4, 5]


@pytest.mark.slow
def test_executors_give_identical_stores(tmp_path):
    from distributed import Client, LocalCluster

    sim = ToySimulator(raise_above=0.9, nan_above=0.9)
    d = design(30)
    run_ensemble(sim, d, tmp_path / "serial", batch_size=4, progress=False)
    run_ensemble(sim, d, tmp_path / "pool", executor=2, batch_size=4, progress=False)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        run_ensemble(sim, d, tmp_path / "dask", executor=client, batch_size=4, progress=False)
    ref = EnsembleStore(tmp_path / "serial").load().drop_vars("wall_time")
    for name in ("pool", "dask"):
        xr.testing.assert_identical(EnsembleStore(tmp_path / name).load().drop_vars("wall_time"), ref)


def test_embedded_model_through_runner(tmp_path, small_model):
    from bayescal.parameters.design import latin_hypercube

    space = small_model.space
    d = space.to_dataarray(space.expand(latin_hypercube(space, 6, seed=4).values), full=True)
    summary = run_ensemble(small_model, d, tmp_path / "emb", batch_size=3,
                           keep=["gpp_global", "nbp_global"], progress=False)
    ens = EnsembleStore(tmp_path / "emb").load()
    direct = small_model.simulate(d.values)
    ok = (direct.status.values == "done")
    np.testing.assert_array_equal(ens.status.values == "failed", ~ok)
    np.testing.assert_allclose(ens.gpp_global.values[ok], direct.gpp_global.values[ok], rtol=1e-12)
    assert summary.done == ok.sum()
    # worker processes after this process has run the threaded kernel (a fork would abort)
    run_ensemble(small_model, d, tmp_path / "pool", batch_size=3, executor=2,
                 keep=["gpp_global", "nbp_global"], progress=False)
    pool = EnsembleStore(tmp_path / "pool").load()
    xr.testing.assert_identical(pool.drop_vars("wall_time"), ens.drop_vars("wall_time"))


def test_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="executor must be"):
        run_ensemble(ToySimulator(), design(3), tmp_path / "x", executor="cluster", progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        run_ensemble(ToySimulator(), design(3), tmp_path / "y", batch_size=0, progress=False)


# ------------------------------------------------------------------------ issue 17: hardening
def test_torn_member_files_run_again(tmp_path):
    """An empty or truncated member file is not 'finished': it is set aside and rerun."""
    sim = ToySimulator()
    d = design(8)
    run_ensemble(sim, d, tmp_path / "s", progress=False)
    ref = EnsembleStore(tmp_path / "s").load()
    members = tmp_path / "s" / "members"
    (members / "member_000002.nc").write_bytes(b"")
    data = (members / "member_000005.nc").read_bytes()
    (members / "member_000005.nc").write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match="member_000002.nc is empty"):
        summary = run_ensemble(sim, d, tmp_path / "s", progress=False)
    assert summary.ran == 2 and summary.already_done == 6
    assert (members / "member_000005.nc.corrupt").exists()
    again = EnsembleStore(tmp_path / "s").load()
    np.testing.assert_array_equal(again.y.values, ref.y.values)


class _BigIntSimulator:
    """Outputs a cell area in m^2 as int64 (> 2^31), which netCDF-3 cannot hold as an integer."""

    def __call__(self, theta):
        n = theta.shape[0]
        return xr.Dataset({"y": (("member",), theta[:, 0]),
                           "area": (("member", "cell"), np.full((n, 2), 3_000_000_000_000, dtype=np.int64)),
                           "index": (("member", "cell"), np.tile(np.arange(2, dtype=np.int64), (n, 1)))})


def test_outputs_netcdf3_cannot_hold_are_converted_not_fatal(tmp_path):
    summary = run_ensemble(_BigIntSimulator(), design(5), tmp_path / "s", batch_size=2, progress=False)
    assert summary.done == 5 and summary.failed == 0
    ens = EnsembleStore(tmp_path / "s").load()
    np.testing.assert_array_equal(ens["area"].values, 3e12)  # exact in float64
    assert ens["index"].dtype.kind in "iu"  # small integers stay integers


def test_an_unstorable_output_fails_its_member_with_a_reason(tmp_path):
    class Sim:
        def __call__(self, theta):
            ds = xr.Dataset({"y": ("member", theta[:, 0])})
            ds["y"].attrs["bad"] = {"a": 1}  # netCDF cannot store a dict attribute
            return ds

    summary = run_ensemble(Sim(), design(3), tmp_path / "s", progress=False)
    assert summary.failed == 3
    st = EnsembleStore(tmp_path / "s").status()
    assert all(r.startswith("cannot store the output") for r in st.reason.values)


def test_a_run_directory_counts_each_stages_failed_runs_by_reason_for_the_report(tmp_path):
    """The stores' failed members, counted per stage from their files (what the report's "Model
    runs and failures" table shows): exactly the failing subset, alike reasons grouped, and the
    store's status read without loading or moving a member file."""
    from bayescal.report.page import failed_runs_section
    from bayescal.run.ensemble import count_reasons, reason_group
    from bayescal.workflow.rundir import RunDir

    sim = ToySimulator(raise_above=0.85, nan_above=0.9, report_above=0.92)
    d1, d2 = design(40), design(30, seed=1)
    run_ensemble(sim, d1, tmp_path / "design" / "ensemble", batch_size=7, progress=False)
    run_ensemble(sim, d2, tmp_path / "posterior" / "refine" / "round1", progress=False)
    torn = EnsembleStore(tmp_path / "posterior" / "refine" / "round1")._file(3)
    torn.write_bytes(b"CDF torn")
    failures = RunDir(tmp_path).run_failures()
    expected = [sim.expected_failures(d.values) for d in (d1, d2)]
    assert set(failures) == {"design", "posterior"}
    assert failures["design"][0] == 40 and failures["posterior"][0] == 29  # the torn file: not a run
    for (_, why), fails, d in zip(failures.values(), expected, (d1, d2), strict=True):
        fails = fails.copy()
        if d is d2:
            fails[3] = False
        assert sum(why.values()) == fails.sum() > 0
        nan_only = fails & (d.values[:, 0] <= 0.85) & (d.values[:, 2] <= 0.92)
        assert why.get("non-finite output in y", 0) == nan_only.sum()
    assert torn.exists()
    assert reason_group("spin-up: runaway LAI 16.2 > 15.0 for CROP-C4 in cell 4") == \
        reason_group("spin-up: runaway LAI 17.0 > 15.0 for CROP-C4 in cell 9") == \
        "spin-up: runaway LAI … > … for CROP-C4"
    assert reason_group("exit code 1: /scratch/run_3fa2b1c9d0e1/out.nc missing") == "exit code 1: … missing"
    assert reason_group("spin-up did not converge in 24 cycles (still 1.95 %)") == \
        "spin-up did not converge in 24 cycles"
    # counted alike, named by what they share and the range of what differs (the numbers kept)
    assert count_reasons(["timeout after 60.0 s"] * 3 + ["exit code 1 (see /tmp/m1/log)",
                                                         "exit code 1 (see /tmp/m2/log)"]) == \
        {"timeout after 60.0 s": 3, "exit code 1": 2}
    assert count_reasons(["spin-up: runaway LAI 18.9 > 15.0 for CROP-C4 in cell 4",
                          "spin-up: runaway LAI 16.2 > 15.0 for CROP-C4 in cell 9",
                          "exit code 1: /scratch/run_3fa2b1c9d0e1/out.nc missing",
                          "exit code 1: /scratch/run_77aa01bc92e0/out.nc missing"]) == \
        {"spin-up: runaway LAI 16.2 to 18.9 > 15.0 for CROP-C4": 2, "exit code 1: … missing": 2}
    # a reason with a "…" of its own is counted apart, not a crash; signs are the numbers'
    assert count_reasons(["exit code 1: value … too big", "exit code 1: value 2.5 too big",
                          "T -3.5 K out of range", "T -40.2 K out of range"]) == \
        {"exit code 1: value … too big": 1, "exit code 1: value 2.5 too big": 1,
         "T -40.2 to -3.5 K out of range": 2}
    table = failed_runs_section(RunDir(tmp_path))
    assert f"<td>design</td><td>40</td><td>{expected[0].sum()}</td>" in table


def test_a_design_run_whose_likelihood_summaries_are_not_finite_counts_as_failed(tmp_path):
    """A run the model finished but whose summaries are not finite is failed in the design's
    ``training.nc`` (the emulator leaves it out); the report's table counts it so, with its reason,
    beside the store's own failures."""
    import xarray as xr

    from bayescal.workflow.rundir import RunDir

    sim = ToySimulator(nan_above=0.9)
    d = design(30)
    run_ensemble(sim, d, tmp_path / "design" / "ensemble", progress=False)
    st = EnsembleStore(tmp_path / "design" / "ensemble").status()
    status = np.array([str(x) for x in st["status"].values], dtype=object)
    reason = np.array([str(x) for x in st["reason"].values], dtype=object)
    done = np.flatnonzero(status == "done")
    status[done[:2]], reason[done[:2]] = "failed", "a likelihood summary is not finite"
    xr.Dataset({"status": ("member", status), "reason": ("member", reason)}).to_netcdf(
        tmp_path / "design" / "training.nc")
    n, why = RunDir(tmp_path).run_failures()["design"]
    store_failed = int((st["status"].values == "failed").sum())
    assert n == 30 and store_failed > 0
    assert why["a likelihood summary is not finite"] == 2
    assert sum(why.values()) == store_failed + 2


def test_a_folder_with_a_foreign_design_is_refused_and_no_file_of_the_user_is_deleted(tmp_path):
    """``run_ensemble`` into a folder holding a ``design.nc`` it did not write (no ``store.json``):
    refused by name, the file untouched; a ``*.tmp`` of the user's among the members survives a
    run (only the store's own ``member_*.nc.tmp`` are leftovers). A store whose creation was
    killed after its design was written (the same design, no ``store.json``) is taken up."""
    sim, d = ToySimulator(), design(6)
    mine = tmp_path / "a" / "design.nc"
    mine.parent.mkdir()
    mine.write_text("my own design")
    with pytest.raises(ValueError, match=r"holds a design.nc but no store.json.*use a new directory"):
        run_ensemble(sim, d, tmp_path / "a", progress=False)
    assert mine.read_text() == "my own design"
    run_ensemble(sim, d, tmp_path / "b", progress=False)
    notes = tmp_path / "b" / "members" / "notes.tmp"
    notes.write_text("scratch")
    leftover = tmp_path / "b" / "members" / "member_000002.nc.tmp"
    leftover.write_bytes(b"CDF torn")
    (tmp_path / "b" / "store.json").unlink()  # as if killed between design.nc and store.json
    summary = run_ensemble(sim, d, tmp_path / "b", progress=False)
    assert summary.failed == 0 and notes.read_text() == "scratch" and not leftover.exists()
    assert (tmp_path / "b" / "store.json").exists()


def test_left_out_runs_that_fail_leave_the_spread_of_the_others_or_a_named_error(tmp_path):
    """The left-out values' spread (``posterior.left_out = "marginalise"``) takes the runs that
    finished with finite summaries: with a few failed, the others' spread and a warning that
    says how many (it stopped the stage when fewer than 8 of 8 were finite); with fewer than
    MIN_LEFT_OUT, a StageError that names the key to raise. The spread is the finite runs'."""
    from bayescal.parameters import Parameter, ParameterSpace
    from bayescal.workflows.context import StageError
    from bayescal.workflows.global_.stages import MIN_LEFT_OUT, _left_out_spread

    class Ctx:
        seed = 3
        executor = None
        simulator = None

        def __init__(self, sim, n):
            self.simulator = sim
            self.config = {"posterior": {"left_out_runs": n}, "design": {"batch_size": 4}}

        def left_out_space(self):
            return ParameterSpace([Parameter(n, 0.5, 0.0, 1.0) for n in "abc"])

        def observed(self):
            return np.zeros(3), np.ones(3)

        def run_members(self, sim, theta, store, **kw):
            run_ensemble(sim, np.asarray(theta), store, batch_size=kw["batch_size"], progress=False)

        def run_dataset_vars(self):
            return None

        def summaries(self, ens):
            return ens["y"].values[:, :3]

        def say(self, msg):
            pass

    ctx = Ctx(ToySimulator(nan_above=0.7), 8)
    with pytest.warns(UserWarning, match=r"of 8 left-out runs failed .* estimated from [5-7]: raise "
                                         "posterior.left_out_runs"):
        sd = _left_out_spread(ctx, tmp_path / "a")
    ens = EnsembleStore(tmp_path / "a").load()
    finite = np.isfinite(ens["y"].values[:, :3]).all(1)
    assert MIN_LEFT_OUT <= finite.sum() < 8
    np.testing.assert_allclose(sd, ens["y"].values[finite, :3].std(0, ddof=1))
    with pytest.raises(StageError, match=r"only [0-4] of 8 left-out runs finished with finite summaries .* "
                                         "need >= 5: raise posterior.left_out_runs"):
        _left_out_spread(Ctx(ToySimulator(nan_above=0.3), 8), tmp_path / "b")


def test_a_single_batch_runs_here_without_a_pool(tmp_path, monkeypatch):
    """One batch runs on one worker anyway: with worker processes asked for, a sequential
    optimiser's one-member evaluations (or any one batch) run in this process, the same store as
    the serial runner's; two batches go to the pool."""
    from bayescal.run import ensemble

    pooled = []
    monkeypatch.setattr(ensemble, "_run_on_pool", lambda *a: pooled.append(len(a[3])))
    sim = ToySimulator()
    run_ensemble(sim, design(1), tmp_path / "one", executor=2, progress=False)
    run_ensemble(sim, design(4), tmp_path / "four", executor=2, batch_size=4, progress=False)
    assert pooled == []
    run_ensemble(sim, design(1), tmp_path / "serial", progress=False)
    xr.testing.assert_identical(EnsembleStore(tmp_path / "one").load().drop_vars("wall_time"),
                                EnsembleStore(tmp_path / "serial").load().drop_vars("wall_time"))
    run_ensemble(sim, design(4), tmp_path / "two", executor=2, batch_size=2, progress=False)
    assert pooled == [2]


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="POSIX signal masks")
def test_pool_workers_are_born_with_ctrl_c_held_and_the_runners_ctrl_c_is_not_lost():
    """The pool's workers start inside ``_sigint_blocked``: a process started there has SIGINT
    blocked from its first instruction (a terminal's Ctrl-C cannot interrupt its imports), and a
    Ctrl-C sent to the runner meanwhile is delivered, as a KeyboardInterrupt, when the block ends."""
    from bayescal.run.ensemble import _sigint_blocked

    probe = "import signal; print(int(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])))"
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    reached = False
    try:
        with pytest.raises(KeyboardInterrupt):
            with _sigint_blocked():
                inside = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout
                signal.raise_signal(signal.SIGINT)
                reached = True
    finally:
        signal.signal(signal.SIGINT, before)
    outside = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout
    assert reached and inside.strip() == "1" and outside.strip() == "0"
