"""Shared fixtures: the embedded model at its defaults (full grid) and a small, fast model."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

if os.environ.get("PYTEST_XDIST_WORKER"):  # one thread per test worker: -n auto already fills the cores
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402 - after the thread limits
import pytest  # noqa: E402

import bayescal  # noqa: E402
from bayescal.models import LandCarbonModel, make_drivers, make_grid  # noqa: E402

_HERE = Path(__file__).parent
_SOURCE = Path(bayescal.__file__).resolve().parent.parent
_PATHS = os.environ.get("PYTHONPATH", "").split(os.pathsep)
if (_SOURCE / "pyproject.toml").is_file() and str(_SOURCE) not in _PATHS:
    # the processes tests start (the docs' examples, `python -m bayescal`, SLURM's jobs) import the
    # bayescal under test, as this process does (`python -m pytest` in a checkout imports the
    # checkout's): not an installed copy, whose kernels nothing compiled (or older code)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(_SOURCE), os.environ.get("PYTHONPATH")]))
_VERSIONED = ("numpy", "scipy", "scikit-learn", "xarray", "pandas", "emcee", "arviz", "SALib", "numba",
              "h5netcdf", "h5py", "matplotlib", "DFO-LS", "cma", "dask", "distributed", "optuna", "pyvbmc")


#: the test modules that build, save, read or plot ArviZ InferenceData: CI runs them (``-m arviz``)
#: against ArviZ 1.x as well as the 0.2x line
ARVIZ_MODULES = {"test_posterior", "test_inference_data", "test_pipeline", "test_site", "test_equifinality",
                 "test_high_dim", "test_workflow_engine", "test_dagon", "test_site_emulator",
                 "test_own_model"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module is not None and item.module.__name__.rsplit(".", 1)[-1] in ARVIZ_MODULES:
            item.add_marker(pytest.mark.arviz)


def pytest_configure(config):
    """Compile the numba kernels once, before the workers start: on a fresh install each worker
    (and each process a test starts) would compile them again, 15-25 s apiece."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        _compile_kernels()


def _compile_kernels() -> None:
    """The embedded model's, DALEC's and the emulators' kernels, each for the argument types
    bayescal's own calls give it, into numba's cache beside the package."""
    import pandas as pd
    import xarray as xr

    from bayescal.emulators import ActiveGPEmulator, SVDEmulator
    from bayescal.models.dalec import DalecModel

    grid = make_grid(n_cells=18, seed=0)
    model = LandCarbonModel(grid=grid, drivers=make_drivers(grid, start=2000, end=2000, ramp_start=2000))
    model.simulate(model.space.default[None, :])
    days = pd.date_range("2000-01-01", "2000-12-31", freq="D")
    met = xr.Dataset({"ta": ("time", np.full(days.size, 10.0)), "sw": ("time", np.full(days.size, 15.0)),
                      "co2": ("time", np.full(days.size, 380.0))}, coords={"time": days}, attrs={"lat": 50.0})
    for kind in ("deciduous", "evergreen"):
        dalec = DalecModel(met, kind, spinup_years=1, spinup_cycles=1)
        dalec(dalec.space.all_default[None, :])
    x = np.random.default_rng(0).uniform(size=(12, 2))
    y = np.c_[x.sum(axis=1), x[:, 0] * x[:, 1], x[:, 0]]
    SVDEmulator(n_components=2).fit(x, y).predict(x)
    active = ActiveGPEmulator(n_active=2, n_jobs=1).fit(x, y)
    active.predict(x)
    active.predict_sd_bound(x)


def pytest_report_header(config):
    """The versions the suite runs against, first thing in its output, so a failure is traceable."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in _VERSIONED:
        try:
            found.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return "dependencies: " + ", ".join(found)


@pytest.fixture(autouse=True)
def _temporary_files_in_pytests_folder(tmp_path_factory, monkeypatch):
    """``tempfile``'s folders made in a test (a failed ``bayescal check`` keeps its run folder for
    the user) go under pytest's own temporary folder, which pytest cleans, not into /tmp."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path_factory.mktemp("tempfile")))


@pytest.fixture(scope="session")
def default_model():
    return LandCarbonModel()


@pytest.fixture(scope="session")
def default_run(default_model):
    return default_model.simulate(default_model.space.all_default)


@pytest.fixture(scope="session")
def small_model():
    """30 cells, ramp from 1941: seconds per run, same physics."""
    grid = make_grid(n_cells=30, seed=3)
    drivers = make_drivers(grid, start=1990, end=2010, ramp_start=1981, seed=3)
    return LandCarbonModel(grid=grid, drivers=drivers, chunk_size=2)


@pytest.fixture(scope="session")
def rng():
    return np.random.default_rng(12345)


SCREENED = [
    "vmax[NDL-EVG]", "vmax[BDL-EVG]", "vmax[GRASS-C3]", "vmax[GRASS-C4]", "vmax[CROP-C3]",
    "kn[BDL-EVG]", "kn[GRASS-C3]", "alpha_phtsyn[BDL-EVG]", "alpha_phtsyn[GRASS-C4]", "sn[GRASS-C3]",
    "vpd0[BDL-EVG]", "gamma_w", "beta2", "rmlcoef[BDL-EVG]", "lfespany[BDL-EVG]", "lfespany[GRASS-C3]",
    "bsratesc", "q10_rh", "humicfac", "kappa[BDL-EVG]",
]


@pytest.fixture(scope="session")
def twin():
    """A 20-parameter twin problem on a fast small model (24 cells, 2000-2010).

    Returns a namespace with ``model``, ``space`` (the 20 free parameters), ``truth`` (free
    values), ``obs`` (twin products) and ``truth_run``.
    """
    from types import SimpleNamespace

    from bayescal.observations.products import make_twin

    grid = make_grid(n_cells=24, seed=3)
    drivers = make_drivers(grid, start=2000, end=2010, ramp_start=1995, seed=3)
    model = LandCarbonModel(grid=grid, drivers=drivers, chunk_size=32)
    space = model.space.only(SCREENED)
    truth = space.from_unit(np.linspace(0.3, 0.7, space.n_free))
    obs, truth_run = make_twin(model, space.expand(truth), seed=11)
    return SimpleNamespace(model=model, space=space, truth=truth, obs=obs, truth_run=truth_run)


@pytest.fixture(scope="session")
def fluxnet_dir():
    """The FLUXNET2015 daily files bayescal ships (CC-BY-4.0; citation in their README)."""
    from importlib import resources
    from pathlib import Path

    return Path(str(resources.files("bayescal") / "data" / "fluxnet"))


# ---------------------------------------- bayescal command lines, each a fresh (forked) process
class _Child:
    """A ``bayescal`` command line running in a child process of the fork server
    (tests/data/cli_forkserver.py): its own process group (``os.killpg(child.pid, ...)``
    kills it), its output in a log file; ``poll``/``wait``/``communicate`` as ``subprocess.Popen``."""

    def __init__(self, pid: int, log: Path) -> None:
        self.pid, self.log, self.returncode = pid, log, None

    def poll(self) -> int | None:
        rc = self.log.with_name(self.log.name + ".rc")
        if self.returncode is None and rc.exists():
            self.returncode = int(rc.read_text())
        return self.returncode

    def wait(self, timeout: float = 600.0) -> int:
        t0 = time.perf_counter()
        while self.poll() is None:
            assert time.perf_counter() - t0 < timeout, f"bayescal (pid {self.pid}) still running"
            time.sleep(0.005)
        return self.returncode

    def communicate(self, timeout: float = 600.0) -> tuple[str, None]:
        self.wait(timeout)
        return self.log.read_text(), None


@pytest.fixture(scope="session")
def cli(tmp_path_factory):
    """``cli(*args)`` starts ``bayescal *args`` in a fresh child process and returns a :class:`_Child`.

    The children are forked from one server that imported bayescal once (as ``python -m
    bayescal`` would, minus the interpreter start-up every time): a SIGKILL hits a real process
    with its own memory, and a resumed run starts in a new one.
    """
    logs = tmp_path_factory.mktemp("cli")
    server = subprocess.Popen([sys.executable, str(_HERE / "data" / "cli_forkserver.py")],
                              env={**os.environ, "PYTHONPATH": str(_HERE.parent)}, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert server.stdout.readline().strip() == "ready"
    count = iter(range(10**6))

    def start(*args: str) -> _Child:
        log = logs / f"{next(count)}.log"
        server.stdin.write(json.dumps({"argv": list(args), "log": str(log)}) + "\n")
        server.stdin.flush()
        return _Child(int(server.stdout.readline()), log)

    yield start
    server.stdin.close()
    server.wait(timeout=600)
