"""Figures (matplotlib, PNG) and a self-contained HTML report of a pipeline run directory.

``figures``: each figure function takes xarray objects and returns a matplotlib Figure.
``html``: :func:`write_report` draws every figure a run directory has data for, saves them as PNG
in ``<run_dir>/figures`` and embeds them (base64) in ``<run_dir>/report.html`` with the tables,
diagnostics, warnings, the config and the package versions. It reads the run directory only.
"""

from .figures import (
    plot_bands,
    plot_bias_change,
    plot_clouds,
    plot_convergence,
    plot_heatmap,
    plot_loo,
    plot_pair,
    plot_posterior_vs_prior,
    plot_ranking,
    plot_scree,
    plot_trace,
)
from .html import write_report

__all__ = [
    "plot_bands",
    "plot_bias_change",
    "plot_clouds",
    "plot_convergence",
    "plot_heatmap",
    "plot_loo",
    "plot_pair",
    "plot_posterior_vs_prior",
    "plot_ranking",
    "plot_scree",
    "plot_trace",
    "write_report",
]
