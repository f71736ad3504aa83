"""What every stage function receives: the config, the model, the run directory, the executor.

:class:`Context` holds what all workflows share -- the validated config and its seed, the model
(made once, runs counted), where members run (:attr:`~Context.executor`), the run directory
(:class:`~bayescal.workflow.rundir.RunDir`) -- and hands itself with its declared workflow to the
engine (:mod:`bayescal.workflow`), which keys, reuses, resumes and records the stages. Each
workflow adds what only its stages need: :class:`bayescal.workflows.global_.context.GlobalContext`
(the embedded model, twin, summaries), :class:`bayescal.workflows.site.context.SiteContext`,
:class:`bayescal.workflows.dagon.context.DagonContext`.

Re-running a config reuses every stage whose declared inputs (config keys, input files' contents,
the stages it needs) are unchanged and reruns the others. The runner keeps finished model runs
of an interrupted stage, so a killed run loses nothing that was finished.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..run.cluster import ClusterError, check_run_config, make_executor
from ..workflow import Engine, PlannedStage, Workflow, registry, summary_table
from ..workflow.keys import write_stage_keys
from ..workflow.rundir import RunDir, StageRecord, write_json_atomic, write_text_atomic
from ..workflow.rundir_guard import check_run_dir, hold_run_dir
from .config import ConfigError, is_site, truth_theta

__all__ = ["MIN_DESIGN_RUNS", "Context", "StageError", "StageRecord", "require_design_runs"]

#: finished design runs an emulator is fitted on at the least (fewer: the stage stops, and says why)
MIN_DESIGN_RUNS = 5


class StageError(RuntimeError):
    """A stage cannot go on (e.g. too few finished model runs); the message says what to change."""


def require_design_runs(usable: int, total: int, reasons, store, more: str = "design.n_runs") -> None:
    """A :class:`StageError` when fewer than :data:`MIN_DESIGN_RUNS` of a design's ``total`` runs
    are usable: it names the ``store``, the failures' reasons (``reasons``: those of the failed
    runs) and what to change. Every finished run stays in the store for the rerun."""
    if usable >= MIN_DESIGN_RUNS:
        return
    from ..run.ensemble import count_reasons, describe_failures

    why = describe_failures(count_reasons(str(r) for r in reasons), most=3)
    raise StageError(f"only {usable} of {total} design runs in {store} are usable (an emulator needs "
                     f"{MIN_DESIGN_RUNS} at the least){': ' + why if why else ''}. Make the model run "
                     f"there (the member folders keep each failed run's files), narrow the parameters' "
                     f"bounds, or raise {more}; finished runs are kept")


class Context:
    """The context of a validated config's workflow in ``run_dir``; stage functions receive it.

    Parameters
    ----------
    config : dict
        From :func:`load_config` / :func:`validate_config`.
    run_dir : path, optional
        Default ``config["run"]["output"]``.
    progress : bool
        Progress bars and one line per stage.
    config_text : str
        The TOML text, kept in the run directory and the report.
    model : callable, optional
        Your own model instead of the one ``[model]`` describes, under the own-model contract
        (docs/own-model.md: a ``space`` attribute and ``model(theta)``); each workflow's
        context passes it through :meth:`conform`.
    workflow : Workflow, optional
        Replaces the registered one.
    config_warnings : tuple of str, optional
        What validating the config warned of (``load_config`` under
        :func:`warnings.catch_warnings`, as ``bayescal run`` does): kept in
        ``config_warnings.json``, shown by the report. None leaves that file as it is.
    """

    #: the registered workflow this context runs unless one is given (:mod:`.catalog`)
    workflow_name = ""

    def __init__(
        self,
        config: dict[str, Any],
        run_dir: str | Path | None = None,
        progress: bool = True,
        config_text: str = "",
        model=None,
        workflow: Workflow | None = None,
        config_warnings: tuple[str, ...] | None = None,
    ) -> None:
        self.config = config
        self.config_warnings = config_warnings
        self._check_config_kind()
        self.workflow = workflow if workflow is not None else registry.get(self.workflow_name)
        self.run_dir = Path(run_dir if run_dir is not None else config["run"]["output"])
        self.progress = progress
        self.config_text = config_text
        self.records: list[StageRecord] = []
        self._model = None if model is None else self.conform(model)
        self._given = model is not None
        self.rundir = RunDir(self.run_dir)
        self._cache: dict[str, Any] = {}
        self._runs = 0

    def _check_config_kind(self) -> None:
        """ConfigError unless the config is one of this context's workflow (a site model's config
        for the site workflow, the global model's for the others), before anything is made."""
        if not self.workflow_name:
            return
        kind = self.config.get("model", {}).get("kind", "global")
        if is_site(self.config) != (self.workflow_name == "site"):
            theirs = "site" if is_site(self.config) else "global (or dagon)"
            raise ConfigError(f"{type(self).__name__} runs the {self.workflow_name} workflow, but the "
                              f"config's 'model.kind' = {kind!r} belongs to the {theirs} workflow: use "
                              "bayescal.workflows.make_context(config, run_dir, model=...), which makes "
                              "the context the config's workflow needs")

    # ---------------------------------------------------------------- shared objects
    @property
    def seed(self) -> int:
        return int(self.config["run"]["seed"])

    @property
    def model(self):
        """The workflow's model, made once (:meth:`make_model`) unless one was given."""
        if self._model is None:
            self._model = self.make_model()
        return self._model

    def conform(self, model):
        """A model given by the caller, as the stages see it (each workflow's context says how)."""
        return model

    def model_identity(self) -> str | None:
        """A model given to the context, or the config's python entry point's, in every stage's
        key: its class, the contents of its source file, its parameter space (bounds, defaults,
        scales) and its ``identity``
        attribute if it has one (what its constructor was given: forcing files, years, grid; any
        JSON-able value) -- another model, or the same class edited or built otherwise, reruns the
        stages rather than reusing another model's results. None for the embedded models and an
        external program, whose ``[model]`` keys and files say it."""
        if not self._given and self.config.get("model", {}).get("kind") != "python":
            return None
        from ..models.contract import ConformingModel
        from ..workflow.keys import stage_key

        inner = self.model.model if isinstance(self.model, ConformingModel) else self.model
        cls = type(inner)
        source = _class_source(cls)
        space = self.full_space
        return stage_key("model", {"class": f"{cls.__module__}.{cls.__qualname__}", "source": source,
                                   "identity": getattr(inner, "identity", None),  # its options, if it says
                                   "labels": space.all_labels, "lower": np.asarray(space.lower).tolist(),
                                   "upper": np.asarray(space.upper).tolist(),
                                   "default": np.asarray(space.all_default).tolist(),
                                   # the prior's scale too: a log-uniform value made uniform reruns
                                   "scale": [space[n].scale for n in space.names]})

    def runs_identity(self) -> str:
        """What a model run gives besides its parameter values, as one hash (:mod:`bayescal.run.
        reuse`): the ``[model]`` table and its files -- not the parameter space
        (``parameters_file``, bounds, defaults: they choose the values a run is given, which are
        compared themselves) --, a given model's or entry point's class, source and ``identity``,
        and bayescal's version."""
        from bayescal import __version__

        from ..models.contract import ConformingModel
        from ..workflow.keys import file_digest, stage_key

        if "runs_identity" not in self._cache:
            from .config import CHECK_ONLY_MODEL_KEYS, EXECUTION_ONLY_MODEL_KEYS, GLOBAL_ONLY, SCHEMA

            # the keys its stages read (a site model's: not the global model's), its files by their
            # contents wherever they are, and neither how runs are made nor what only check reads
            left = ("parameters_file", *_FILE_KEYS, *EXECUTION_ONLY_MODEL_KEYS, *CHECK_ONLY_MODEL_KEYS,
                    *(GLOBAL_ONLY["model"] if self.workflow.name == "site" else ()))
            model = self.config["model"]
            m = {k: model.get(k) for k in SCHEMA["model"] if k not in left}
            if self._given or m.get("kind") == "python":  # and the class it is, with its options
                inner = self.model.model if isinstance(self.model, ConformingModel) else self.model
                m.update({"class": f"{type(inner).__module__}.{type(inner).__qualname__}",
                          "source": _class_source(type(inner)), "identity": getattr(inner, "identity", None)})
            files = sorted(file_digest(f) for f in self._model_files())
            inputs = {"model": m, "files": files, "bayescal": __version__}
            self._cache["runs_identity"] = stage_key("runs", inputs)
        return self._cache["runs_identity"]

    def _model_files(self) -> list[str]:
        """The model's own input files but its parameter space's: drivers, template, an entry
        point's source, the files a program's command names."""
        from .own_model import model_source_files

        m = self.config.get("model", {})
        return [str(m[k]) for k in _FILE_KEYS if m.get(k)] + \
            [str(f) for f in model_source_files(self.config)]

    def make_model(self):
        """The model a config describes; each workflow's context says how."""
        raise NotImplementedError(f"{type(self).__name__} makes no model")

    def _count(self, n: int) -> None:
        self._runs += int(n)

    def model_runs(self) -> int | None:
        """Model runs made in this process so far; None with a process pool or Dask (the engine
        then counts the member files the stores wrote)."""
        return self._runs if self._serial else None

    @property
    def _serial(self) -> bool:
        """Members run in this process (known from ``[run]`` without starting a cluster)."""
        return check_run_config(self.config["run"]) == "serial"

    def _counted(self, theta: np.ndarray) -> xr.Dataset:
        """The model, counting runs."""
        self._count(np.atleast_2d(theta).shape[0])
        return self.model(theta)

    @property
    def executor(self):
        """Where the runner runs members: :func:`bayescal.run.cluster.make_executor` of ``[run]``
        (in this process, ``run.workers`` processes, a Dask scheduler, or SLURM jobs)."""
        if "executor" not in self._cache:
            try:
                self._cache["executor_handle"] = make_executor(self.config["run"])
            except ClusterError as err:
                raise ConfigError(str(err)) from None
            self._cache["executor"] = self._cache["executor_handle"].executor
        return self._cache["executor"]

    def close(self) -> None:
        """Close the Dask client and cancel SLURM jobs, if any."""
        self._cache.pop("executor", None)
        handle = self._cache.pop("executor_handle", None)
        if handle is not None:
            handle.close()

    @property
    def simulator(self):
        """What a stage hands the runner: the model counting its runs, in this process; the model
        itself (picklable) for a process pool or Dask, whose runs are counted from the stores'
        member files."""
        return self._counted if self._serial else self.model

    @property
    def full_space(self):
        return self.model.space

    def model_check(self, validation: bool = False, workdir: Path | None = None) -> dict[str, Any]:
        """One run of the model at its defaults (``bayescal check``): ``{"seconds": float}``;
        a run that fails there is a ConfigError naming the reason."""
        from bayescal.models.timing import timed_run

        if "model_check" not in self._cache:
            default = np.asarray(self.full_space.all_default, dtype=float)[None]
            # timed twice only for `bayescal check`'s estimates; a program's output is kept: not run twice
            again = 10.0 if validation and not self._external() else 0.0
            ds, seconds = timed_run(self.model, default, again)
            if "status" in ds and str(ds["status"].values[0]) != "done":
                raise ConfigError(f"the model fails at its defaults: {ds['reason'].values[0]}")
            self._cache["model_check"] = {"seconds": seconds}
            self._cache["default_output"] = ds  # what the model gives, in which units and on which cells
        return self._cache["model_check"]

    def checked_products(self) -> list:
        """The observation products as the calibration reads them, for ``bayescal check`` (after
        :meth:`model_check`); none when the workflow makes its own (a twin)."""
        return []

    def seconds_per_member(self) -> float:
        """The model's seconds per member in the runner's batches, for ``bayescal check``'s
        estimates (after :meth:`model_check`; :func:`~bayescal.models.contract.seconds_per_member`)."""
        from bayescal.models.timing import seconds_per_member

        if self._external():  # each member its own program run (a batch of copies would read one output)
            return self.model_check()["seconds"]
        default = np.asarray(self.full_space.all_default, dtype=float)[None]
        return seconds_per_member(self.model, default, self.model_check()["seconds"])

    def config_for_keys(self) -> dict:
        """The config the stages' keys are made of (:func:`~bayescal.workflows.config.config_for_keys`)."""
        from bayescal.workflows.config import config_for_keys

        return config_for_keys(self.config)

    def seconds_per_stored_member(self, n: int = 8) -> float:
        """Seconds per member of ``n`` runs at the defaults through the runner into a store of
        their own (the model's time and the runner's: each member's file and status), for
        ``bayescal check``'s estimates of the stages whose runs are stored; in a temporary folder."""
        import tempfile
        import time

        from bayescal.run.ensemble import run_ensemble

        if self._external():  # each member its own program run: the model's time is the runner's
            return self.seconds_per_member()
        theta = np.repeat(np.asarray(self.full_space.all_default, dtype=float)[None], n, axis=0)
        keep = self.run_dataset_vars() if hasattr(self, "run_dataset_vars") else None
        with tempfile.TemporaryDirectory(prefix="bayescal-check-") as tmp:
            t0 = time.perf_counter()
            run_ensemble(self.model, self.full_space.to_dataarray(theta, full=True), Path(tmp) / "store",
                         batch_size=n, progress=False, keep=keep)
            return (time.perf_counter() - t0) / n

    def _external(self) -> bool:
        return not self._given and self.config.get("model", {}).get("kind") == "external"

    def truth_theta(self) -> np.ndarray:
        """Full parameter vector of the twin truth (defaults with ``observations.truth`` applied)."""
        return truth_theta(self.config, self.full_space)

    def space(self):
        """The calibrated space (after screening)."""
        return self.full_space.only(self.rundir.selected())

    # ---------------------------------------------------------------------- driving
    @property
    def stage_names(self) -> tuple[str, ...]:
        """This workflow's stages, in order."""
        return self.workflow.names

    @property
    def engine(self) -> Engine:
        """The workflow engine bound to this context."""
        if "engine" not in self._cache:
            self._cache["engine"] = Engine(self.workflow, self)
        return self._cache["engine"]

    def plan(self, stages: tuple[str, ...] | None = None) -> list[PlannedStage]:
        """What :meth:`run` would do with each stage (reuse, resume, rerun, run); writes nothing."""
        return self.engine.plan(stages)

    def run(self, stages: tuple[str, ...] | None = None) -> list[StageRecord]:
        """Run (or reuse) ``stages`` (default: every stage of the workflow) in order.

        Refuses (:class:`~bayescal.workflow.rundir.RunDirRefused`) a non-empty folder bayescal did not
        create, before writing anything, and a run directory another run is working in (its lock,
        ``.bayescal-run.lock``). Returns what each stage did.
        """
        check_run_dir(self.run_dir, self.workflow.name)  # a folder not bayescal's: refused, nothing written
        with contextlib.suppress(OSError):  # one that cannot be made: claim() says why
            self.run_dir.mkdir(parents=True, exist_ok=True)
        with hold_run_dir(self.run_dir):  # one run at a time in a run directory: its marker too
            self.engine.claim()
            write_json_atomic(self.run_dir / "config.json", self.config)
            write_stage_keys(self.run_dir, {n: k for n, (k, _) in self.engine.keys().items()})
            self.rundir.write_space(self.full_space)
            if self.config_text:
                write_text_atomic(self.run_dir / "config.toml", self.config_text)
            if self.config_warnings is not None:
                write_json_atomic(self.rundir.config_warnings_json, {"warnings": list(self.config_warnings)})
            try:
                self._start_executor(stages)
                records = self.engine.run(None if stages is None else tuple(stages))
            finally:
                self.close()
        self.records.extend(records)
        return records

    def _start_executor(self, stages) -> None:
        """A Dask scheduler or SLURM cluster started before the stages when one of them will run:
        one that does not answer, or a job SLURM refuses, is a ConfigError before any model run
        (a stage's first run at the defaults included), not after it."""
        if not self.config["run"].get("scheduler"):
            return
        planned = self.plan(None if stages is None else tuple(stages))
        if any(p.status != "reuse" and p.expected_runs.strip() not in ("", "0") for p in planned):
            self.executor  # noqa: B018 -- started (and kept for the stages) or refused now

    def say(self, msg: str) -> None:
        """One line of progress (with ``progress=True``)."""
        if self.progress:
            print(msg, flush=True)

    def batch_size(self) -> int:
        """Members per call of the model (``design.batch_size``): 1 for an external program, which
        runs one member per call anyway (one per batch lets the store keep each as it finishes,
        moves the progress bar per run, and lets a pool or a cluster run them side by side)."""
        return 1 if self.config["model"]["kind"] == "external" else int(self.config["design"]["batch_size"])

    def run_members(self, simulator, theta, store, **kwargs):
        """:func:`~bayescal.run.ensemble.run_ensemble` (progress bar as the context's), then one
        line naming how many of the runs made now failed and why (each reason with its count;
        every run's ``status`` and ``reason`` stay in the store). Returns its ``RunSummary``."""
        from bayescal.run.ensemble import describe_failures, run_ensemble
        from bayescal.run.reuse import lenders

        kwargs.setdefault("progress", self.progress)
        if self.config["model"]["kind"] == "external":
            kwargs["batch_size"] = self.batch_size()  # one member per call (:meth:`batch_size`)
        identity = self.runs_identity()
        lent = lenders(self.run_dir, identity, store)  # its copies in .stale/ (of a rerun's other inputs)
        ran = run_ensemble(simulator, theta, store, runs=identity, lenders=lent, **kwargs)
        if ran.adopted:
            self.say(f"  {ran.adopted} of {ran.n_members} model runs taken from earlier runs at the same "
                     "parameter values (same model and files), not run again")
        if ran.already_done:  # a resumed stage: what an earlier, stopped run had finished
            self.say(f"  {ran.already_done} of {ran.n_members} model runs already in {store} (kept from "
                     "an earlier run), not run again")
        if ran.failed:
            self.say(f"  {ran.failed} of {ran.ran} model runs failed ({store}): "
                     f"{describe_failures(ran.failures, most=5)}")
        return ran

    def summary(self) -> str:
        """Per-stage table: status, wall time, peak memory, model runs."""
        return summary_table(self.records)

    def optimum_u(self) -> np.ndarray:
        """The optimiser's best point, else the best run of the design."""
        return self.rundir.optimum_u()


#: ``[model]`` keys naming the model's input files (in :meth:`Context.runs_identity` by content)
_FILE_KEYS = ("drivers", "template")


def _class_source(cls: type) -> str:
    """Its source file's digest, else (no file: a notebook's class) its compiled code's."""
    import inspect

    from ..workflow.keys import file_digest

    try:
        path = inspect.getsourcefile(cls)
    except (TypeError, OSError):  # no source file: built in, or defined in a notebook, `python -c`
        path = None
    return file_digest(path) if path else _code_digest(cls)


def _code_digest(cls: type) -> str:
    """A hash of a class's own methods' compiled code (names, constants and nested functions
    included; no addresses, file names or line numbers) and of its plain class attributes: for a
    class without a source file, as one defined in a notebook's cell. An edited method changes it,
    so the stages that ran it rerun; the same code gives the same hash in every session."""
    import hashlib

    h = hashlib.sha256(cls.__qualname__.encode())
    for name, value in sorted(vars(cls).items()):
        for part in _attribute_parts(value):
            h.update(name.encode() + part)
    return "code " + h.hexdigest()[:16]


def _attribute_parts(value) -> list[bytes]:
    """What identifies a class attribute: a function's (or property's) code, a plain value's repr."""
    value = getattr(value, "__func__", value)  # staticmethod, classmethod
    if isinstance(value, property):
        return [b for f in (value.fget, value.fset, value.fdel) if f is not None for b in _attribute_parts(f)]
    code = getattr(value, "__code__", None)
    if code is not None:
        return [_code_bytes(code)]
    if isinstance(value, (int, float, str, bytes, bool, tuple, type(None))):
        return [repr(value).encode()]
    return []


def _code_bytes(code) -> bytes:
    """A code object's bytecode, names and constants, nested code objects recursed into."""
    import types

    out = code.co_code + repr((code.co_names, code.co_varnames)).encode()
    for c in code.co_consts:
        out += _code_bytes(c) if isinstance(c, types.CodeType) else repr(c).encode()
    return out
