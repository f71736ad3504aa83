"""The run directory of ``bayescal run``: where every artefact lives, and its readers.

This is the one place that knows the layout (docs/architecture.md lists every file, its writer
and its readers). The report reads a run directory through :class:`RunDir` only — it never runs
the model — so ``bayescal report RUN_DIR`` works on a run directory copied to another machine.

It sits below both the pipeline (which writes a run directory) and the report (which reads one),
and imports neither: the run directory is self-describing (``config.json`` holds the validated
config, ``space.json`` the model's parameter space, ``twin/truth.nc`` the true parameters).
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..parameters import ParameterSpace

__all__ = ["MARKER", "STAGES", "RunDir", "RunDirError", "RunDirRefused", "RunResults", "StageRecord",
           "open_run", "read_json_record", "write_bytes_atomic", "write_json_atomic", "write_text_atomic"]

#: The global workflow's stages, in order; each owns ``<run>/<stage>/``. A run directory lists
#: its own workflow's stages in its marker (:data:`MARKER`).
STAGES = ("screen", "optimize", "design", "emulate", "posterior", "equifinality", "propagate", "report")
#: every stage name of every workflow, in a run order (for run directories without a stage list)
_ALL_STAGES = ("screen", "oat", "optimize", "design", "emulate", "emulator_screen", "posterior",
               "equifinality", "propagate", "report")
#: the file that marks a directory bayescal created (docs/architecture.md, the run-directory contract)
MARKER = ".bayescal-run.json"


class RunDirError(ValueError):
    """A directory that is not (or not yet) a complete bayescal run directory; names the file."""


class RunDirRefused(RunDirError):
    """bayescal will not write into this path (a user's non-empty folder, a file); names it.

    ``bayescal run`` stops with exit status 2 before writing anything.
    """


def write_json_atomic(path: str | Path, obj: Any, indent: int | None = 1) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (:func:`write_text_atomic`)."""
    write_text_atomic(path, json.dumps(obj, indent=indent, default=str))


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (:func:`write_bytes_atomic`, UTF-8)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file in the same folder, fsync, rename.

    A reader sees the old file or the new one, never a torn one; an error (a full disk) leaves no
    temporary file and names ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as err:  # a full disk: the temporary file gone, the error naming the file
        tmp.unlink(missing_ok=True)
        if err.filename is None:
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise
    try:
        os.replace(tmp, path)
    except OSError as err:  # a folder in its place: named, the temporary file gone
        tmp.unlink(missing_ok=True)
        raise OSError(err.errno, err.strerror or str(err), str(path)) from err


def read_json_record(path: str | Path, set_aside: bool = True) -> dict | None:
    """A JSON record (a table) bayescal wrote, or None if it is absent or damaged.

    A damaged record (unparsable, or not a table) is renamed ``<name>.damaged`` (numbered if that
    exists) with a warning naming it, so whatever it recorded is redone; ``set_aside=False``
    only reads (``bayescal check``).
    """
    path = Path(path)
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except PermissionError:  # this user's, not the record's: said, never set aside
        raise
    except (OSError, ValueError) as err:
        info, problem = None, f"{type(err).__name__}: {err}"
    else:
        problem = "" if isinstance(info, dict) else f"not a JSON table ({type(info).__name__})"
    if not problem:
        return info
    if set_aside:
        target = path.with_name(path.name + ".damaged")
        n = 1
        while target.exists():
            n += 1
            target = path.with_name(f"{path.name}.damaged{n}")
        os.replace(path, target)
        warnings.warn(f"{path}: damaged record ({problem}); set aside as {target.name}, what it "
                      "recorded is redone", RuntimeWarning, stacklevel=2)
    return None


def _file_problem(path: Path) -> str:
    """Why a JSON, netCDF or HDF5 file bayescal wrote cannot be read ("" if it can)."""
    try:
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.read_bytes()[:3] == b"CDF":  # netCDF-3 (classic): read it whole
            with xr.open_dataset(path, engine="scipy") as ds:
                ds.load()
        else:
            import h5py  # netCDF-4 files are HDF5: the header and every object's metadata read

            with h5py.File(path, "r") as f:
                f.visit(lambda _name: None)
    except PermissionError:  # this user's, not the file's: said, never set aside as damaged
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        return f"{type(err).__name__}: {err}"
    return ""


def damaged_files(folder: str | Path, recursive: bool = False) -> list[tuple[Path, str]]:
    """The JSON, netCDF and HDF5 files under ``folder`` that cannot be read, with the reason
    (``recursive=False``: the folder's own files). Model-run stores' ``members/`` are left out: a
    store checks its members itself and runs a damaged one again."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = "**/*" if recursive else "*"
    out = []
    for path in sorted(folder.glob(pattern)):
        if "members" in path.relative_to(folder).parts[:-1] or path.name.startswith("."):
            continue
        if path.is_file() and path.suffix in (".json", ".nc", ".h5"):
            problem = _file_problem(path)
            if problem:
                out.append((path, problem))
    return out


@dataclass
class StageRecord:
    """What one stage did in one invocation (or, read back, in the invocation that ran it)."""

    name: str
    status: str  # "ran" | "reused"
    wall: float = 0.0
    peak_rss_gib: float = 0.0
    runs: int = 0
    warnings: list[str] | None = None
    kept_runs: int = 0  # its stores' runs made by a run of other inputs (not counted in ``runs``)
    earlier_runs: int = 0  # of ``runs``, those a stopped invocation of this same run made (resumed)


class RunDir:
    """Paths and readers of one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    # ------------------------------------------------------------------ layout
    def stage(self, name: str) -> Path:
        """``<run>/<stage>/``, written by that stage only."""
        return self.path / name

    def stage_json(self, name: str) -> Path:
        """``<stage>/stage.json``: the stage's input hash, wall time, memory, runs, warnings."""
        return self.path / name / "stage.json"

    @property
    def config_json(self) -> Path:
        return self.path / "config.json"

    @property
    def config_warnings_json(self) -> Path:
        return self.path / "config_warnings.json"

    def config_warnings(self) -> list[str]:
        """What validating the run's config warned of (none for a run directory without the file)."""
        got = (read_json_record(self.config_warnings_json, set_aside=False) or {}).get("warnings", [])
        return [str(w) for w in got] if isinstance(got, list) else []

    @property
    def config_toml(self) -> Path:
        return self.path / "config.toml"

    @property
    def space_json(self) -> Path:
        return self.path / "space.json"

    @property
    def twin_dir(self) -> Path:
        """``twin/``: the twin products, the truth run and the key of the inputs they came from."""
        return self.path / "twin"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def report_html(self) -> Path:
        return self.path / "report.html"

    # ------------------------------------------------------------------ readers
    def config(self) -> dict[str, Any]:
        """The validated config the run was made with (``config.json``)."""
        if not self.config_json.exists():
            raise RunDirError(f"{self.path} is not a bayescal run directory (no config.json)")
        try:
            return json.loads(self.config_json.read_text())
        except ValueError as err:  # empty, cut short, edited by hand
            raise RunDirError(f"{self.config_json}: damaged ({err}); 'bayescal run' with the run's config "
                              "writes it again") from None

    def config_text(self) -> str:
        return self.config_toml.read_text() if self.config_toml.exists() else ""

    def selected(self) -> list[str]:
        """The calibrated parameter labels (``screen/selected.json``; Dagon's workflow:
        ``oat/selected.json``; site: ``optimize/selected.json``)."""
        for stage in ("screen", "oat", "optimize"):
            path = self.stage(stage) / "selected.json"
            if path.exists():
                return json.loads(path.read_text())["parameters"]
        raise RunDirError(f"{self.path}: no screen/selected.json or optimize/selected.json; "
                          "run 'bayescal run'")

    def write_space(self, space: ParameterSpace) -> None:
        """Write the model's full parameter space (``space.json``)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.space_json, space.to_dict())

    def full_space(self) -> ParameterSpace:
        """The model's parameter space as the run saw it (``space.json``)."""
        if not self.space_json.exists():
            raise RunDirError(f"{self.space_json}: missing; run 'bayescal run' on this config first")
        return ParameterSpace.from_dict(json.loads(self.space_json.read_text()), source=str(self.space_json))

    def space(self) -> ParameterSpace:
        """The calibrated parameter space (the model's space, only the screen's selection free)."""
        return self.full_space().only(self.selected())

    def truth_theta(self) -> np.ndarray | None:
        """The twin's true full parameter vector (``twin/truth.nc``); None for real products."""
        truth = xr.load_dataset(self.twin_dir / "truth.nc", engine="h5netcdf")
        return np.asarray(truth["theta"].values) if "theta" in truth else None

    def twin(self, key: str | None = None):
        """``(Observations, truth run)`` written by the pipeline, or None (absent or other inputs)."""
        from ..observations.products import Observations

        products, truth, stamp = (self.twin_dir / n for n in ("products.nc", "truth.nc", "key.json"))
        if not (products.exists() and truth.exists() and stamp.exists()):
            return None
        info = read_json_record(stamp)
        if info is None or (key is not None and info.get("key") != key):
            return None
        return Observations.from_netcdf(products), xr.load_dataset(truth, engine="h5netcdf")

    def write_twin(self, obs, truth: xr.Dataset, key: str) -> None:
        """Write the twin products and truth run (each renamed into place; the key last)."""
        self.twin_dir.mkdir(parents=True, exist_ok=True)
        (self.twin_dir / "key.json").unlink(missing_ok=True)
        obs.to_netcdf(self.twin_dir / "products.nc")
        tmp = self.twin_dir / "truth.nc.tmp"
        truth.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, self.twin_dir / "truth.nc")
        write_json_atomic(self.twin_dir / "key.json", {"key": key})

    def training(self) -> xr.Dataset:
        """The design runs: unit-cube points, misfit, summaries and which finished."""
        return xr.load_dataset(self.stage("design") / "training.nc")

    def posterior_u(self, space) -> xr.DataArray:
        """Posterior samples in the unit cube on (sample, parameter)."""
        from ..posterior import load_inference_data, unit_samples

        return unit_samples(load_inference_data(self.stage("posterior") / "posterior.nc"), space)

    def optimum_u(self) -> np.ndarray:
        """The optimiser's best point, else the best run of the design."""
        hist = self.stage("optimize") / "history.nc"
        if hist.exists():
            h = xr.load_dataset(hist)
            return h["u"].values[int(np.nanargmin(h["misfit"].values))]
        tr = self.training()
        return tr["u"].values[int(np.nanargmin(tr["misfit"].values))]

    @property
    def marker(self) -> Path:
        """``.bayescal-run.json``: bayescal created this directory; its workflow and stages."""
        return self.path / MARKER

    def workflow_name(self) -> str:
        """The workflow that made this run (the marker's; from the config for older runs)."""
        info = read_json_record(self.marker, set_aside=False) or {}
        if isinstance(info.get("workflow"), str):
            return info["workflow"]
        cfg = self.config()
        if cfg["model"].get("kind", "global") != "global":
            return "site"
        return "dagon" if cfg["run"].get("workflow", "default") == "dagon" else "global"

    def stage_names(self) -> tuple[str, ...]:
        """The run's workflow's stages, in order (from the marker; every known stage without one)."""
        info = read_json_record(self.marker, set_aside=False) or {}
        stages = info.get("stages")
        return tuple(stages) if isinstance(stages, list) else _ALL_STAGES

    def run_failures(self) -> dict[str, tuple[int, dict[str, int]]]:
        """Per stage with model-run stores: the runs they hold and the failed ones' reasons
        (:func:`~bayescal.run.ensemble.count_reasons`) with their counts, ``{"design": (100,
        {"non-finite output in gpp": 3})}``, read from the
        stores' member files (:meth:`~bayescal.run.store.EnsembleStore.status`), or from the stage's
        ``training.nc`` when it has a status (it also fails runs whose summaries are not finite)."""
        from ..run.ensemble import EnsembleStore, count_reasons

        out = {}
        for s in self.stage_names():
            status = [EnsembleStore(p.parent).status() for p in sorted(self.stage(s).rglob("store.json"))]
            if status:
                failed = _training_failures(self.stage(s) / "training.nc")
                if failed is None:  # the stores' own status: a run the model finished is done
                    failed = [r for st in status
                              for r in st["reason"].values[st["status"].values == "failed"]]
                reasons = count_reasons(str(r) for r in failed)
                out[s] = (sum(int((st["status"] != "missing").sum()) for st in status), dict(reasons))
            chain = read_json_record(self.stage(s) / "evaluations.json", set_aside=False)
            if chain is not None:  # a chain's or a search's own runs, counted not stored (site, direct)
                since = int(chain.get("resumed_at_step", 0))
                where = f", resumed at step {since}: every invocation's runs" if since else ""
                row = f"{s} (inside {chain.get('inside', 'the chain')}, not stored{where})"
                out[row] = (int(chain["runs"]), dict(chain["failed"]))
        return out

    def records(self) -> list[StageRecord]:
        """The stage records as each stage's ``stage.json`` holds them (finished stages only;
        a damaged record is left out)."""
        out = []
        for s in self.stage_names():
            info = read_json_record(self.stage_json(s), set_aside=False)
            if info is not None and "wall" in info:
                out.append(StageRecord(s, "done", info["wall"], info["peak_rss_gib"], info["runs"],
                                       info.get("warnings", []), int(info.get("kept_runs", 0))))
        return out


def _training_failures(path: Path) -> list[str] | None:
    """The reasons of the failed runs in a stage's ``training.nc`` (None: no such file, or no
    ``status``): it also fails a run the model finished whose likelihood summaries are not finite."""
    if not path.is_file():
        return None
    try:
        with xr.open_dataset(path) as ds:
            if "status" not in ds or "reason" not in ds:
                return None
            failed = ds["status"].values.astype(str) == "failed"
            return [str(r) for r in ds["reason"].values[failed]]
    except Exception:  # noqa: BLE001 - a damaged file: the stores' own status
        return None


class RunResults:
    """A finished run directory as Python objects (:func:`open_run`): read lazily, file by file.

    Attributes read on access: ``posterior`` (ArviZ InferenceData, or an ``xarray.DataTree`` with
    ArviZ 1.x), ``diagnostics`` (R-hat and ESS per value), ``bands`` (the propagated predictive
    quantile bands), ``scores`` (AMBER scores of the propagated sets; global route), ``training``
    (the design runs), ``config``, ``space`` and ``records`` (one :class:`StageRecord` per
    finished stage). A file the run has not written raises :class:`RunDirError` naming it.
    """

    def __init__(self, path: str | Path) -> None:
        self.rundir = RunDir(path)
        if not self.rundir.config_json.exists():
            raise RunDirError(f"{self.rundir.path}: not a bayescal run directory (no config.json)")

    def _nc(self, stage: str, name: str) -> xr.Dataset:
        f = self.rundir.stage(stage) / name
        if not f.exists():
            done = (self.rundir.stage(stage) / "stage.json").exists()
            stages = self.rundir.stage_names()
            why = (f"the {self.rundir.workflow_name()} workflow has no {stage!r} stage (its stages: "
                   f"{', '.join(stages)})" if stage not in stages else
                   f"the {stage!r} stage finished without it: this workflow does not write it" if done
                   else f"has the {stage!r} stage finished?")
            raise RunDirError(f"{f}: not written ({why})")
        try:
            return xr.load_dataset(f)
        except (OSError, ValueError) as err:
            raise RunDirError(f"{f}: cannot be read ({type(err).__name__}: {err}); `bayescal run` sets a "
                              "damaged file aside and reruns its stage") from None

    @property
    def posterior(self):
        from ..posterior import load_inference_data

        f = self.rundir.stage("posterior") / "posterior.nc"
        if not f.exists():
            raise RunDirError(f"{f}: not written (has the 'posterior' stage finished?)")
        return load_inference_data(f)

    @property
    def diagnostics(self) -> xr.Dataset:
        return self._nc("posterior", "diagnostics.nc")

    @property
    def bands(self) -> xr.Dataset:
        return self._nc("propagate", "bands.nc")

    @property
    def scores(self) -> xr.Dataset:
        return self._nc("propagate", "scores.nc")

    @property
    def training(self) -> xr.Dataset:
        return self._nc("design", "training.nc")

    @property
    def config(self) -> dict[str, Any]:
        return self.rundir.config()

    @property
    def space(self) -> ParameterSpace:
        return self.rundir.space()

    @property
    def records(self) -> list[StageRecord]:
        return self.rundir.records()

    def __repr__(self) -> str:
        done = ", ".join(r.name for r in self.records)
        return f"<RunResults {self.rundir.path} (finished: {done or 'none'})>"


def open_run(path: str | Path) -> RunResults:
    """Open a run directory for a notebook: ``open_run("runs/global_twin").posterior``.

    Reads only the run directory (no stage reruns, no model runs); see :class:`RunResults`.
    """
    return RunResults(path)
