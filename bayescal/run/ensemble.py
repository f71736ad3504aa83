"""Fault-tolerant, resumable ensemble runs, serial, on a process pool or on a Dask cluster.

:func:`run_ensemble` runs a simulator over a design and writes an :class:`EnsembleStore`: a
directory with the design and one netCDF file per finished member (outputs, status, failure
reason, wall time). Files are written to a temporary name and renamed into place, so a run killed
at any moment (even ``kill -9`` during a write) leaves only complete members; running the same
command again runs only the members that are missing.

The simulator is any callable ``simulator(theta) -> xarray.Dataset`` that takes full parameter
vectors ``(k, n_values)`` and returns outputs with a leading ``member`` dimension of length ``k``
(``LandCarbonModel`` and :class:`bayescal.models.external.ExternalModel` are such callables). A
member fails, with its reason kept in the store, when

* the simulator raises (the batch is retried member by member to find the culprit),
* it reports the member failed (``failed``/``failure`` variables, as the embedded model does),
* an output holds non-finite values, or
* (external programs) the program exits non-zero, times out or writes an unreadable file.

Executors: ``None`` runs batches in this process (vectorised simulators run many members per
call); an ``int`` runs a local process pool of that many workers; a ``distributed.Client`` runs
on its cluster (``dask-jobqueue`` on SLURM, say) — nothing else changes. Results come back to
this process, which is the only writer of the store.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from ..models.contract import conform_output, member_status
from .interrupts import InterruptLatch
from .reuse import adopt_members
from .store import EnsembleStore, MemberResult

__all__ = ["EnsembleStore", "MemberResult", "RunSummary", "member_status", "model_failures", "run_ensemble",
           "run_batch"]

_SKIP = ("status", "reason", "failed", "failure", "theta")


@dataclass
class RunSummary:
    """What a call of :func:`run_ensemble` did."""

    n_members: int
    already_done: int
    ran: int
    done: int
    failed: int
    failures: dict[str, int] = field(default_factory=dict)
    wall_time: float = 0.0
    adopted: int = 0  # copied from another store's finished runs at the same values (.reuse)

    def __str__(self) -> str:
        lines = [
            f"ensemble: {self.n_members} members, {self.already_done} already in the store, "
            f"{self.ran} run now in {self.wall_time:.1f} s"
            + (f", {self.adopted} taken from another store's runs at the same values"
               if self.adopted else ""),
            f"  done: {self.done}   failed: {self.failed}",
        ]
        by_count = sorted(self.failures.items(), key=lambda kv: -kv[1])
        lines += [f"    {n:5d} x {reason}" for reason, n in by_count]
        return "\n".join(lines)


def describe_failures(reasons: Iterable[str] | Mapping[str, int], most: int | None = None) -> str:
    """``"3 x exit code 4; 1 x timeout after 60 s"``: each failure reason with its count, most
    frequent first (``most``: only that many); ``reasons`` as the reasons themselves or counted."""
    counts = Counter(reasons) if not isinstance(reasons, Mapping) else Counter(dict(reasons))
    text = "; ".join(f"{n} x {r}" for r, n in counts.most_common(most))
    rest = counts.most_common()[most:] if most is not None else []
    return text + (f"; {sum(n for _, n in rest)} x {len(rest)} other reason{'s' * (len(rest) > 1)}"
                   if rest else "")


#: failure reasons of the machine rather than of the model at its values: a program's timeout
#: (a loaded node), a program killed by a signal (the OOM killer, a pre-empted job)
_NOT_THE_MODELS = re.compile(r"^(timeout after |exit code -\d+\b)")


def model_failures(status: Iterable[str], reason: Iterable[str]) -> np.ndarray:
    """Which members failed as the model's own failure at their values (bool, per member):
    failed, and not for a reason of the machine -- a timeout (``"timeout after 600 s"``) or a
    process killed by a signal (``"exit code -9: ..."``), which may not fail again there.

    What :class:`~bayescal.posterior.runnable.Runnable` learns where the model runs from."""
    status, reason = np.asarray(list(status), dtype=object), list(reason)
    machine = np.array([bool(_NOT_THE_MODELS.match(str(r))) for r in reason], dtype=bool)
    return (status != "done") & ~machine.reshape(status.shape)


def reason_group(reason: str) -> str:
    """A failure reason without its member's details, to count alike failures together: no
    parenthesis or cell; each path, hash, decimal number and number of three or more digits as
    "…" ("spin-up: runaway LAI 16.2 > 15.0 for CROP-C4 in cell 4" -> "spin-up: runaway LAI … > …
    for CROP-C4"; "exit code 1" and "24 cycles" are kept)."""
    return _DETAIL.sub("…", _short(reason))  # paths (each member's own folder), hashes, numbers


#: the details of a failure reason that differ between alike members
_DETAIL = re.compile(r"\S*/\S*|\b[0-9a-f]{8,}\b|-?\d+\.\d+(e-?\d+)?|-?\d{3,}")


def _short(reason: str) -> str:
    """A reason without its parenthesis or cell."""
    return reason.split(" (")[0].split(" in cell")[0].strip()


def count_reasons(reasons: Iterable[str]) -> Counter[str]:
    """Failure reasons counted by :func:`reason_group`, each group named by its reasons' details
    where they tell something: a detail all share as it is, numbers that differ as their range
    ("timeout after 60.0 s" x 3 -> ``{"timeout after 60.0 s": 3}``; runaway LAI 16.2 and 18.9 ->
    ``"spin-up: runaway LAI 16.2 to 18.9 > 15.0 for CROP-C4"``), other details (paths) as "…"."""
    groups: dict[tuple[str, int], tuple[str, list[list[str]]]] = {}
    for reason in reasons:
        text = _short(reason)
        found = [m.group(0) for m in _DETAIL.finditer(text)]  # (a reason with a "…" of its own: apart)
        groups.setdefault((reason_group(reason), len(found)), (text, []))[1].append(found)
    out: Counter[str] = Counter()
    for first, details in groups.values():
        parts = iter([_detail_range(column) for column in zip(*details, strict=True)])
        out[_DETAIL.sub(lambda _, p=parts: next(p), first)] = len(details)
    return out


def _detail_range(values: tuple[str, ...]) -> str:
    """One detail of alike reasons: itself if all share it, a number range, or "…"."""
    if len(set(values)) == 1:
        return values[0]
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return "…"
    low, high = min(numbers), max(numbers)
    return f"{values[numbers.index(low)]} to {values[numbers.index(high)]}"


def run_batch(
    simulator: Callable[[np.ndarray], xr.Dataset],
    theta: np.ndarray,
    members: Sequence[int],
    keep: Sequence[str] | None = None,
) -> list[MemberResult]:
    """Run one batch of members and turn every outcome into a :class:`MemberResult`.

    Runs wherever the executor puts it (this process, a pool worker, a Dask worker).
    """
    t0 = time.perf_counter()
    try:
        # any form of the contract (docs/own-model.md): a Dataset or a dict, either failure spelling
        ds = conform_output(simulator(np.asarray(theta, dtype=float)), len(members), series=None)
    except Exception as err:  # noqa: BLE001 - any simulator error fails the member, not the run
        if len(members) > 1:
            out: list[MemberResult] = []
            for i, m in enumerate(members):
                out += run_batch(simulator, theta[i : i + 1], [m], keep)
            return out
        wall = time.perf_counter() - t0
        return [MemberResult(members[0], "failed", f"{type(err).__name__}: {err}", wall)]
    wall = (time.perf_counter() - t0) / len(members)
    _, reasons = member_status(ds)
    results = []
    for i, m in enumerate(members):
        one = ds.isel(member=i, drop=True)
        reason = str(reasons[i])
        if keep is not None:
            missing = [v for v in keep if v not in one]
            if missing and not reason:
                reason = f"simulator output lacks {missing}"
            one = one[[v for v in keep if v in one]]
        else:
            one = one.drop_vars([v for v in _SKIP if v in one])
        if not reason:
            for name, var in one.data_vars.items():
                if np.issubdtype(var.dtype, np.floating) and not np.isfinite(var.values).all():
                    reason = f"non-finite output in {name}"
                    break
        if reason:
            results.append(MemberResult(m, "failed", reason, wall))
        else:
            results.append(MemberResult(m, "done", "", wall, one.load()))
    return results


def _watch_parent(parent: int, interval: float = 0.2) -> None:
    """Pool-worker initializer: exit as soon as the runner that started this worker is gone, or
    when it terminates the worker (SIGTERM, on an interrupt); Ctrl-C is the runner's to handle.

    Without it, a SIGKILLed runner's workers go on with the batches already queued to them.
    Program groups started by :class:`~bayescal.models.external.ExternalModel` in this worker
    are killed first.
    """
    import signal
    import threading

    def terminated(*_args) -> None:
        from ..models.external import kill_running_programs

        kill_running_programs()
        os._exit(143)  # 128 + SIGTERM

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches the whole group
    if hasattr(signal, "pthread_sigmask"):  # born with it blocked (_sigint_blocked): now ignored
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGTERM, terminated)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        from ..models.external import kill_running_programs

        kill_running_programs()
        os._exit(70)  # EX_SOFTWARE; no cleanup: the parent that would read results is gone

    threading.Thread(target=watch, name="bayescal-parent-watch", daemon=True).start()


def _executor_kind(executor) -> str:
    if executor is None or executor == "serial":
        return "serial"
    if isinstance(executor, int):
        if executor < 1:
            raise ValueError(f"executor: number of worker processes must be >= 1, got {executor}")
        return "processes"
    if hasattr(executor, "scatter") and hasattr(executor, "submit"):
        return "dask"
    raise TypeError(
        f"executor must be None, a number of processes or a distributed.Client, got {type(executor).__name__}"
    )


@contextlib.contextmanager
def _sigint_blocked():
    """SIGINT held back from this thread meanwhile, and from the processes it starts (the mask
    passes through fork and exec): a terminal's Ctrl-C reaches the whole process group, and a pool
    worker still importing would print half a traceback. A Ctrl-C meanwhile is not lost: it is
    delivered as the block ends (or at once, through another of this process's threads)."""
    import signal

    if not hasattr(signal, "pthread_sigmask"):  # Windows
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _run_on_pool(workers: int, simulator, theta, batches, keep, record) -> None:
    """The batches on ``workers`` fresh processes, each result recorded as it comes. Interrupted
    (Ctrl-C, an error): the queued batches are cancelled and the workers terminated (with the
    programs they run), not waited for; what was recorded stays."""
    # fresh interpreters, not forks: a forked child of a process that has already run the
    # model's OpenMP-threaded kernel would abort (GNU OpenMP is not fork-safe)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_watch_parent, initargs=(os.getpid(),))
    try:
        with _sigint_blocked():  # the workers are started here: inherited, held till they ignore it
            futures = [pool.submit(run_batch, simulator, theta[b], b, keep) for b in batches]
        for fut in as_completed(futures):
            record(fut.result())
    except BaseException:
        processes = list((getattr(pool, "_processes", None) or {}).values())
        manager = getattr(pool, "_executor_manager_thread", None)
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            proc.terminate()
        for proc in processes:
            proc.join(timeout=30)
            if proc.is_alive():  # stuck in a compiled call that a Python handler cannot interrupt
                proc.kill()
        if manager is not None:  # it frees the pool's queues: their semaphores unlinked, and the
            manager.join(timeout=30)  # resource tracker told, before an exit that does not wait
        raise
    pool.shutdown(wait=True)


def _run_on_dask(client, simulator, theta, batches, keep, record, attempts: int = 3) -> None:
    """Batches on a Dask cluster; a batch lost with its worker (a cancelled SLURM job, the
    scattered model's copy gone with it) does not stop the others: every finished member is
    recorded, the lost batches are sent again (``attempts`` in all), then a loss is raised."""
    from distributed import as_completed as dask_as_completed

    if hasattr(client, "wait_for_workers"):
        client.wait_for_workers(1)  # scatter gives up when no worker has joined yet
    todo, lost = list(batches), []
    for _ in range(attempts):
        # a key of its own each time (hash=False): a key released by an earlier call could
        # otherwise be forgotten by the scheduler as this call scatters it ("lost dependencies")
        sim_future = client.scatter(simulator, broadcast=True, hash=False)
        futures = {client.submit(run_batch, sim_future, theta[b], b, keep, pure=False): i
                   for i, b in enumerate(todo)}
        again, lost = [], []
        for fut in dask_as_completed(list(futures), raise_errors=False):
            try:
                record(fut.result())
            except Exception as err:  # noqa: BLE001 - the worker, not the model (run_batch keeps those)
                again.append(todo[futures[fut]])
                lost.append(f"{type(err).__name__}: {err}")
        if not again:
            return
        todo = again
    raise RuntimeError(f"{len(lost)} batch(es) lost with their workers ({attempts} attempts; {lost[0]}); "
                       "finished members are stored - run again to resume")


def run_ensemble(
    simulator: Callable[[np.ndarray], xr.Dataset],
    design: xr.DataArray | np.ndarray,
    store: str | Path | EnsembleStore,
    executor=None,
    batch_size: int = 1,
    keep: Sequence[str] | None = None,
    retry_failed: bool = False,
    progress: bool = True,
    runs: str | None = None,
    lenders: Sequence[EnsembleStore] = (),
) -> RunSummary:
    """Run ``simulator`` over every member of ``design`` not yet in ``store``.

    Parameters
    ----------
    simulator : callable
        ``simulator(theta (k, n_values)) -> Dataset`` with a ``member`` dimension of length k.
        With a process pool or Dask it must be picklable.
    design : xarray.DataArray or numpy.ndarray
        Full parameter vectors on (member, parameter) (e.g. ``space.to_dataarray(space.expand(x),
        full=True)``).
    store : path or EnsembleStore
        Where the ensemble lives; created on the first call, resumed afterwards.
    executor : None, int or distributed.Client
        In-process, a local process pool of that many workers, or a Dask cluster.
    batch_size : int, default 1
        Members per simulator call (use tens for the vectorised embedded model, 1 for external
        programs).
    keep : sequence of str, optional
        Output variables to store (default all but ``failed``/``failure``/``theta``).
    retry_failed : bool, default False
        Also rerun members stored as failed.
    progress : bool, default True
        Show a progress bar.
    runs : str, optional
        The identity of what a run gives besides its parameter values (the model, its options
        and files), recorded in the store: a store of the same identity may lend its runs.
    lenders : sequence of EnsembleStore
        Stores of the same ``runs`` identity (:func:`.reuse.lenders`): a member whose parameter
        vector one of them has done is copied from it, not run (:mod:`.reuse`).

    Returns
    -------
    RunSummary
        Members done and failed (by reason) and wall time; ``print`` it for a summary.
    """
    t0 = time.perf_counter()
    if not isinstance(design, xr.DataArray):
        arr = np.atleast_2d(np.asarray(design, dtype=float))
        design = xr.DataArray(arr, dims=("member", "parameter"),
                              coords={"member": np.arange(arr.shape[0]),
                                      "parameter": [f"p{i}" for i in range(arr.shape[1])]})
    if design.dims != ("member", "parameter"):
        raise ValueError(f"design must have dims ('member', 'parameter'), got {design.dims}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    design = design.assign_coords(member=np.arange(design.sizes["member"]))
    st = store if isinstance(store, EnsembleStore) else EnsembleStore(store)
    keep = None if keep is None else list(keep)
    st.initialise(design, keep, runs)
    finished = st.finished()
    if retry_failed:
        status = st.status()["status"].values
        finished = {m for m in finished if status[m] == "done"}
    todo = [m for m in range(design.sizes["member"]) if m not in finished]
    theta = design.values
    names = [str(p) for p in design["parameter"].values]
    adopted = adopt_members(st, theta, names, todo, list(lenders), keep) if lenders and todo else []
    taken = set(adopted)
    todo = [m for m in todo if m not in taken]
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    kind = _executor_kind(executor)
    counts: Counter[str] = Counter()
    failures: list[str] = []
    # sparse (every 30 s) into a log file or a pipe, as emcee's bar: a SLURM log is not flooded
    bar = tqdm(total=len(todo), disable=not progress or not todo, desc="ensemble", unit="member",
               mininterval=0.1 if sys.stderr.isatty() else 30.0)

    def record(results: list[MemberResult]) -> None:
        for r in results:
            status, reason = st.write(r)
            counts[status] += 1
            if status == "failed":
                failures.append(reason)
        bar.update(len(results))
        bar.set_postfix(failed=counts["failed"])
        interrupts.check()  # a Ctrl-C that a finaliser dropped stops the run here

    with InterruptLatch() as interrupts:
        try:
            # one batch runs on one worker anyway: here, without starting a pool of fresh
            # interpreters for it (a sequential optimiser's evaluation, one member, took ~2 s so)
            if kind == "serial" or (kind == "processes" and len(batches) == 1):
                for b in batches:
                    record(run_batch(simulator, theta[b], b, keep))
            elif kind == "processes":
                # fresh interpreters, not forks: a forked child of a process that has already run
                # the model's OpenMP-threaded kernel would abort (GNU OpenMP is not fork-safe)
                _run_on_pool(executor, simulator, theta, batches, keep, record)
            else:
                _run_on_dask(executor, simulator, theta, batches, keep, record)
        finally:
            bar.close()
    return RunSummary(
        n_members=int(design.sizes["member"]),
        already_done=len(finished),
        ran=len(todo),
        adopted=len(adopted),
        done=counts["done"],
        failed=counts["failed"],
        failures=dict(count_reasons(failures)),
        wall_time=time.perf_counter() - t0,
    )
