"""The ``bayescal`` command: ``bayescal run CONFIG.toml`` and ``bayescal report RUN_DIR``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .pipeline import (
    STAGES,
    ConfigError,
    PipelineError,
    load_config,
    main_stage_names,
    make_pipeline,
)
from .rundir import RunDirError

DESCRIPTION = f"""Bayesian calibration of land-model parameters, from one TOML file.

'bayescal run CONFIG.toml' runs these stages in order, saving each one's results in the run
directory ([run] output); running it again reuses every stage whose inputs are unchanged and
reruns from the first one that changed. A killed run loses no finished model run.

stages:
{main_stage_names()}
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bayescal", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser(
        "run",
        help="run (or resume) the pipeline of a config file",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("config", help="TOML configuration (see examples/global_twin.toml)")
    r.add_argument("--run-dir", help="override [run] output")
    r.add_argument("--until", help="stop after this stage (one of the config's stages)")
    r.add_argument("--quiet", action="store_true", help="no progress output")
    c = sub.add_parser("check", help="validate a config file and exit")
    c.add_argument("config")
    rep = sub.add_parser("report", help="redraw the figures and report.html of a finished run directory")
    rep.add_argument("run_dir")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check":
            load_config(args.config)
            print(f"{args.config}: valid")
            return 0
        if args.command == "run":
            cfg = load_config(args.config)
            text = Path(args.config).read_text()
            pipe = make_pipeline(cfg, args.run_dir, progress=not args.quiet, config_text=text)
            names = pipe.stage_names
            if args.until is not None and args.until not in names:
                raise ConfigError(f"--until {args.until}: this config's stages are {list(names)}")
            stages = names if args.until is None else names[: names.index(args.until) + 1]
            pipe.run(stages)
            if not args.quiet:
                print("\n" + pipe.summary())
                if "report" in stages:
                    print(f"\nreport: {pipe.run_dir / 'report.html'}")
            return 0
        # reads the run directory only: no stage reruns, no model runs
        from .report import write_report
        from .rundir import RunDir

        rd = RunDir(args.run_dir)
        cfg = rd.config()
        if cfg["model"].get("kind", "global") != "global":
            needed = ("optimize", "posterior", "propagate")
        elif cfg["run"].get("workflow", "default") == "dagon":
            from .pipeline.dagon import DAGON_STAGES

            needed = DAGON_STAGES[:-1]
        else:
            needed = STAGES[:-1]
        missing = [s for s in needed if not rd.stage_json(s).exists()]
        if missing:
            raise PipelineError(f"{rd.path}: stages {missing} have not finished; run 'bayescal run' first")
        print(f"report: {write_report(rd)}")
        return 0
    except ConfigError as err:
        print(f"bayescal: configuration error: {err}", file=sys.stderr)
        return 2
    except (PipelineError, RunDirError) as err:
        print(f"bayescal: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
