"""The ``bayescal`` command: ``run CONFIG.toml``, ``check CONFIG.toml``, ``report RUN_DIR``.

Exit status: 0 done; 1 a stage could not go on, or a run directory is incomplete; 2 the
configuration is invalid or the run directory is refused (a folder bayescal did not create, or
for ``report`` a folder that is not a run directory).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

from bayescal import __version__
from bayescal.file_errors import disk_full, file_error, quiet_disk_full, working_directory_gone
from bayescal.models.contract import ModelOutputError
from bayescal.optimize.objective import OptimizeError
from bayescal.run.cluster import ClusterError, probe_executor
from bayescal.workflow import check_run_dir
from bayescal.workflow.rundir import RunDirError, RunDirRefused
from bayescal.workflow.rundir_guard import can_write, run_dir_holder
from bayescal.workflows import (
    ConfigError,
    StageError,
    all_stage_help,
    load_config,
    make_context,
    workflow_for,
)
from bayescal.workflows.config import expand_path

DESCRIPTION = f"""Bayesian calibration of land-model parameters, from one TOML file.

'bayescal run CONFIG.toml' runs the stages of the config's workflow in order, saving each one's
results in the run directory ([run] output, relative to the config file's folder); running it
again reuses every stage whose inputs (the config keys and files it reads, the stages it needs)
are unchanged and reruns the others. A killed run loses no finished model run.
'bayescal check CONFIG.toml' shows the chosen workflow's stages and which would rerun.

The workflow is chosen by the config: 'model.kind' = dalec, python or external -> site;
'run.workflow' = "dagon" -> dagon; otherwise global. Their stages:

{all_stage_help()}
"""

_PLAN_WORDS = {"reuse": "reused (inputs unchanged)", "resume": "resumed (finished runs kept)",
               "rerun": "rerun", "run": "run (new)"}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bayescal", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=f"bayescal {__version__}")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser(  # its options first, then the workflows' stages (the long text, below them)
        "run",
        help="run (or resume) the workflow of a config file",
        description=textwrap.fill("Run the stages of CONFIG's workflow in order in its run directory, "
                                  "reusing those whose inputs are unchanged and resuming a stopped "
                                  "one.", 100),
        epilog=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("config", help="TOML configuration (see examples/global_twin.toml)")
    r.add_argument("--run-dir", help="override [run] output")
    r.add_argument("--until", help="stop after this stage (one of the config's workflow's stages)")
    r.add_argument("--quiet", action="store_true", help="no progress or summary; only the report's path")
    c = sub.add_parser("check", help="validate a config file, run the model once at its defaults and show "
                       "the workflow's plan with rough times",
                       description="Validate CONFIG (every file and key it names), run the model once at "
                                   "its defaults, and show each stage of its workflow: reused or run, why, "
                                   "its model runs and a rough time. Writes no run directory. The "
                                   "workflows' stages: bayescal run --help.")
    c.add_argument("config", help="TOML configuration")
    c.add_argument("--run-dir", help="override [run] output")
    c.add_argument("--no-model-run", action="store_true",
                   help="skip the one model run at the defaults (contract check and timing)")
    rep = sub.add_parser("report", help="redraw the figures and report.html of a finished run directory",
                         description="Redraw the figures and report.html of RUN_DIR from its files alone "
                                     "(no model run).")
    rep.add_argument("run_dir")
    return p


def _rough_runs(expected: str) -> tuple[int, int] | None:
    """The (fewest, most) model runs of a plan's text: "120", "<= 2000", "about 480 (…)",
    "32 walkers x 400..2000 steps", "1 + up to 6 x 30 (refinement ...)"."""
    rounds = re.match(r"\s*(\d+) \+ up to (\d+) x (\d+)", expected)
    if rounds is not None:
        first, k, each = (int(g) for g in rounds.groups())
        return first, first + k * each
    m = re.match(r"\s*(?:<=\s*|about\s+)?(\d+)(?: walkers x (\d+)\.\.(\d+) steps)?", expected)
    if m is None:
        return None
    n = int(m.group(1))
    if m.group(2):
        return n * int(m.group(2)), n * int(m.group(3))
    return (0 if expected.lstrip().startswith("<=") else n), n


def _duration(seconds: float) -> str:
    if seconds < 1:
        return "1 s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _context(args: argparse.Namespace, cfg: dict, **kwargs):
    """The workflow's context of a validated config; its own config errors name the file too."""
    try:
        return make_context(cfg, args.run_dir, **kwargs)
    except ConfigError as err:
        raise ConfigError(f"{args.config}: {err}") from None


def _check_model(args: argparse.Namespace, cfg: dict, pipe) -> tuple[float, float]:
    """The model's run at its defaults and its time per member in a batch, in a folder of its
    own (``check`` writes no run directory); errors named with the config. A program's run of a
    check that failed is kept there, and named, for its stdout.txt, stderr.txt and files."""
    tmp, ok = Path(tempfile.mkdtemp(prefix="bayescal-check-")), False
    try:
        try:
            one = pipe.model_check(validation=True, workdir=tmp)["seconds"]
        except ConfigError as err:  # what the model's run says of the config: named with its file
            ok = "fails at its defaults" not in str(err)  # its run folder kept only if the run failed
            raise ConfigError(f"{args.config}: {err}") from None
        except ModelOutputError as err:
            raise ModelOutputError(f"{args.config}: {err}") from None
        try:
            per_run = pipe.seconds_per_member()
            # a quick model's stored runs cost the runner's files more than the model: timed too
            stored = pipe.seconds_per_stored_member() if per_run < 0.5 else per_run
        except ModelOutputError as err:  # the timing's batch: as the runner and the chains call it
            kind = cfg["model"]["kind"]
            raise ModelOutputError(f"{args.config}: model ({kind}) given a batch of 32 parameter "
                                   f"vectors, as the runner and the chains give it: {err}") from None
        ok = True
        return one, per_run, max(per_run, stored)
    finally:
        if ok or not any(tmp.glob("run_*")):
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print(f"bayescal: the check's run of your program is kept in {tmp} (its stdout.txt, "
                  "stderr.txt and files)", file=sys.stderr)


def _check(args: argparse.Namespace) -> int:
    """Validate the config; run the model once at its defaults (the contract of docs/own-model.md,
    the years it covers, its time); print the workflow, each stage (what it does, whether it would
    be reused or rerun in the run directory, its model runs and a rough time on this machine)."""
    cfg = load_config(args.config)
    pipe = _context(args, cfg, progress=False)
    state = check_run_dir(pipe.run_dir, pipe.workflow.name, writable=False)  # a plan to read: no write
    try:  # before the model's run: a scheduler that does not answer, a job SLURM refuses
        executor = probe_executor(cfg["run"])
    except ClusterError as err:
        raise ConfigError(f"{args.config}: {err}") from None
    one = per_run = stored = None
    if not args.no_model_run:
        one, per_run, stored = _check_model(args, cfg, pipe)
    print(f"{args.config}: valid")
    if executor:
        print(f"executor: {executor}")
    if cfg["model"]["kind"] == "dalec":
        from bayescal.report.site import describe_model

        print(f"model: {describe_model(cfg['model'])}")
        filled = getattr(pipe.model, "drivers", None)
        filled = 0 if filled is None else int(filled.attrs.get("co2_filled_days", 0))
        if filled:
            print(f"drivers: CO2_F_MDS missing on {filled} days, filled by interpolation in time (the "
                  "nearest measured value at the ends)")
    if per_run is not None:
        batch = f" ({per_run * 1e3:.2g} ms per run in a batch of 32)" if per_run < one / 2 else ""
        print(f"model: one run at the defaults took {one:.3g} s{batch} and follows the contract")
        if stored > 1.5 * per_run:
            print(f"runner: {stored * 1e3:.2g} ms per run stored (the model's time and its file's)")
        for p in pipe.checked_products():
            have = p.data.attrs.get("file_units", p.units)
            conv = f" (the file's {have}, converted)" if have != p.units else ""
            print(f"product {p.name!r} of {p.variable}: {int(p.data.notnull().sum())} observed values"
                  f"{_in_years(p, cfg)}, in {p.units}{conv}")
    print(f"workflow: {pipe.workflow.name} -- {pipe.workflow.description}")
    owner = {"new": "new", "owned": "made by bayescal", "legacy": "made by an older bayescal"}[state]
    busy = run_dir_holder(pipe.run_dir) if state in ("owned", "new") else None  # new: one starting
    busy = f"; in use now by {busy}: another 'bayescal run' there is refused until it ends" if busy else ""
    if not can_write(pipe.run_dir):
        busy += "; read-only for this user: 'bayescal run' would be refused there"
    print(f"run directory: {pipe.run_dir.resolve()} ({owner}{busy})\nstages:")
    _print_plan(pipe, per_run, stored)
    return 0


#: how the plan names a finished stage's file that is damaged or gone (``file_problems``)
_FILE_PROBLEMS = ("damaged file ", "missing file ", "no longer a file:")


def _print_plan(pipe, per_run: float | None, stored: float | None) -> None:
    """Each stage: what running it would do (reuse, resume, rerun and why), its model runs and
    their rough time (at ``stored`` per run for a stage whose runs go into its stores)."""
    for st in pipe.plan():
        runs = ""
        if st.expected_runs and st.status != "reuse":
            runs = f"; model runs: {st.expected_runs}"
            if st.kept:  # the rerun keeps these stores' finished runs: fewer are made
                kept = ", ".join(st.kept)
                up = "" if str(st.expected_runs).startswith(("<=", "up to")) else "up to "
                runs = f"; model runs: {up}{st.expected_runs}, the finished ones in {kept} kept"
            if st.lending:  # the stores it sets aside lend their runs at unchanged parameter values
                runs += (f", those at unchanged parameter values taken from the {st.lending} runs of its "
                         "earlier folders")
            if st.finished_runs:  # a resumed stage: those its stopped runs finished are kept
                runs = f"; model runs: {st.expected_runs}, {st.finished_runs} of them finished and kept"
            rough = _rough_runs(st.expected_runs)
            rough = (0, rough[1]) if rough is not None and st.kept else rough
            if rough is not None and st.finished_runs:
                rough = tuple(max(0, n - st.finished_runs) for n in rough)
            if per_run is not None and rough is not None and rough[1] > 0:
                keeps = _stored_runs(pipe, st.name) and stored > per_run
                lo, hi = (_duration(n * (stored if keeps else per_run)) for n in rough)
                single = lo == hi or rough[0] == 0
                span = f"up to ~{hi}" if single else f"~{lo} to {hi}"
                what = "model and runner time" if keeps else "model time"
                runs += f" ({span} of {what} at that rate, {_where(pipe.config['run'])})"
        damaged = [c for c in st.changed if c.startswith(_FILE_PROBLEMS)]
        changed = [c for c in st.changed if c not in damaged]
        more = " ..." if len(changed) > 4 else ""
        parts = ([f"{', '.join(changed[:4])}{more} changed"] if changed else []) + damaged
        why = f" ({'; '.join(parts)})" if parts else ""
        words = _PLAN_WORDS[st.status]
        if st.restored:  # a folder of these inputs in .stale/ comes back
            words = f"{words.split(' (')[0]} from {st.restored} (made with these inputs)"
        print(f"  {st.name:15s} {words}{why}{runs}")
        print(textwrap.fill(st.help, 100, initial_indent=" " * 18, subsequent_indent=" " * 18))


def _stored_runs(pipe, stage: str) -> bool:
    """Whether a stage's model runs go through the runner's store (each a file): all but the site
    direct route's search and chain, which run the model in memory (counted, not stored)."""
    direct = pipe.config.get("posterior", {}).get("route") == "direct"
    return pipe.workflow.name != "site" or stage == "propagate" or not direct


def _in_years(product, cfg: dict) -> str:
    """" (N in the calibration years, M in the validation years)" of a site product's observed days."""
    site = cfg.get("site", {})
    if not site.get("calibration_years") or "time" not in product.data.dims:
        return ""
    years = product.data["time"].dt.year.values[product.data.notnull().values]
    count = {k: int(((years >= site[f"{k}_years"][0]) & (years <= site[f"{k}_years"][1])).sum())
             for k in ("calibration", "validation")}
    return (f" ({count['calibration']} in the calibration years, {count['validation']} in the validation "
            "years)")


def _where(run: dict) -> str:
    """Where the model time of ``bayescal check``'s estimate is spent: one process, or spread over
    ``run.workers`` processes / a Dask or SLURM cluster (its share per worker is not known here)."""
    if run.get("workers"):
        return f"one process; spread over {run['workers']} workers"
    if run.get("scheduler"):
        return "one process; spread over the cluster's workers"
    return "one process"


def _run(args: argparse.Namespace) -> int:
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:  # said, and kept for the report
            warnings.simplefilter("always")
            cfg = load_config(args.config)
    finally:  # said also when the config then turns out invalid
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    said = [w for w in caught if not issubclass(w.category, DeprecationWarning | FutureWarning)]
    source = Path(args.config).resolve()
    text = (f"# The config of this run directory, as read from {source}: its relative paths are\n"
            f"# relative to {source.parent} (config.json holds them resolved).\n{source.read_text()}")
    pipe = _context(args, cfg, progress=not args.quiet, config_text=text,
                    config_warnings=tuple(dict.fromkeys(f"{w.category.__name__}: {w.message}" for w in said)))
    names = pipe.stage_names
    if args.until is not None and args.until not in names:
        raise ConfigError(f"--until {args.until}: the {pipe.workflow.name} workflow's stages are "
                          f"{list(names)}")
    stages = names if args.until is None else names[: names.index(args.until) + 1]
    try:
        pipe.run(stages)
    except ConfigError as err:  # found by a stage (a product read on your model's cells): named as check does
        raise ConfigError(f"{args.config}: {err}") from None
    if not args.quiet:
        print("\n" + pipe.summary() + "\n")
    if "report" in stages:  # said even with --quiet: where the results are
        print(f"report: {pipe.run_dir / 'report.html'}")
    return 0


def _report(args: argparse.Namespace) -> int:
    """Reads the run directory only: no stage reruns, no model runs."""
    from bayescal.report import write_report
    from bayescal.workflow.reportable import check_reportable
    from bayescal.workflow.rundir import RunDir

    rd = RunDir(args.run_dir)
    if not rd.path.exists():
        raise RunDirRefused(f"{rd.path}: no such folder; give the run directory 'bayescal run' wrote")
    if rd.path.is_file():
        toml = rd.path.suffix == ".toml"
        config = " (a config: 'bayescal run' it, or give its run directory)" if toml else ""
        raise RunDirRefused(f"{rd.path} is a file{config}; 'bayescal report' takes the run directory "
                            "'bayescal run' wrote")
    if not rd.config_json.exists():
        raise RunDirRefused(f"{rd.path}: not a bayescal run directory (no config.json); give the folder "
                            "'bayescal run' wrote")
    check_reportable(rd, workflow_for(rd.config()))
    print(f"report: {write_report(rd)}")
    return 0


_ERRORS: tuple[tuple[type[Exception], str, int], ...] = (
    (ModelOutputError, "model output error (docs/own-model.md): ", 2),
    (ConfigError, "configuration error: ", 2),
    (RunDirRefused, "run directory refused: ", 2),
    (StageError, "", 1),
    (OptimizeError, "the optimiser cannot go on: ", 1),  # every member of a generation failed, say
    (RunDirError, "", 1),
)


def _interrupt_of(err: BaseException) -> KeyboardInterrupt | None:
    """The KeyboardInterrupt in ``err``'s chain of causes, if any."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, KeyboardInterrupt):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _caused_by_interrupt(err: BaseException) -> bool:
    """Ctrl-C inside a C extension's import (matplotlib's, say) surfaces as the ImportError it
    caused: an error whose chain holds a KeyboardInterrupt is an interrupt too."""
    return _interrupt_of(err) is not None


class Terminated(KeyboardInterrupt):
    """SIGTERM (``scancel``, a SLURM time limit, ``kill``): raised in the main thread, so the run
    unwinds as after Ctrl-C -- the step being written finishes, stores close, workers are told."""


def _terminate(signum, frame) -> None:
    raise Terminated


def _interrupted(err: BaseException | None = None) -> int:
    what = "terminated (SIGTERM)" if isinstance(err, Terminated) else "interrupted"
    print(f"bayescal: {what}; every finished model run and chain step is kept -- run the same "
          "command again to resume", file=sys.stderr)
    return 143 if isinstance(err, Terminated) else 130


def _on_sigterm() -> tuple[bool, object]:
    """Install :func:`_terminate` for SIGTERM: (installed, the handler it replaced -- None when
    that one was set from C); not installed outside the main thread, where Python cannot."""
    import signal

    try:
        return True, signal.signal(signal.SIGTERM, _terminate)
    except ValueError:
        return False, None


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as one line, ``bayescal: warning (<category>): <message>``: no source line (the
    message names the file, key or variable; ``--debug`` shows where it came from)."""
    return f"bayescal: warning ({category.__name__}): {message}\n"


def _once_each(show):
    """``warnings.showwarning`` that says each message once per invocation (a product read for
    the check and again for the run warned twice from two places)."""
    seen: set[tuple[type, str]] = set()

    def once(message, category, filename, lineno, file=None, line=None):
        if (category, str(message)) not in seen:
            seen.add((category, str(message)))
            show(message, category, filename, lineno, file, line)

    return once


def main(argv: list[str] | None = None, *, exit_at_once: bool = False) -> int:
    """The command line; returns the exit status (``--debug``: errors raise with their traceback;
    ``exit_at_once``, the ``bayescal`` command's: a full disk ends the process at once, as an
    HDF5 file that could not be flushed can crash the interpreter's teardown)."""
    import signal

    args = _parser().parse_args(argv)
    if working_directory_gone() is not None:  # a later import would fail on it, with a traceback
        print(f"bayescal: {working_directory_gone()}", file=sys.stderr)
        return 2
    installed, previous = _on_sigterm()
    try:
        fmt, show = warnings.formatwarning, warnings.showwarning
        if not args.debug:
            warnings.formatwarning = _format_warning
            warnings.showwarning = _once_each(show)
        try:
            if getattr(args, "run_dir", None):  # quoted, '~/runs/x': expanded as the config's paths
                key = "RUN_DIR" if args.command == "report" else "--run-dir"
                args.run_dir = expand_path(args.run_dir, key)
            return {"check": _check, "run": _run, "report": _report}[args.command](args)
        finally:
            warnings.formatwarning, warnings.showwarning = fmt, show
            if installed:
                signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
    except KeyboardInterrupt as err:
        if args.debug:
            raise
        return _interrupted(err)
    except BrokenPipeError:  # `bayescal check ... | head`: the reader stopped listening
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the flush at exit must not fail
        return 141
    except tuple(e for e, _, _ in _ERRORS) as err:
        if args.debug:
            raise
        prefix, code = next((p, c) for e, p, c in _ERRORS if isinstance(err, e))
        print(f"bayescal: {prefix}{err}", file=sys.stderr)
        return code
    except (OSError, RuntimeError) as err:  # a file or folder this user cannot read or write
        said = None if args.debug or _caused_by_interrupt(err) else file_error(err)
        if said is None:
            if args.debug or not _caused_by_interrupt(err):
                raise
            return _interrupted(_interrupt_of(err))
        print(f"bayescal: {said[0]}", file=sys.stderr)
        if exit_at_once and disk_full(err):
            _exit_at_once(said[1])
        return said[1]
    except MemoryError as err:  # a size of the config (or the machine) too large: said, not a traceback
        if args.debug:
            raise
        print(f"bayescal: out of memory ({type(err).__name__}: {err}); every finished model run and stage is "
              "kept: lower a size of the config (design.n_runs, posterior.n_walkers, model.n_cells, "
              "design.batch_size, ...) or run on a larger machine, then run again", file=sys.stderr)
        return 1
    except Exception as err:
        if args.debug or not _caused_by_interrupt(err):
            raise
        return _interrupted(_interrupt_of(err))


def entry() -> None:
    """The ``bayescal`` command: :func:`main`, then exit with its status.

    After an interrupt every stage has unwound (stores closed, clusters shut, workers told) and
    the message is out; the process then ends at once with 130 (143 after SIGTERM). Letting the
    interpreter finalise instead ended it, about once in a hundred Ctrl-C's, with SIGINT (-2) or a fatal
    "PyThreadState_Get ... GIL is released" abort (-6) from an extension's teardown.
    """
    # h5py's objects freed after a full disk's failed flush each print that error, with a
    # traceback, as the exception unwinds: the command says it once, in one line
    sys.unraisablehook, sys.excepthook = quiet_disk_full(sys.unraisablehook, sys.excepthook)
    code = main(exit_at_once=True)
    if code in (130, 143):
        _exit_at_once(code)
    sys.exit(code)


def _exit_at_once(code: int) -> None:
    """End the process with ``code`` now, doing only what the interpreter's exit would do for
    multiprocessing: unlink the named semaphores of an interrupted worker pool's queues (else its
    resource tracker reports them "leaked") -- ``util._run_finalizers``, a private function of the
    standard library since Python 2.6, skipped should it go -- and flush the streams."""
    from multiprocessing import util

    getattr(util, "_run_finalizers", lambda *_: None)(0)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    entry()
