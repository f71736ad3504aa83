"""The ``bayescal`` command: ``bayescal run CONFIG.toml`` and ``bayescal report RUN_DIR``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .pipeline import (
    STAGES,
    ConfigError,
    Pipeline,
    PipelineError,
    load_config,
    main_stage_names,
    validate_config,
)

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
    r.add_argument("--until", choices=STAGES, help="stop after this stage")
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
            pipe = Pipeline(cfg, args.run_dir, progress=not args.quiet, config_text=text)
            stages = STAGES if args.until is None else STAGES[: STAGES.index(args.until) + 1]
            pipe.run(stages)
            if not args.quiet:
                print("\n" + pipe.summary())
                if "report" in stages:
                    print(f"\nreport: {pipe.run_dir / 'report.html'}")
            return 0
        run_dir = Path(args.run_dir)
        cfg_file = run_dir / "config.json"
        if not cfg_file.exists():
            raise ConfigError(f"{run_dir} is not a bayescal run directory (no config.json)")
        saved = json.loads(cfg_file.read_text())
        cfg = validate_config(
            {s: {k: v for k, v in sec.items() if v is not None} for s, sec in saved.items()}
        )
        text = (run_dir / "config.toml").read_text() if (run_dir / "config.toml").exists() else ""
        pipe = Pipeline(cfg, run_dir, progress=True, config_text=text)
        pipe.run(STAGES[:-1])  # all reused when finished
        from .report import write_report

        print(f"report: {write_report(pipe)}")
        return 0
    except ConfigError as err:
        print(f"bayescal: configuration error: {err}", file=sys.stderr)
        return 2
    except PipelineError as err:
        print(f"bayescal: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
