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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .parameters import ParameterSpace

__all__ = ["STAGES", "RunDir", "RunDirError", "StageRecord"]

#: The pipeline's stages, in order; each owns ``<run>/<stage>/``.
STAGES = ("screen", "optimize", "design", "emulate", "posterior", "equifinality", "propagate", "report")


class RunDirError(ValueError):
    """A directory that is not (or not yet) a complete bayescal run directory; names the file."""


@dataclass
class StageRecord:
    """What one stage did in one invocation (or, read back, in the invocation that ran it)."""

    name: str
    status: str  # "ran" | "reused"
    wall: float = 0.0
    peak_rss_gib: float = 0.0
    runs: int = 0
    warnings: list[str] | None = None


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
        return json.loads(self.config_json.read_text())

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
        self.space_json.write_text(json.dumps(space.to_dict(), indent=1))

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
        from .observations import Observations

        products, truth, stamp = (self.twin_dir / n for n in ("products.nc", "truth.nc", "key.json"))
        if not (products.exists() and truth.exists() and stamp.exists()):
            return None
        if key is not None and json.loads(stamp.read_text()).get("key") != key:
            return None
        return Observations.from_netcdf(products), xr.load_dataset(truth, engine="h5netcdf")

    def write_twin(self, obs, truth: xr.Dataset, key: str) -> None:
        """Write the twin products and truth run (each renamed into place; the key last)."""
        import os

        self.twin_dir.mkdir(parents=True, exist_ok=True)
        (self.twin_dir / "key.json").unlink(missing_ok=True)
        obs.to_netcdf(self.twin_dir / "products.nc")
        tmp = self.twin_dir / "truth.nc.tmp"
        truth.to_netcdf(tmp, engine="h5netcdf")
        os.replace(tmp, self.twin_dir / "truth.nc")
        (self.twin_dir / "key.json").write_text(json.dumps({"key": key}))

    def training(self) -> xr.Dataset:
        """The design runs: unit-cube points, misfit, summaries and which finished."""
        return xr.load_dataset(self.stage("design") / "training.nc")

    def posterior_u(self, space) -> xr.DataArray:
        """Posterior samples in the unit cube on (sample, parameter)."""
        import arviz as az

        from .posterior import unit_samples

        return unit_samples(az.from_netcdf(str(self.stage("posterior") / "posterior.nc")), space)

    def optimum_u(self) -> np.ndarray:
        """The optimiser's best point, else the best run of the design."""
        hist = self.stage("optimize") / "history.nc"
        if hist.exists():
            h = xr.load_dataset(hist)
            return h["u"].values[int(np.nanargmin(h["misfit"].values))]
        tr = self.training()
        return tr["u"].values[int(np.nanargmin(tr["misfit"].values))]

    def records(self) -> list[StageRecord]:
        """The stage records as each stage's ``stage.json`` holds them (finished stages only)."""
        out = []
        for s in STAGES:
            if self.stage_json(s).exists():
                info = json.loads(self.stage_json(s).read_text())
                out.append(StageRecord(s, "done", info["wall"], info["peak_rss_gib"], info["runs"],
                                       info.get("warnings", [])))
        return out
