"""Where ensemble members run, from the ``[run]`` table of a config: :func:`make_executor`.

``[run]`` chooses one executor for :func:`bayescal.run.ensemble.run_ensemble`:

* nothing (``workers = 0``, no ``scheduler``): members run in this process;
* ``workers = N``: a local pool of N worker processes;
* ``scheduler = "tcp://HOST:PORT"``: a running Dask scheduler (``distributed.Client``);
* ``scheduler = "slurm"``: SLURM jobs, each a Dask worker, started through dask-jobqueue's
  ``SLURMCluster`` with the options of a ``[run.slurm]`` table (:data:`SLURM_KEYS`), e.g.::

      [run]
      scheduler = "slurm"

      [run.slurm]
      jobs = 8                  # SLURM jobs (one Dask worker each)
      cores = 1                 # per job
      memory = "4GB"            # per job
      walltime = "12:00:00"
      queue = "compute"         # the partition (also spelt 'partition')
      job_extra_directives = ["--account=my-project"]

The returned :class:`Executor` holds what ``run_ensemble`` takes (``.executor``: ``None``, an
``int`` or a ``distributed.Client``) and closes the client and cancels the SLURM jobs on
:meth:`Executor.close` (or at the end of a ``with`` block). Every problem of the configuration or
the connection is a :class:`ClusterError` (a ``ValueError``) naming the key; nothing here imports
the pipeline, which turns it into its configuration error.
"""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["SLURM_KEYS", "ClusterError", "Executor", "check_run_config", "make_executor", "probe_executor"]

#: ``[run.slurm]`` key -> (type(s), default, meaning); ``None``: dask-jobqueue's default.
SLURM_KEYS: dict[str, tuple[Any, Any, str]] = {
    "jobs": (int, 1, "SLURM jobs to start (each one Dask worker with `processes = 1`); alias n_workers"),
    "maximum_jobs": (int, 0, "if > jobs: adapt between `jobs` and this many jobs to the queue of members"),
    "cores": (int, 1, "cores per job (threads of its worker)"),
    "processes": (int, 1, "Dask worker processes per job"),
    "memory": (str, "2GB", "memory per job (sbatch --mem)"),
    "walltime": (str, "01:00:00", "time limit of each job (sbatch -t)"),
    "queue": (str, None, "partition (sbatch -p); alias partition"),
    "account": (str, None, "account to charge (sbatch -A)"),
    "job_extra_directives": (list, [], "more #SBATCH lines, e.g. ['--qos=normal', '--exclusive']"),
    "job_script_prologue": (list, [], "shell lines run before the worker, e.g. ['module load netcdf']"),
    "job_directives_skip": (list, [], "#SBATCH lines dask-jobqueue writes that your site refuses"),
    "local_directory": (str, None, "a worker's scratch directory (node-local disk)"),
    "log_directory": (str, None, "where the jobs' stdout/stderr go (default: the working directory)"),
    "interface": (str, None, "network interface of the scheduler and workers, e.g. 'ib0' ('lo' on one host)"),
    "python": (str, None, "the workers' Python (default: this interpreter, sys.executable)"),
    "death_timeout": (float, 60.0, "seconds a worker waits for a lost scheduler before it exits"),
    "worker_extra_args": (list, [], "more arguments of the dask worker command"),
    "dashboard_address": (str, "", "the scheduler's dashboard, e.g. ':8787' ('' : the scheduler's host, "
                                   "port 8787 or the next free one)"),
    "wait_for_workers": (int, 1, "workers to wait for before members are sent (0: do not wait)"),
    "wait_timeout": (float, 0.0, "seconds to wait for them; 0: as long as the queue takes"),
}
_ALIASES = {"n_workers": "jobs", "partition": "queue"}
_ADDRESS = re.compile(r"^tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
CONNECT_TIMEOUT = 5.0  # seconds to reach a scheduler given by address


class ClusterError(ValueError):
    """A ``[run]`` executor that cannot be made: a bad key or value, an unreachable scheduler, a
    SLURM cluster that cannot start its workers. The message names the key."""


@dataclass
class Executor:
    """What ``run_ensemble(..., executor=handle.executor)`` takes, and how to let go of it.

    ``kind`` is ``"serial"``, ``"processes"``, ``"dask"`` (a scheduler by address) or
    ``"slurm"``; ``cluster`` is the ``SLURMCluster`` (``None`` otherwise).
    """

    executor: Any
    kind: str
    description: str
    cluster: Any = None

    def close(self) -> None:
        """Close the client and (SLURM) cancel the cluster's jobs. Safe to call twice."""
        client, cluster = (self.executor if self.kind in ("dask", "slurm") else None), self.cluster
        self.executor, self.cluster = None, None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __str__(self) -> str:
        return self.description


def _typed(key: str, value: Any, typ: Any) -> Any:
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ClusterError(f"'{key}' must be {typ.__name__}, got {type(value).__name__} {value!r}")
    if typ is list and not all(isinstance(v, str) for v in value):
        raise ClusterError(f"'{key}' must be a list of strings, got {value!r}")
    return value


def slurm_options(table: dict | None) -> dict[str, Any]:
    """``[run.slurm]`` with defaults filled in, aliases resolved and every value checked."""
    table = dict(table or {})
    for alias, key in _ALIASES.items():
        if alias in table:
            if key in table:
                raise ClusterError(f"'run.slurm.{alias}' and 'run.slurm.{key}' are the same key; give one")
            table[key] = table.pop(alias)
    unknown = sorted(set(table) - set(SLURM_KEYS))
    if unknown:
        import difflib

        names = [*SLURM_KEYS, *_ALIASES]
        near = difflib.get_close_matches(unknown[0], names, n=1, cutoff=0.6)
        near = near or [k for k in names if unknown[0].lower() in k or k in unknown[0].lower()][:1]
        hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ClusterError(f"unknown key(s) {unknown} in [run.slurm]{hint} Known: {sorted(SLURM_KEYS)}, "
                           f"and {', '.join(f'{a!r} for {k!r}' for a, k in _ALIASES.items())}")
    out = {}
    for key, (typ, default, _) in SLURM_KEYS.items():
        out[key] = _typed(f"run.slurm.{key}", table[key], typ) if key in table else default
    for key in ("jobs", "cores", "processes"):
        if out[key] < 1:
            raise ClusterError(f"'run.slurm.{key}' must be >= 1, got {out[key]}")
    if out["maximum_jobs"] and out["maximum_jobs"] < out["jobs"]:
        raise ClusterError(f"'run.slurm.maximum_jobs' ({out['maximum_jobs']}) must be 0 or >= "
                           f"'run.slurm.jobs' ({out['jobs']})")
    if out["wait_for_workers"] < 0 or out["wait_timeout"] < 0 or out["death_timeout"] <= 0:
        raise ClusterError("'run.slurm.wait_for_workers' and 'wait_timeout' must be >= 0 and "
                           "'death_timeout' > 0")
    n_max = max(out["jobs"], out["maximum_jobs"]) * out["processes"]
    if out["wait_for_workers"] > n_max:
        raise ClusterError(f"'run.slurm.wait_for_workers' ({out['wait_for_workers']}) is more workers "
                           f"than the jobs start ({n_max})")
    if not re.fullmatch(r"\d+(\.\d+)?\s*[KMGTkmgt]i?[Bb]?", out["memory"]):
        raise ClusterError(f"'run.slurm.memory' must be an amount like '4GB', got {out['memory']!r}")
    if not re.fullmatch(r"(\d+-)?\d+(:\d\d){0,2}", out["walltime"]):
        raise ClusterError(f"'run.slurm.walltime' must be like '12:00:00' or '1-00:00:00', got "
                           f"{out['walltime']!r}")
    return out


def check_run_config(run_config: dict) -> str:
    """Check ``[run]``'s executor keys without starting anything; returns the executor's kind.

    Raises :class:`ClusterError` naming the key.
    """
    workers = run_config.get("workers") or 0
    scheduler = run_config.get("scheduler") or ""
    _typed("run.workers", workers, int)
    _typed("run.scheduler", scheduler, str)
    if scheduler.strip().lower() == "slurm":
        scheduler = "slurm"
    if workers < 0:
        raise ClusterError(f"'run.workers' must be >= 0, got {workers}")
    if workers and scheduler:
        raise ClusterError("'run.workers' and 'run.scheduler' are two executors; give one")
    slurm = run_config.get("slurm")
    if slurm and scheduler != "slurm":
        raise ClusterError("[run.slurm] is read only with run.scheduler = \"slurm\"")
    if slurm is not None and not isinstance(slurm, dict):
        raise ClusterError(f"'run.slurm' must be a table, got {type(slurm).__name__}")
    if scheduler == "slurm":
        slurm_options(slurm)
        return "slurm"
    if scheduler:
        match = _ADDRESS.match(scheduler.strip())
        if scheduler.startswith("inproc://") and len(scheduler) > 9:  # a cluster in this process
            return "dask"
        if not match or not 0 < int(match.group(2)) <= 65535:
            raise ClusterError(f"'run.scheduler' must be \"slurm\" or a Dask scheduler address "
                               f"\"tcp://HOST:PORT\", got {scheduler!r}")
        return "dask"
    return "processes" if workers else "serial"


def make_executor(run_config: dict) -> Executor:
    """The executor ``[run]`` asks for, as an :class:`Executor` to close after the run.

    ``run_config`` is the ``[run]`` table (``workers``, ``scheduler``, ``slurm``); other keys
    are ignored. A scheduler address must answer within :data:`CONNECT_TIMEOUT` seconds; a
    SLURM cluster waits for ``run.slurm.wait_for_workers`` workers (up to ``wait_timeout``).
    Raises :class:`ClusterError` naming the key, never a connection traceback.
    """
    kind = check_run_config(run_config)
    if kind == "serial":
        return Executor(None, kind, "in this process")
    if kind == "processes":
        n = run_config["workers"]
        return Executor(n, kind, f"a local pool of {n} worker processes")
    try:
        from distributed import Client
    except ImportError as err:
        raise ClusterError(f"'run.scheduler' needs Dask's distributed: pip install 'bayescal[dask]' "
                           f"({err})") from None
    if kind == "dask":
        address = run_config["scheduler"].strip()
        try:
            client = Client(address, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as err:
            raise ClusterError(f"'run.scheduler': no Dask scheduler answers at {address} within "
                               f"{CONNECT_TIMEOUT:g} s ({type(err).__name__}: {err})") from None
        return Executor(client, kind, f"the Dask scheduler at {address}")
    return _slurm_executor(slurm_options(run_config.get("slurm")))


def probe_executor(run_config: dict) -> str | None:
    """Whether the executor ``[run]`` asks for would start, without starting it (``bayescal
    check``): a Dask scheduler's address answers (a TCP connection), SLURM accepts the worker job
    (``sbatch --test-only``, no job submitted). Returns what was checked (None for a local
    executor); raises :class:`ClusterError` as :func:`make_executor` would."""
    import socket

    kind = check_run_config(run_config)
    if kind == "dask":
        address = run_config["scheduler"].strip()
        match = _ADDRESS.match(address)
        if match is None:  # an in-process cluster's address: nothing to reach
            return None
        try:
            socket.create_connection((match.group(1).strip("[]"), int(match.group(2))),
                                     timeout=CONNECT_TIMEOUT).close()
        except OSError as err:
            raise ClusterError(f"'run.scheduler': no Dask scheduler answers at {address} within "
                               f"{CONNECT_TIMEOUT:g} s ({type(err).__name__}: {err})") from None
        return f"the Dask scheduler at {address} answers"
    if kind == "slurm":
        cluster = _slurm_cluster(slurm_options(run_config.get("slurm")))
        try:
            _test_submit(cluster)
        finally:
            cluster.close()
        return "SLURM accepts the worker job (sbatch --test-only)"
    return None


def _slurm_cluster(opts: dict[str, Any]):
    """dask-jobqueue's SLURMCluster of ``[run.slurm]`` (no job submitted yet)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as err:
        raise ClusterError(f"run.scheduler = \"slurm\" needs dask-jobqueue: pip install 'bayescal[dask]' "
                           f"({err})") from None

    kwargs = {k: opts[k] for k in ("cores", "processes", "memory", "walltime", "job_extra_directives",
                                   "job_script_prologue", "job_directives_skip", "worker_extra_args")}
    kwargs["death_timeout"] = opts["death_timeout"]
    kwargs["python"] = opts["python"] or sys.executable
    for key in ("queue", "account", "local_directory", "log_directory", "interface"):
        if opts[key]:
            kwargs[key] = opts[key]
    kwargs["scheduler_options"] = {"dashboard_address": opts["dashboard_address"] or None}
    try:
        return SLURMCluster(**kwargs)
    except Exception as err:  # noqa: BLE001 - dask-jobqueue's option errors, a missing sbatch
        raise ClusterError(f"[run.slurm]: SLURMCluster cannot be made: {type(err).__name__}: {err}") from None


def _slurm_executor(opts: dict[str, Any]) -> Executor:
    from distributed import Client

    cluster = _slurm_cluster(opts)
    client = None
    try:
        _test_submit(cluster)
        if opts["maximum_jobs"] > opts["jobs"]:
            cluster.adapt(minimum_jobs=opts["jobs"], maximum_jobs=opts["maximum_jobs"])
        else:
            cluster.scale(jobs=opts["jobs"])
        client = Client(cluster)
        _wait_for_workers(client, cluster, opts)
    except BaseException:
        if client is not None:
            client.close()
        cluster.close()
        raise
    n_jobs = (f"{opts['jobs']}-{opts['maximum_jobs']}" if opts["maximum_jobs"] > opts["jobs"]
              else str(opts["jobs"]))
    return Executor(client, "slurm", f"SLURM: {n_jobs} job(s) of {opts['cores']} core(s), {opts['memory']}, "
                                     f"{opts['walltime']}; scheduler {cluster.scheduler_address}", cluster)


def _test_submit(cluster) -> None:
    """``sbatch --test-only`` on the worker job script: a partition, account, memory or time limit
    the site refuses is an error now, not a job that never comes."""
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".sh", prefix="bayescal-job-") as fh:
        fh.write(cluster.job_script())
        fh.flush()
        try:
            out = subprocess.run(["sbatch", "--test-only", fh.name], capture_output=True, text=True,
                                 timeout=30)
        except (OSError, subprocess.SubprocessError) as err:
            raise ClusterError(f"run.scheduler = \"slurm\": cannot run sbatch ({type(err).__name__}: {err})"
                               ) from None
    if out.returncode != 0:
        said = "; ".join(line.removeprefix("sbatch: ").removeprefix("error: ")
                         for line in out.stderr.strip().splitlines()[-2:])
        raise ClusterError(f"[run.slurm]: SLURM refuses the worker job: {said or f'exit {out.returncode}'}")


def _wait_for_workers(client, cluster, opts: dict[str, Any]) -> None:
    """Wait for the first workers: a run started before any joined would fail to place its
    simulator (``Client.scatter`` gives up after the connect timeout). Stops with an error when
    the jobs are gone (failed, cancelled) or were never submitted."""
    import time

    n, timeout = opts["wait_for_workers"], opts["wait_timeout"]
    start = time.monotonic()
    logs = f"; the jobs' logs are in {opts['log_directory']}" if opts["log_directory"] else ""
    while n and len(client.nthreads()) < n:
        waited = time.monotonic() - start
        if timeout and waited > timeout:
            raise ClusterError(f"[run.slurm]: {len(client.nthreads())} of {n} Dask worker(s) joined within "
                               f"wait_timeout = {timeout:g} s; the jobs: {_job_states(cluster)}{logs}")
        ids = _job_ids(cluster)
        if not ids and waited > 60:
            raise ClusterError("[run.slurm]: no worker job was submitted within 60 s (sbatch failed? see "
                               "the errors above)")
        if ids and waited > 10 and not _queued(ids):
            raise ClusterError(f"[run.slurm]: the worker jobs {', '.join(ids)} ended before {n} worker(s) "
                               f"joined{logs}")
        time.sleep(1.0)


def _job_ids(cluster) -> list[str]:
    ids = [getattr(job, "job_id", None) for job in dict(getattr(cluster, "workers", {})).values()]
    return [str(i) for i in ids if i]


def _squeue(ids: list[str]) -> str | None:
    """``squeue``'s lines (job, state, reason) for these jobs; None when squeue cannot run."""
    try:
        out = subprocess.run(["squeue", "-h", "-j", ",".join(ids), "-o", "%i %T %r"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else ("" if "Invalid job id" in out.stderr else None)


def _queued(ids: list[str]) -> bool:
    """Whether any of the jobs is still pending or running (True when squeue cannot tell)."""
    lines = _squeue(ids)
    return lines is None or any(state in lines for state in ("PENDING", "CONFIGURING", "RUNNING"))


def _job_states(cluster) -> str:
    """``squeue``'s view of the cluster's jobs (state and reason), for an error message."""
    ids = _job_ids(cluster)
    if not ids:
        return "none submitted (sbatch failed? see the errors above)"
    lines = _squeue(ids)
    if lines is None:
        return f"{', '.join(ids)} (squeue cannot tell their state)"
    return "; ".join(lines.splitlines()) or f"{', '.join(ids)} (no longer queued)"
