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

from bayescal.ensemble import EnsembleStore, run_ensemble
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


KILL_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np, xarray as xr
    from bayescal.ensemble import run_ensemble
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
    proc = subprocess.Popen([sys.executable, str(script), str(store), "0.1"])
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
    from bayescal.design import latin_hypercube

    space = small_model.space
    d = space.to_dataarray(space.expand(latin_hypercube(space, 6, seed=4).values), full=True)
    summary = run_ensemble(small_model, d, tmp_path / "emb", batch_size=3,
                           keep=["gpp_global", "nbp_global"], progress=False)
    ens = EnsembleStore(tmp_path / "emb").load()
    direct = small_model.simulate(d.values)
    ok = ~direct.failed.values
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
