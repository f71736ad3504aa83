"""Runs a declared workflow in a run directory: keys, reuse, resume, records, summaries -- once.

For each stage in order, the engine computes its key (:mod:`bayescal.workflow.keys`) and

- **reuses** it when its ``stage.json`` holds that key (inputs unchanged);
- **resumes** it when its ``started.json`` holds that key (killed before it finished: the
  runner's stores keep every finished model run);
- otherwise **reruns** it: the folder of other inputs is moved to ``.stale/`` (never deleted),
  keeping the run stores the stage declares (:class:`~bayescal.workflow.stage.RunStore`) whose
  own inputs are unchanged -- unless a folder in ``.stale/`` was made with that key (inputs
  edited back): that one is brought back and reused or resumed (:mod:`.restore`).

Every record is written atomically; a damaged one is set aside with a warning and its stage
reruns. A stage function receives the context (the pipeline object): ``config``, ``run_dir``,
``say`` and ``model_runs()`` are what the engine itself uses of it.
"""

from __future__ import annotations

import inspect
import os
import resource
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bayescal import __version__

from ..run.interrupts import InterruptLatch
from ..run.reuse import adopted_runs, lendable_runs, made_runs
from .keys import changed_inputs, stage_inputs, stage_key
from .restore import Restorable, find_restorable, find_store, recover, restore, store_fingerprints
from .rundir import StageRecord, read_json_record, write_json_atomic
from .rundir_guard import STALE, claim_run_dir, holds_ours, set_aside, stale_size, yours_inside
from .stage import Stage, Workflow
from .stage_files import file_problems, set_aside_damaged, written_files

__all__ = ["Engine", "PlannedStage", "StageContext", "summary_table"]


class StageContext(Protocol):
    """What the engine needs of the object it hands to the stage functions."""

    config: Mapping[str, Any]
    run_dir: Path

    def say(self, msg: str) -> None:
        """Print one line of progress (or not)."""

    def model_runs(self) -> int | None:
        """Model runs made in this process so far; None when they run elsewhere (counted from
        the member files the stores wrote)."""


@dataclass
class PlannedStage:
    """What :meth:`Engine.plan` expects a stage to do in the next ``bayescal run``."""

    name: str
    key: str
    status: str  # "reuse" | "resume" | "rerun" | "run"
    help: str
    changed: list[str] = field(default_factory=list)
    expected_runs: str = ""
    kept: list[str] = field(default_factory=list)  # run stores whose finished runs a rerun keeps
    finished_runs: int = 0  # a resumed stage's runs its stopped invocations finished (kept)
    restored: str = ""  # the folder in .stale/ of these inputs it brings back ("" for none)
    lending: int = 0  # finished runs of its stores a rerun takes where their values are unchanged


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _files_since(stage_dir: Path, since: float) -> int:
    """Member files the runner's stores under ``stage_dir`` wrote since ``since`` (epoch s)."""
    return sum(1 for f in stage_dir.rglob("member_*.nc") if f.stat().st_mtime >= since)


def summary_table(records: list[StageRecord]) -> str:
    """Per-stage table: status, wall time, peak memory, model runs (a reused stage's as its
    record says, a resumed one's over its invocations); the totals of the results, and of this
    invocation's stages and runs when some were reused or resumed."""
    lines = [f"{'stage':15s} {'status':7s} {'wall s':>8s} {'peak GiB':>9s} {'runs':>6s}"]
    for r in records:
        lines.append(f"{r.name:15s} {r.status:7s} {r.wall:8.1f} {r.peak_rss_gib:9.2f} {r.runs:6d}")
    ran = [r for r in records if r.status == "ran"]
    now = ran if len(ran) < len(records) or any(r.earlier_runs for r in ran) else []
    for label, rows, runs in (("total", records, sum(r.runs for r in records)),
                              ("ran now", now, sum(r.runs - r.earlier_runs for r in now))):
        if rows:
            lines.append(f"{label:15s} {'':7s} {sum(r.wall for r in rows):8.1f} "
                         f"{max(r.peak_rss_gib for r in rows):9.2f} {runs:6d}")
    return "\n".join(lines)


class Engine:
    """A workflow bound to a context (config, run directory).

    Parameters
    ----------
    workflow : Workflow
        The declared stages.
    context : StageContext
        Handed to every stage function.
    """

    def __init__(self, workflow: Workflow, context: StageContext) -> None:
        self.workflow = workflow
        self.ctx = context
        self.run_dir = Path(context.run_dir)
        self._keys: dict[str, tuple[str, dict]] | None = None

    # ------------------------------------------------------------------------ keys
    def keys(self) -> dict[str, tuple[str, dict]]:
        """Every stage's key and the inputs it hashes, in order (computed once)."""
        if self._keys is None:
            keys: dict[str, tuple[str, dict]] = {}
            for stage in self.workflow.stages:
                inputs = self._inputs(stage, {n: k for n, (k, _) in keys.items()})
                keys[stage.name] = (stage_key(stage.name, inputs), inputs)
            self._keys = keys
        return self._keys

    def _inputs(self, stage, needed: dict[str, str]) -> dict:
        """:func:`stage_inputs`, and the identity of a model given to the context instead of the
        config's (``ctx.model_identity()``: its class, source and space), so that a run directory
        of one model never serves another."""
        # a context's config_for_keys holds keys of how runs are made (not what they give) fixed
        config = self.ctx.config_for_keys() if hasattr(self.ctx, "config_for_keys") else self.ctx.config
        inputs = stage_inputs(stage, config, needed)
        identity = self.ctx.model_identity() if hasattr(self.ctx, "model_identity") else None
        return {**inputs, "model": identity} if identity else inputs

    def _store_keys(self, stage: Stage) -> dict[str, str]:
        needed = {n: k for n, (k, _) in self.keys().items()}
        return {s.path: stage_key(f"{stage.name}/{s.path}", self._inputs(s, needed)) for s in stage.keeps}

    def _kept_stores(self, stage: Stage, started: dict | None, inputs: dict,
                     folder: Path | None = None) -> list[str]:
        """The run stores in ``folder`` (default the stage's) that a rerun of ``stage`` with
        ``inputs`` keeps: those whose own key is unchanged; when only the stage's code
        ``revision`` changed (what the stage makes of its runs, not them), also those the earlier
        record has no key for (a store declared since)."""
        old = (started or {}).get("stores", {}) or {}
        revised = _only_revised((started or {}).get("inputs"), inputs)
        folder = self.run_dir / stage.name if folder is None else folder
        return [rel for rel, k in self._store_keys(stage).items()
                if (old.get(rel) == k or (revised and rel not in old)) and (folder / rel).exists()]

    def _selected(self, stages: tuple[str, ...] | None) -> list[Stage]:
        if stages is None:
            return list(self.workflow.stages)
        for name in stages:
            self.workflow.stage(name)  # an unknown name is named
        return [s for s in self.workflow.stages if s.name in stages]

    # ------------------------------------------------------------------------ plan
    def plan(self, stages: tuple[str, ...] | None = None) -> list[PlannedStage]:
        """What running ``stages`` (default: all) would do; reads records, writes nothing."""
        out = []
        for stage in self._selected(stages):
            key, inputs = self.keys()[stage.name]
            folder = self.run_dir / stage.name
            done = read_json_record(folder / "stage.json", set_aside=False)
            started = read_json_record(folder / "started.json", set_aside=False)
            changed: list[str] = []
            finished_here = done is not None and done.get("key") == key
            bad = file_problems(folder, done, stage.foreign_files(folder)) if finished_here else []
            if done is not None and done.get("key") == key and not bad:
                status = "reuse"
            elif bad:  # run() sets them aside and reruns the stage
                status, changed = "rerun", bad
            elif started is not None and started.get("key") == key:
                status = "resume"
            elif _only_yours(stage, folder):
                status = "run"  # a folder of your files only: run() runs the stage beside them
            elif folder.exists():
                status = "rerun"
                changed = changed_inputs((done or started or {}).get("inputs"), inputs)
            else:
                status = "run"
            found = self._restorable(stage, key) if status in ("rerun", "run") else None
            if found is not None:  # a folder of these inputs in .stale/: brought back
                status, changed, folder = ("reuse" if found.finished else "resume"), [], found.copy
                started = read_json_record(folder / "started.json", set_aside=False)
                record = read_json_record(folder / "stage.json", set_aside=False)
                bad = file_problems(folder, record, stage.foreign_files(folder)) if found.finished else []
                if bad:  # brought back, then rerun by run() for its damaged files
                    status, changed = "rerun", bad
            runs = self._expected_runs(stage, given="model" in inputs)
            kept = self._kept_stores(stage, started, inputs) if status == "rerun" else []
            kept += self._adoptable(stage, kept) if status in ("rerun", "run") else []
            finished = 0 if status != "resume" else \
                _earlier_runs(folder, True, int(started.get("kept_runs", 0)), _counted_runs(folder), None)[0]
            if found is not None and status == "resume":  # and the runs of the stores it gets back
                finished += sum(made_runs(place / rel) for rel, place in found.stores.items())
            restored = str(found.copy.relative_to(self.run_dir)) if found is not None else ""
            lending = self._lending(folder, kept) if status == "rerun" else 0
            out.append(PlannedStage(stage.name, key, status, stage.help, changed, runs, kept, finished,
                                    restored, lending))
        return out

    def _lending(self, folder: Path, kept: list[str]) -> int:
        """:func:`~bayescal.run.reuse.lendable_runs` of the folder a rerun sets aside and of the
        stage's earlier folders in ``.stale/`` (the same model's)."""
        identity = self.ctx.runs_identity() if hasattr(self.ctx, "runs_identity") else None
        earlier = sorted((self.run_dir / STALE).glob(f"{folder.name}-*"))
        return lendable_runs(folder, identity, kept) + sum(lendable_runs(f, identity, []) for f in earlier) \
            if identity else 0

    def _expected_runs(self, stage: Stage, given: bool) -> str:
        """The stage's own estimate; one that takes a ``space`` gets the space of a model given to
        the context (``given``: its identity is in the key), which the config does not describe."""
        fn = stage.expected_runs
        if fn is None:
            return ""
        if given and "space" in inspect.signature(fn).parameters:
            return fn(self.ctx.config, space=self.ctx.full_space)
        return fn(self.ctx.config)

    # ------------------------------------------------------------------------- run
    def claim(self) -> None:
        """Create (or re-open) the run directory; refuses a folder bayescal did not create."""
        claim_run_dir(self.run_dir, self.workflow.name, self.workflow.names)

    def run(self, stages: tuple[str, ...] | None = None) -> list[StageRecord]:
        """Run (or reuse) ``stages`` (default: all) in the workflow's order.

        Call :meth:`claim` first. Returns what each stage did.
        """
        records = []
        for stage in self._selected(stages):
            key, inputs = self.keys()[stage.name]
            recover(self.run_dir / stage.name)  # your files, if a bring-back was cut short
            done = read_json_record(self.run_dir / stage.name / "stage.json")
            if (done or {}).get("key") != key and self._restore(stage, key, inputs):
                done = read_json_record(self.run_dir / stage.name / "stage.json")
            finished = None  # the record of a finished stage rerun for a damaged file
            if done is not None and done.get("key") == key and self._damaged(stage, done):
                (self.run_dir / stage.name / "stage.json").unlink()
                done, finished = None, done
            if done is not None and done.get("key") == key and "wall" in done:
                records.append(StageRecord(stage.name, "reused", done["wall"], done["peak_rss_gib"],
                                           done["runs"], done.get("warnings", []), done.get("kept_runs", 0)))
                self.ctx.say(f"[{stage.name}] up to date (inputs unchanged) - reused")
            else:
                records.append(self._execute(stage, key, inputs, finished))
        return records

    def _damaged(self, stage: Stage, record: dict) -> bool:
        """A finished stage's damaged files set aside, and those gone named (warnings): True (it reruns)."""
        folder = self.run_dir / stage.name  # files of the user's are not bayescal's to set aside
        return set_aside_damaged(folder, record, stage.foreign_files(folder), stage.name)

    def _prepare(self, stage: Stage, key: str, inputs: dict) -> tuple[bool, int]:
        """The stage's folder for a run with ``key``: resumed (True), or fresh (the old one set
        aside); and the runs of the stores kept from a run of other inputs (a resumed run keeps
        the count its first start wrote in ``started.json``)."""
        folder = self.run_dir / stage.name
        started = read_json_record(folder / "started.json")
        stores = self._store_keys(stage)
        resumed = started is not None and started.get("key") == key
        provisional = {"key": key, "stores": stores, "inputs": inputs, "started": time.time(), "kept_runs": 0}
        if folder.exists() and not resumed and not _only_yours(stage, folder):
            self._set_aside(stage, started, inputs, keep_stores=stores, provisional=provisional)
            self.ctx.say(f"[{stage.name}] {stale_size(self.run_dir)}")
        folder.mkdir(parents=True, exist_ok=True)
        if not resumed:
            self._adopt_stores(stage, stores, provisional)
        (folder / "stage.json").unlink(missing_ok=True)
        # the files beside the folder before the stage's first start: yours (a resumed run keeps its list)
        outside = (started or {}).get("outside") if resumed else None
        outside = outside if outside is not None else {d: sorted(f) for d, f in self._outside(stage).items()}
        kept = int((started or {}).get("kept_runs", 0)) if resumed else \
            made_runs(folder) + _counted_runs(folder)
        write_json_atomic(folder / "started.json", {"key": key, "stores": stores, "inputs": inputs,
                                                    "started": time.time(), "outside": outside,
                                                    "kept_runs": kept})
        return resumed, kept

    def _set_aside(self, stage: Stage, started: dict | None, inputs: dict,
                   keep_stores: dict[str, str] | None = None, provisional: dict | None = None) -> Path:
        """The stage's folder of other inputs moved to ``.stale/`` (what it wrote beside its folder
        with it), your files in it put back in place, and with ``keep_stores`` (the stores' keys
        now) the run stores whose own inputs are unchanged, after ``provisional`` (the new run's
        ``started.json``) is written; returns where it went."""
        folder = self.run_dir / stage.name
        done = read_json_record(folder / "stage.json", set_aside=False)
        changed = changed_inputs((done or started or {}).get("inputs"), inputs)
        why = f" ({', '.join(changed[:4])}{' ...' * (len(changed) > 4)} changed)" if changed else ""
        moved = set_aside(self.run_dir, folder)
        self._set_aside_outside(stage, moved)
        self.ctx.say(f"[{stage.name}] results of other inputs{why} moved to "
                     f"{moved.relative_to(self.run_dir)}")
        folder.mkdir()
        yours = stage.foreign_files(moved)
        for name in yours:  # files bayescal did not write stay where their owner put them
            os.replace(moved / name, folder / name)
        kept = self._kept_stores(stage, started, inputs, moved) if keep_stores is not None else []
        if kept:  # a record of the key before the stores move in: a kill then resumes with them
            write_json_atomic(folder / "started.json", provisional)
        for rel in kept:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(moved / rel, folder / rel)
            self.ctx.say(f"[{stage.name}] {rel}: inputs of its runs unchanged - finished runs kept")
        beside = {Path(w.rstrip("/")).name for w in stage.writes if w.startswith("../")}
        inside = yours_inside(moved, beside)  # in its subfolders set aside: yours too
        for name in inside:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(moved / name, folder / name)
        if yours or inside:
            self.ctx.say(f"[{stage.name}] kept in place, not bayescal's: {', '.join(yours + inside)}")
        return moved

    def _adoptable(self, stage: Stage, kept: list[str]) -> list[str]:
        """The stores not in ``kept`` that a new folder of the stage takes from ``.stale/``."""
        keys = {rel: k for rel, k in self._store_keys(stage).items() if rel not in kept}
        found = {rel: find_store(self.run_dir, stage.name, rel, k) for rel, k in keys.items()}
        return [f"{rel} (in {c.relative_to(self.run_dir)})" for rel, c in found.items() if c is not None]

    def _adopt_stores(self, stage: Stage, stores: dict[str, str], provisional: dict) -> None:
        """Run stores of these inputs in a folder in ``.stale/`` that the stage's new folder lacks:
        taken, their finished runs kept (a record of the key written first: a kill resumes)."""
        folder = self.run_dir / stage.name
        for rel, k in stores.items():
            copy = None if (folder / rel).exists() else find_store(self.run_dir, stage.name, rel, k)
            if copy is None:
                continue
            record = read_json_record(folder / "started.json", set_aside=False) or {}
            if record.get("key") != provisional["key"]:
                write_json_atomic(folder / "started.json", provisional)
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(copy / rel, folder / rel)
            self.ctx.say(f"[{stage.name}] {rel}: runs of these inputs in {copy.relative_to(self.run_dir)} - "
                         "finished runs kept")

    def _restorable(self, stage: Stage, key: str) -> Restorable | None:
        """A folder of the stage in ``.stale/`` made with ``key`` (:mod:`.restore`), when the
        stage's own folder is not of that key; never for a stage writing beside its folder."""
        folder = self.run_dir / stage.name
        if any(w.startswith("../") for w in stage.writes) or not (self.run_dir / STALE).is_dir():
            return None
        for record in ("stage.json", "started.json"):
            if (read_json_record(folder / record, set_aside=False) or {}).get("key") == key:
                return None
        return find_restorable(self.run_dir, stage.name, key, [s.path for s in stage.keeps])

    def _restore(self, stage: Stage, key: str, inputs: dict) -> bool:
        """Bring back the stage's folder of ``key`` from ``.stale/`` (its own folder set aside
        first); True when it did."""
        if self._restorable(stage, key) is None:
            return False
        folder = self.run_dir / stage.name
        if folder.exists() and not _only_yours(stage, folder):
            self._set_aside(stage, read_json_record(folder / "started.json", set_aside=False), inputs)
        # its stores may be in the folder just moved
        found = find_restorable(self.run_dir, stage.name, key, [s.path for s in stage.keeps])
        if found is None:
            return False
        where = found.copy.relative_to(self.run_dir)
        restore(found, folder)
        self.ctx.say(f"[{stage.name}] {where} was made with these inputs: brought back"
                     + ("" if found.finished else " to resume it")
                     + (f" with its run stores {', '.join(found.stores)}" if found.stores else ""))
        return True

    def _set_aside_outside(self, stage: Stage, moved: Path) -> None:
        """What the stage wrote beside its folder (the report page, ``figures/``) set aside with
        it into ``moved``; of a folder there only the files its record says it wrote (a file of
        yours in ``figures/`` stays; a record without the list: the whole folder)."""
        wrote = (read_json_record(moved / "stage.json") or {}).get("outside")
        # a run that stopped (failed, killed) left no list: its files are those not there before it
        there = None if wrote is not None else (read_json_record(moved / "started.json") or {}).get("outside")
        for out in (w.rstrip("/") for w in stage.writes if w.startswith("../")):
            src, dest = self.run_dir / out[3:], moved / Path(out).name
            if src.is_dir() and (out[3:] in (wrote or {}) or out[3:] in (there or {})):
                names = wrote[out[3:]] if wrote is not None else \
                    sorted(p.name for p in src.iterdir() if p.name not in there[out[3:]])
                dest.mkdir(exist_ok=True)
                for name in names:
                    if (src / name).exists():
                        os.replace(src / name, dest / name)
                yours = sorted(p.name for p in src.iterdir())
                if yours:
                    self.ctx.say(f"[{stage.name}] kept in place in {out[3:]}/, not bayescal's: "
                                 f"{', '.join(yours)}")
            elif src.exists():
                os.replace(src, dest)

    def _outside(self, stage: Stage) -> dict[str, dict[str, int]]:
        """The files (name -> mtime in ns) of each folder the stage writes beside its own."""
        out = {}
        for w in stage.writes:
            folder = self.run_dir / w.rstrip("/")[3:]
            if w.startswith("../") and w.endswith("/") and folder.is_dir():
                out[folder.name] = {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()}
        return out

    def _execute(self, stage: Stage, key: str, inputs: dict, finished: dict | None = None) -> StageRecord:
        folder = self.run_dir / stage.name
        t0, runs0, started_at = time.perf_counter(), self.ctx.model_runs(), time.time()
        # a Ctrl-C Python drops in a finaliser, from the stage's start to its record: raised before it
        with InterruptLatch() as interrupts:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                resumed, reused = self._prepare(stage, key, inputs)
                counted0 = _counted_runs(folder)
                kept, reused = _earlier_runs(folder, resumed, reused, counted0, finished)
                self.ctx.say(f"[{stage.name}] {stage.help}")
                before = self._outside(stage)
                stage.function(self.ctx)
                # the files it wrote beside its folder: a rerun sets aside these, not yours
                wrote = {d: sorted(n for n, t in files.items() if before.get(d, {}).get(n) != t)
                         for d, files in self._outside(stage).items()}
            shown = [w for w in caught if not issubclass(w.category, DeprecationWarning | FutureWarning)]
            msgs = sorted({f"{w.category.__name__}: {w.message}" for w in shown})
            for w in {str(w.message): w for w in shown}.values():  # recorded, and said (once each)
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            runs1 = self.ctx.model_runs()
            if runs0 is not None and runs1 is not None:
                runs = runs1 - runs0
            else:  # runs in other processes: the member files its stores gained, and the stage's count
                runs = _files_since(folder, started_at) + max(0, _counted_runs(folder) - counted0)
            runs += kept
            reused += adopted_runs(folder) if finished is None else 0  # a finished record's has them
            rec = StageRecord(stage.name, "ran", time.perf_counter() - t0, _peak_rss_gib(), runs, msgs,
                              reused, earlier_runs=kept)
            interrupts.check()
            write_json_atomic(folder / "stage.json", {
                "stage": stage.name, "key": key, "wall": rec.wall, "peak_rss_gib": rec.peak_rss_gib,
                "runs": rec.runs, "kept_runs": reused, "warnings": msgs, "finished": time.time(),
                "bayescal": __version__, "inputs": inputs, "outside": wrote,
                "store_fingerprints": store_fingerprints(folder, [s.path for s in stage.keeps]),
                "files": written_files(folder, stage.foreign_files(folder), [s.path for s in stage.keeps],
                                       beside=stage.writes),
            })
        self.ctx.say(f"[{stage.name}] done in {rec.wall:.1f} s, {rec.runs} model runs"
                     + (f" ({kept} of them by an earlier invocation, kept)" if kept and resumed else "")
                     + (f" (and {reused} kept from a run of other inputs)" if reused else "")
                     + (f", {len(msgs)} warnings" if msgs else ""))
        return rec


#: a stage's count of the runs no store keeps (the site chain's hundreds of thousands), over all
#: its invocations: ``{"runs": n, ...}`` (written by the stage, kept after it finished: a stage
#: rerun for a damaged file, or kept as a store by a rerun, still counts them)
RUN_COUNT_FILE = "evaluations_progress.json"


def _earlier_runs(folder: Path, resumed: bool, reused: int, counted: int,
                  finished: dict | None) -> tuple[int, int]:
    """The runs a stage's record counts besides this invocation's, and those of stores kept from
    a run of other inputs (said apart, as runs its results rest on). A finished stage rerun for a
    damaged file: its record's own (whatever its files say now: an older bayescal's chain left no
    count). A resumed one: the runs its stopped invocations finished -- kept in its stores, or
    counted in :data:`RUN_COUNT_FILE` (``counted``) -- less the kept stores' (``reused``, from
    ``started.json``). A fresh one: none."""
    if finished is not None:
        return int(finished.get("runs", 0)), int(finished.get("kept_runs", 0))
    if resumed:
        return max(0, made_runs(folder) + counted - reused), reused
    return 0, reused


def _only_revised(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """The stage's inputs differ in its code's ``revision`` alone (its stores then stay valid,
    also those an older record has no key for)."""
    if not isinstance(old, Mapping) or old.get("revision", 0) == new.get("revision", 0):
        return False
    return {k: v for k, v in old.items() if k not in ("revision", "detail")} == \
        {k: v for k, v in new.items() if k not in ("revision", "detail")}




def _only_yours(stage: Stage, folder: Path) -> bool:
    """The stage's folder holds only your files (put there before the stage first ran, or empty;
    in a subfolder of bayescal's name, files not of :data:`OURS_INSIDE`'s kinds): nothing of
    bayescal's to set aside."""
    if not folder.is_dir():
        return False
    foreign = set(stage.foreign_files(folder))
    return all(p.name in foreign or (p.is_dir() and not holds_ours(p)) for p in folder.iterdir())


def _counted_runs(folder: Path) -> int:
    """The runs a stage's stopped invocations counted in :data:`RUN_COUNT_FILE` (0 without)."""
    done = read_json_record(folder / RUN_COUNT_FILE, set_aside=False)
    return int(done.get("runs", 0)) if isinstance(done, dict) else 0
