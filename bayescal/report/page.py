"""The one report page every workflow's report is built on: figures as inline PNG, the
posterior's convergence table, the stages' warnings, the configuration and the package versions.

:func:`write_page` writes ``report.html`` of a run directory; the workflows' report modules
(:mod:`.html` global, :mod:`.site`, :mod:`.dagon`) give it their sections and figures.
"""

from __future__ import annotations

import base64
import html
import io
import json
import platform
from importlib import metadata
from pathlib import Path

import numpy as np
import xarray as xr

from ..workflow.rundir import write_bytes_atomic, write_text_atomic
from .figures import plt

__all__ = ["closing_sections", "diagnostics_section", "figure_html", "page", "png", "posterior_diagnostics",
           "runs_behind", "trace_labels", "versions", "write_page"]


def posterior_diagnostics(post_dir: Path, idata=None) -> xr.Dataset:
    """R-hat and ESS of a run's posterior: ``diagnostics.nc`` as the posterior stage wrote it,
    else (run directories from before it did) computed from ``posterior.nc``."""
    import warnings

    from ..posterior import diagnose, load_inference_data

    path = Path(post_dir) / "diagnostics.nc"
    if path.exists():
        return xr.load_dataset(path)
    idata = load_inference_data(Path(post_dir) / "posterior.nc") if idata is None else idata
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return diagnose(idata)


def trace_labels(diag: xr.Dataset, n: int = 8) -> list[str]:
    """The values whose traces the report shows: the ``n`` with the largest R-hat."""
    order = np.argsort(-np.nan_to_num(diag["r_hat"].values, nan=np.inf), kind="stable")
    return [str(diag["parameter"].values[i]) for i in order[:n]]


def _rhat_note(rmax: float) -> str:
    """Why the R-hat bound is above 1.01 (twice the excess converged chains of this length show)."""
    if rmax <= 1.01:
        return ""
    return (" (raised above 1.01 to twice the excess converged chains of this length show: "
            "sqrt(1 + 4 tau / kept steps), kept steps at least 50 tau; see bayescal.posterior.diagnose)")


def diagnostics_section(diag: xr.Dataset) -> str:
    """The R-hat / ESS table of the posterior with the chain's length and autocorrelation time."""
    rmax, emin = float(diag.attrs.get("rhat_max", 1.01)), float(diag.attrs.get("ess_min", 400))
    rows = []
    for k, lab in enumerate(diag["parameter"].values):
        r, eb, et = (float(diag[v].values[k]) for v in ("r_hat", "ess_bulk", "ess_tail"))
        flag = []
        if not r <= rmax:
            flag.append(f"R-hat &gt; {rmax:.4g}")
        if not eb >= emin:
            flag.append(f"bulk ESS &lt; {emin:g}")
        style = " style='color:#b00'" if flag else ""
        rows.append(f"<tr{style}><td>{html.escape(str(lab))}</td><td>{r:.3f}</td><td>{eb:.0f}</td>"
                    f"<td>{et:.0f}</td><td>{', '.join(flag) or 'ok'}</td></tr>")
    a = diag.attrs
    chain = ""
    if "n_steps" in a:
        start = int(a.get("tau_from", 0))  # the steps the autocorrelation time is of
        after = f" after the first {start} (adaptation and the start's transient)" if start else ""
        chain = (f"{int(a['n_walkers'])} walkers x {int(a['n_steps'])} steps (emcee), burn-in "
                 f"{int(a['burn'])}, thinned by {int(a['thin'])}: {int(a.get('n_draws', 0))} draws; "
                 f"autocorrelation time up to {float(a['tau_max']):.0f} steps (the chain{after} is "
                 f"{(float(a['n_steps']) - start) / max(float(a['tau_max']), 1e-9):.0f} of them long; "
                 "50 advised). ")
    n_bad = sum("ok" not in r for r in rows)
    verdict = ("all values within bounds" if not n_bad else
               f"<b>{n_bad} of {len(rows)} values out of bounds: run the chains longer before trusting "
               "these estimates</b>")
    return ("<h3>Convergence: R-hat and effective sample size</h3>"
            f"<p>{chain}Bounds: R-hat &le; {rmax:.4g}{_rhat_note(rmax)}, bulk ESS &ge; {emin:g} (walkers "
            "treated as chains; "
            f"emcee's walkers are not independent, so R-hat is optimistic). {verdict}.</p>"
            "<table class='t'><tr><th>parameter</th><th>R-hat</th><th>bulk ESS (draws)</th>"
            f"<th>tail ESS (draws)</th><th>flag</th></tr>{''.join(rows)}</table>")


def runs_behind(records) -> str:
    """The model runs the results rest on: the stages' own and those their stores kept from a run
    of other inputs (a rerun does not make them again)."""
    made, kept = sum(r.runs for r in records), sum(r.kept_runs for r in records)
    return f"{made + kept} model runs" + (f" ({kept} of them made by a run of other inputs)" if kept else "")


def png(fig, path: Path) -> str:
    """Render ``fig`` once: the PNG file at ``path`` and its base64 text for the page."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)  # pyplot from figures, where the Agg backend is chosen
    write_bytes_atomic(Path(path), buf.getvalue())  # a full disk leaves the old figure, not half a new one
    return base64.b64encode(buf.getvalue()).decode()


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in (
        "bayescal",
        "numpy",
        "scipy",
        "xarray",
        "scikit-learn",
        "SALib",
        "emcee",
        "arviz",
        "matplotlib",
        "DFO-LS",
        "cma",
    ):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def closing_sections(rd, cfg: dict) -> list[str]:
    """Warnings of every stage, the configuration text and the package versions."""
    warn_rows = [("config", w) for w in rd.config_warnings()]
    warn_rows += [(r.name, w) for r in rd.records() for w in (r.warnings or [])]
    config = rd.config_text() or json.dumps(cfg, indent=1)
    warnings = ("<ul>" + "".join(f"<li><b>{s}</b>: {html.escape(w)}</li>" for s, w in warn_rows) + "</ul>"
                if warn_rows else "<p>none</p>")
    table = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in versions().items())
    return [f"<h2>Warnings</h2>{warnings}", failed_runs_section(rd),
            f"<h2>Configuration</h2><p>Run directory: <code>{html.escape(str(rd.path.resolve()))}</code> "
            "(where this run was written; <code>run.output</code> below is the config's, which "
            f"<code>--run-dir</code> overrides)</p><pre>{html.escape(config)}</pre>",
            f"<h2>Versions</h2><table class='t'>{table}</table>"]


def failed_runs_section(rd) -> str:
    """Each stage's model runs (as its stores hold them; a chain's own runs on the site's direct
    route, counted) and the failed ones, with their reasons and counts (a failed run is left out
    of what the stage computed)."""
    from ..run.ensemble import describe_failures

    rows = "".join(f"<tr><td>{s}</td><td>{n}</td><td>{sum(why.values())}</td>"
                   f"<td>{html.escape(describe_failures(why, most=6)) if why else ''}</td></tr>"
                   for s, (n, why) in rd.run_failures().items())
    if not rows:
        return ""
    return ("<h2>Model runs and failures</h2><table class='t'><tr><th>stage</th><th>model runs</th>"
            f"<th>failed</th><th>why (count x reason)</th></tr>{rows}</table>")


def page(title: str, parts: list[str], n_figures: int) -> str:
    """The self-contained HTML page (figures inline; a script counts the figures that loaded)."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em;color:#222}}
table.t{{border-collapse:collapse;font-size:0.85em}}
table.t td,table.t th{{padding:2px 8px;border-bottom:1px solid #ddd}}
img.fig{{max-width:100%}} figure{{margin:1.5em 0}} figcaption{{font-size:0.9em;color:#555}}
pre{{background:#f6f6f6;padding:0.5em;overflow-x:auto}}</style></head>
<body data-figures="{n_figures}">
{"".join(parts)}
<script>
window.addEventListener("load", function () {{
  var imgs = document.querySelectorAll("img.fig"), ok = 0;
  imgs.forEach(function (im) {{ if (im.complete && im.naturalWidth > 0) ok += 1; }});
  document.body.setAttribute("data-figures-loaded", String(ok));
}});
</script>
</body></html>
"""


def figure_html(name: str, caption: str, data: str) -> str:
    """One figure of the page: an inline PNG (base64 ``data``) with its caption."""
    return (f"<figure id='fig-{name}'><img class='fig' alt='{html.escape(caption)}' "
            f"src='data:image/png;base64,{data}'><figcaption>{html.escape(caption)}</figcaption></figure>")


def write_page(rd, title: str, parts: list[str], figures: list[tuple[str, str, str]]) -> Path:
    """``report.html`` of run directory ``rd``: ``parts`` (HTML), then the figures
    (name, caption, base64 PNG), then the warnings, configuration and versions."""
    body = [*parts, "<h2>Figures</h2>", *[figure_html(*f) for f in figures],
            *closing_sections(rd, rd.config())]
    path = rd.report_html
    write_text_atomic(path, page(title, body, len(figures)))  # whole or not at all (a full disk)
    return path
