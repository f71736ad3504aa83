"""The one entry to every report: :func:`write_report` picks the run directory's workflow and
builds its page (:mod:`.page`) from that workflow's sections and figures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..workflow.rundir import RunDir
from .dagon import write_dagon_report
from .html import write_global_report
from .site import write_site_report

__all__ = ["BUILDERS", "write_report"]

#: each workflow's sections and figures, by the workflow's registered name
BUILDERS: dict[str, Callable[[RunDir], Path]] = {
    "global": write_global_report,
    "site": write_site_report,
    "dagon": write_dagon_report,
}


def write_report(run_dir) -> Path:
    """Draw the figures of a run directory and write ``report.html``; returns its path.

    ``run_dir`` is a run directory (path, :class:`~bayescal.workflow.rundir.RunDir`, or anything
    with a ``run_dir`` attribute) whose stages up to ``propagate`` have run. Only its files are
    read: no model runs, so a run directory copied to another machine reports the same.
    """
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(getattr(run_dir, "run_dir", run_dir))
    return BUILDERS[rd.workflow_name()](rd)
