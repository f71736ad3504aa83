"""Figures (matplotlib, PNG) and a self-contained HTML report of a pipeline run directory.

``figures``: each figure function takes xarray objects and returns a matplotlib Figure.
``builder``: :func:`write_report` picks the run directory's workflow; its report module
(``html`` global, ``site``, ``dagon``) draws every figure it has data for, saves them as PNG in
``<run_dir>/figures``, and ``page`` embeds them (base64) in ``<run_dir>/report.html`` with the
tables, diagnostics, warnings, the config and the package versions. It reads the run directory only.
"""

from .builder import write_report
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
