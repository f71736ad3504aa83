"""Adapter for a model that is a separate program.

For every member, :class:`ExternalModel` makes a run directory, renders the parameter file from a
template, runs the command as an argument list (never through a shell) with a timeout, and reads
the program's netCDF output into a Dataset. Failures of one member — non-zero exit, timeout, a
missing, unreadable or malformed output, units that do not convert to those of the first finished
member — become ``failed``/``failure`` entries, so the ensemble runner keeps the reason and carries on.

Template placeholders are ``{{ label }}`` with a parameter label of the space
(``{{ vmax[BDL-EVG] }}``, ``{{ gamma_w }}``); each is replaced by the value written with
``repr(float)`` (full precision, nothing but a number); any other ``{{ ... }}`` is an error
naming it. Command arguments may contain ``{run_dir}``, ``{param_file}`` and ``{output}``,
replaced by paths inside the run directory; every other brace is passed on as it is
(``${HOME}``, ``--opts={"n": 1}``). The output path must stay inside the run directory, and the
parameter file is replaced, never written through a link that is already there.

Each program runs in its own session (process group): a timeout kills the whole group, so a
model started by a wrapper script dies with it, and so does anything the program leaves behind.

Example
-------
>>> model = ExternalModel(                                           # doctest: +SKIP
...     command=["python", "dalec_model.py", "{param_file}", "drivers.dat", "{output}"],
...     template="params.template", space=space, workdir="runs/dalec", timeout=600,
...     variables=["nee", "lai"])
>>> run_ensemble(model, design, "runs/dalec/store", executor=client)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath

import numpy as np
import xarray as xr

from ..parameters import ParameterSpace

__all__ = ["ExternalModel"]

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]+)\s*\}\}")
_ANY_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_ARG_FIELD = re.compile(r"\{(run_dir|param_file|output)\}")
#: written in a member's run directory once its program finished and its output was read: a later
#: call with the same inputs (a batch resumed after a kill) reads that output instead of running again
FINISHED = "bayescal_finished.json"


# process groups started by this process and still running: a pool worker whose runner died
# kills them before it exits (bayescal.run.ensemble._watch_parent); bookkeeping only, no behaviour
_RUNNING: set[int] = set()


def kill_running_programs() -> None:
    """Kill every program group this process started that is still running."""
    for pgid in list(_RUNNING):
        _kill_group(pgid)


#: in a member's run directory while its program runs: the program's pid and start time, so that a
#: later run of the member (a resume after bayescal was killed with -9, its program left running)
#: stops that program's group first instead of running beside it (and having its output overwritten)
RUNNING_FILE = ".bayescal_program.json"


def _this_machine() -> dict[str, str]:
    """This machine since its boot: host name and Linux's boot id (a pid means nothing elsewhere)."""
    import socket

    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return {"host": socket.gethostname(), "boot": boot}


def _start_time(pid: int) -> str | None:
    """The process's start time (clock ticks since boot, Linux's ``/proc/<pid>/stat``; None: no
    such process, or no ``/proc``): with the pid, which process it is."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = stat.rsplit(")", 1)[-1].split()
    return rest[19] if len(rest) > 19 and rest[0] != "Z" else None


def stop_left_running(run_dir: Path) -> bool:
    """Kill the group of a program an earlier run of this member left running (its
    :data:`RUNNING_FILE`, the same process still alive); True if one was."""
    try:
        info = json.loads((run_dir / RUNNING_FILE).read_text())
        pid, start, where = int(info["pid"]), str(info["start"]), {k: info[k] for k in ("host", "boot")}
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if where != _this_machine() or _start_time(pid) != start:  # another machine's, or it ended
        return False
    _kill_group(pid)
    return True


@contextlib.contextmanager
def _member_lock(run_dir: Path):
    """The member's folder to itself: two members of the same values (a design's repeated point)
    on two workers run its program once -- the second waits, then reads the first's output. A
    killed holder's lock is free again (its program may still run: :func:`stop_left_running`)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(run_dir / ".bayescal_member.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run_group(argv: list[str], cwd: Path, env: dict, timeout: float | None):
    """Run ``argv`` in a new session; on timeout (and after it exits) kill its whole group.

    Returns ``(exit code or None if it could not start, stdout, stderr or the start error,
    timed out)``.
    """
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
    except OSError as err:
        return None, "", f"cannot start {argv[0]!r} (run in {cwd}): {_start_error(argv[0], err)}", False
    timed_out = False
    _RUNNING.add(proc.pid)
    try:
        start = _start_time(proc.pid)
        if start is not None:  # Linux: the program named, for a run after a kill -9 of this one
            (cwd / RUNNING_FILE).write_text(json.dumps({"pid": proc.pid, "start": start, **_this_machine()}))
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc.pid)
        try:  # a grandchild that left the group may still hold the pipes
            out, err = proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            out, err = "", ""
    except BaseException:  # interrupted (KeyboardInterrupt, a dying worker): take the group along
        _kill_group(proc.pid)
        raise
    finally:
        _RUNNING.discard(proc.pid)
    _kill_group(proc.pid)  # what the program left running in its group
    (cwd / RUNNING_FILE).unlink(missing_ok=True)
    return proc.returncode, out or "", err or "", timed_out


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _start_error(program: str, err: OSError) -> str:
    """Why a program could not start: a script whose ``#!`` line names an interpreter that is not
    there is not the script missing (the system says "No such file" of either)."""
    import errno

    if err.errno == errno.ENOENT and os.path.isfile(program):
        with open(program, "rb") as fh:
            first = fh.readline(200).decode(errors="replace").strip()
        if first.startswith("#!"):
            return f"its first line {first!r} names an interpreter that is not there"
    return str(err)


def unused_message(unused: Sequence[str]) -> str:
    """What to say of free values no template placeholder gives the program."""
    shown = ", ".join(repr(u) for u in unused[:8]) + " ..." * (len(unused) > 8)
    return (f"the template has no placeholder for {len(unused)} free parameter value(s) of the space: "
            f"{shown}; their values would never reach the program. Add {{{{ {unused[0]} }}}} where the "
            "program reads it, or leave the value out of the parameters file")


class ExternalModel:
    """Run an external model program per member.

    Parameters
    ----------
    command : sequence of str
        Program and arguments, e.g. ``["./model", "{param_file}", "{output}"]``.
    template : str or path
        Parameter-file template text, or a path to a file holding it.
    space : ParameterSpace
        Labels of the full parameter vectors the model takes.
    workdir : str or path
        Where run directories are made (one per distinct parameter vector).
    param_file : str, default "params.txt"
        Name of the rendered parameter file in the run directory.
    output : str, default "output.nc"
        Name of the netCDF file the program writes in its run directory.
    timeout : float, optional
        Seconds before a run is killed and its member failed.
    variables : sequence of str, optional
        Output variables to read (default all).
    env : mapping, optional
        Extra environment variables for the program.

    Attributes
    ----------
    units : dict or None
        Each output's ``units`` attribute in the first member that finished (None before);
        a later member in other units of the same quantity is converted to them, one in units
        that do not convert fails with a reason naming the variable and both units.
    """

    def __init__(
        self,
        command: Sequence[str],
        template: str | Path,
        space: ParameterSpace,
        workdir: str | Path,
        param_file: str = "params.txt",
        output: str = "output.nc",
        timeout: float | None = None,
        variables: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
    ):
        if isinstance(command, str) or not command:
            raise ValueError("command must be a non-empty list of arguments (it is never run by a shell)")
        self.command = [str(c) for c in command]
        text = Path(template).read_text() if isinstance(template, Path) or (
            isinstance(template, str) and "\n" not in template and Path(template).is_file()
        ) else str(template)
        self.template = text
        self.space = space
        self.workdir = Path(workdir)
        for what, name in (("param_file", param_file), ("output", output)):
            p = PurePath(name)
            if p.is_absolute() or ".." in p.parts or len(p.parts) != 1:
                raise ValueError(f"{what} {name!r} must be a plain file name inside the run directory")
        self.param_file = param_file
        self.output = output
        self.timeout = timeout
        self.variables = None if variables is None else list(variables)
        self.env = dict(env or {})
        self._files_digest: str | None = None  # of the files the command names (first run)
        #: each output's units, from the first member that finished; later members are converted to them
        self.units: dict[str, str] | None = None
        labels = set(space.all_labels)
        bad = sorted({m.strip() for m in _ANY_PLACEHOLDER.findall(text)} - labels)
        if bad:
            vector = [lab for lab in space.all_labels if lab.startswith(bad[0] + "[")]
            example = repr(vector[0]) if vector else repr(space.all_labels[0])
            each = ", ".join("{{ " + lab + " }}" for lab in vector[:3]) + (" ..." if len(vector) > 3 else "")
            what = f"{bad[0]!r} is a vector: one placeholder per value, {each}; " if vector else ""
            raise ValueError(
                f"template placeholders {['{{ ' + b + ' }}' for b in bad]} are not parameters of the space "
                f"({what}a placeholder is {{{{ label }}}} with a label of the space such as {example}, "
                "no spaces inside)"
            )
        used = {m.strip() for m in _ANY_PLACEHOLDER.findall(text)}
        #: free values of the space the template never gives the program (calibrated, they would keep
        #: their prior); a warning here, an error in a config (``bayescal check``)
        self.unused_labels = [lab for lab in space.labels if lab not in used]
        if self.unused_labels:
            import warnings

            warnings.warn(unused_message(self.unused_labels), UserWarning, stacklevel=2)

    # ------------------------------------------------------------------ pieces
    def render(self, theta: np.ndarray) -> str:
        """The parameter file for one full parameter vector."""
        values = self.space.check(theta, strict=False, full=True)
        lookup = {lab: repr(float(v)) for lab, v in zip(self.space.all_labels, values, strict=True)}
        return _PLACEHOLDER.sub(lambda m: lookup[m.group(1)], self.template)

    def run_dir(self, theta: np.ndarray) -> Path:
        """The run directory of a parameter vector (named by a hash of its values)."""
        digest = hashlib.sha256(np.ascontiguousarray(theta, dtype=float).tobytes()).hexdigest()[:16]
        return self.workdir / f"run_{digest}"

    def _inputs_digest(self, text: str) -> str:
        """What a member's output depends on besides the program's own behaviour: the command, the
        rendered parameter file, the output's name and variables, the environment, and the contents
        of every file the command names by an absolute path (the program, a script, its data)."""
        if self._files_digest is None:
            h = hashlib.sha256()
            for c in self.command:
                if os.path.isabs(c) and os.path.isfile(c):
                    with open(c, "rb") as fh:
                        for block in iter(lambda fh=fh: fh.read(1 << 20), b""):
                            h.update(block)
            self._files_digest = h.hexdigest()
        spec = [self.command, text, self.output, self.variables, sorted(self.env.items()), self._files_digest]
        return hashlib.sha256(json.dumps(spec, default=str).encode()).hexdigest()

    def _finished(self, run_dir: Path, out_path: Path, digest: str) -> xr.Dataset | None:
        """The output of a run of exactly these inputs that finished before (a batch cut short by a
        kill keeps its finished members' programs' work), or None."""
        try:
            done = json.loads((run_dir / FINISHED).read_text()).get("inputs") == digest
        except (OSError, ValueError, AttributeError):
            return None
        ds, why = self._read(out_path) if done and out_path.exists() else (None, "")
        return ds if not why else None

    def _run_one(self, theta: np.ndarray) -> tuple[xr.Dataset | None, str]:
        run_dir = self.run_dir(theta)
        run_dir.mkdir(parents=True, exist_ok=True)
        with _member_lock(run_dir):
            return self._run_in(run_dir, theta)

    def _run_in(self, run_dir: Path, theta: np.ndarray) -> tuple[xr.Dataset | None, str]:
        text = self.render(theta)
        out_path = (run_dir / self.output).resolve()
        if not out_path.is_relative_to(run_dir.resolve()):
            return None, f"output path {self.output!r} escapes the run directory"
        digest = self._inputs_digest(text)
        ds = self._finished(run_dir, out_path, digest)
        if ds is not None:
            return ds, ""
        (run_dir / FINISHED).unlink(missing_ok=True)
        if stop_left_running(run_dir):  # bayescal was killed (-9) while it ran: its output would follow
            warnings.warn(f"a program left running in {run_dir} by an earlier, killed run of this member was "
                          "stopped before the member ran again", RuntimeWarning, stacklevel=2)
        # written beside and renamed into place: a link already there is replaced, not followed
        tmp = run_dir / f".{self.param_file}.tmp"
        tmp.unlink(missing_ok=True)
        tmp.write_text(text)
        os.replace(tmp, run_dir / self.param_file)
        out_path.unlink(missing_ok=True)
        subst = {"run_dir": str(run_dir.resolve()), "param_file": str((run_dir / self.param_file).resolve()),
                 "output": str(out_path)}
        argv = [_ARG_FIELD.sub(lambda m: subst[m.group(1)], c) for c in self.command]
        env = {**os.environ, **self.env}
        code, stdout, stderr, timed_out = _run_group(argv, run_dir, env, self.timeout)
        if code is None:
            return None, stderr
        (run_dir / "stdout.txt").write_text(stdout)
        (run_dir / "stderr.txt").write_text(stderr)
        if timed_out:
            return None, f"timeout after {self.timeout} s"
        if code != 0:
            last = stderr.strip().splitlines()[-1:] or [""]
            return None, f"exit code {code}: {last[0][:200]}"
        if not out_path.exists():
            wrote = sorted(p.name for p in run_dir.iterdir() if p.name not in ("stdout.txt", "stderr.txt")
                           and not p.name.startswith(".") and p.name != self.param_file)
            return None, (f"the program wrote no output file {self.output!r} (beside its parameter file "
                          f"and stdout.txt and stderr.txt, its folder {run_dir} holds "
                          f"{wrote[:8] if wrote else 'nothing'})")
        ds, why = self._read(out_path)
        if not why:  # a later call with these inputs (a resumed batch) reads this output again
            tmp = run_dir / f".{FINISHED}.tmp"
            tmp.write_text(json.dumps({"inputs": digest}))
            os.replace(tmp, run_dir / FINISHED)
        return ds, why

    def _read(self, out_path: Path) -> tuple[xr.Dataset | None, str]:
        from bayescal.readers.gridded_values import open_product  # time in 'months since' too

        try:
            with open_product(out_path, str(out_path)) as opened:
                raw = opened.load()
            ds = _at_bounds_middle(raw)
            if ds is raw:  # no time bounds to read its months by
                _say_if_month_ends(ds, f"the program's output {self.output!r}")
        except Exception as err:  # noqa: BLE001 - any read error fails the member
            return None, f"cannot read output {self.output!r}: {type(err).__name__}: {err}"
        if self.variables is not None:
            missing = [v for v in self.variables if v not in ds]
            if missing:
                have = sorted(str(v) for v in ds.data_vars)
                return None, f"output {self.output!r} lacks variables {missing} (it has {have})"
            ds = ds[self.variables]
        return ds, ""

    def _in_units(self, ds: xr.Dataset) -> tuple[xr.Dataset | None, str]:
        """One member's output in the units of the first member that finished (the run at the
        defaults, in the site route): converted (:func:`bayescal.readers.conversion_factor`), or
        the member failed with a reason naming the variable and both units. Members stacked on
        ``member`` share one ``units`` attribute per variable, so each must be in it."""
        from bayescal.readers import UnitError, conversion_factor

        units = {str(v): str(ds[v].attrs["units"]) for v in ds.data_vars if ds[v].attrs.get("units")}
        if self.units is None:
            self.units = units
            return ds, ""
        for v, have in units.items():
            want = self.units.get(v)
            if want is None or have == want:
                continue
            try:
                f = conversion_factor(have, want, v)
            except UnitError as err:
                return None, f"output {self.output!r}: '{v}' in [{have}], not convertible to [{want}] of " \
                             f"the first finished run: {err}"
            ds[v] = (ds[v] * f).assign_attrs({**ds[v].attrs, "units": want, "program_units": have})
        return ds, ""

    # ------------------------------------------------------------------ public
    def __call__(self, theta: np.ndarray) -> xr.Dataset:
        return self.simulate(theta)

    def simulate(self, theta: np.ndarray) -> xr.Dataset:
        """Run every member (one program run each) and stack the outputs on ``member``.

        Returns
        -------
        xarray.Dataset
            Outputs on (member, ...), NaN for failed members, with ``failed`` and ``failure``.
        """
        theta = np.atleast_2d(self.space.check(theta, strict=False, full=True))
        outputs, reasons = [], []
        for row in theta:
            ds, reason = self._run_one(row)
            if ds is not None:
                ds, reason = self._in_units(ds)
            outputs.append(ds)
            reasons.append(reason)
        good = [d for d in outputs if d is not None]
        if good:  # failed members: NaN in the shape of a good one
            filled = [d if d is not None else xr.full_like(good[0], np.nan) for d in outputs]
            out = xr.concat(filled, dim="member", join="outer")
        else:
            out = xr.Dataset()
        out = out.assign_coords(member=np.arange(len(outputs)))
        out["status"] = ("member", np.array(["failed" if r else "done" for r in reasons]))
        out["reason"] = ("member", np.array(reasons, dtype=str))
        return out


def _say_if_month_ends(ds: xr.Dataset, what: str) -> None:
    """A warning when monthly output without time bounds is stamped as CESM/CLM stamps it, at
    each month's end (:func:`bayescal.readers.gridded_values.warn_if_stamped_at_month_ends`)."""
    from bayescal.readers.gridded_values import from_cesm, warn_if_stamped_at_month_ends

    t = ds.coords.get("time")
    if t is None or t.ndim != 1:
        return
    try:
        keys = t.dt.year.values.astype(np.int64) * 12 + t.dt.month.values.astype(np.int64)
    except (AttributeError, TypeError):  # not dates: said where the output's time is read
        return
    warn_if_stamped_at_month_ends(t, keys, what, from_cesm(ds.attrs))
    _say_if_day_ends(t, what, from_cesm(ds.attrs))


def _say_if_day_ends(t: xr.DataArray, what: str, cesm: bool) -> None:
    """A warning for daily stamps at midnight, a day apart, without time bounds, from 2 January to
    1 January or in a file CESM/CLM wrote: a CLM history file stamps each day's mean at the day's
    end, and read by its stamps every value would be a day late (with bounds, each day's noon is
    taken)."""
    import datetime

    v = t.values
    if v.size < 2 or not bool(((t.dt.hour == 0) & (t.dt.minute == 0) & (t.dt.second == 0)).all()):
        return
    one = np.timedelta64(1, "D") if v.dtype.kind == "M" else datetime.timedelta(days=1)
    if not all(np.diff(v) == one):
        return
    first, last = (int(t.dt.month[0]), int(t.dt.day[0])), (int(t.dt.month[-1]), int(t.dt.day[-1]))
    if not (cesm or (first == (1, 2) and last == (1, 1))):
        return
    warnings.warn(f"{what}: its daily time stamps fall at midnight, from {str(v[0])[:10]} to "
                  f"{str(v[-1])[:10]}, without time bounds, and are read as the days they name. A CLM/CESM "
                  "history file stamps each day's mean at its end (1 January on 2 January): if this is one, "
                  "every value is read a day late -- give the file its time bounds (time_bounds), or stamp "
                  "each day at its start",
                  UserWarning, stacklevel=4)


def _at_bounds_middle(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with its ``time`` at the middle of its CF time bounds, the bounds dropped: a CLM/CESM
    history file stamps each month at its end (January on 1 February), and read by its stamps
    every month would be a month late; a day's bounds give its noon (read as that day)."""
    if "time" not in ds.coords or "time" not in ds.dims:
        return ds
    name = ds["time"].attrs.get("bounds", ds["time"].encoding.get("bounds"))
    if name not in ds.variables or ds[name].ndim != 2 or ds[name].sizes.get("time") != ds.sizes["time"]:
        return ds
    b = ds[name].transpose("time", ...).values
    if b.dtype.kind != "M" and not (b.dtype == object and hasattr(b.flat[0], "calendar")):
        return ds  # bounds that are not dates: the stamps as they are
    middle = b[:, 0] + (b[:, 1] - b[:, 0]) / 2
    attrs = {k: v for k, v in ds["time"].attrs.items() if k != "bounds"}
    return ds.drop_vars(name).assign_coords(time=("time", middle, attrs))
