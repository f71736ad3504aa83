"""The workflows of ``bayescal run``, registered by name, and the one place a config chooses one.

``global`` (:mod:`.global_.workflow`), ``site`` (:mod:`.site.workflow`), ``dagon``
(:mod:`.dagon.workflow`); each pairs with its context class
(:class:`~.global_.context.GlobalContext`, :class:`~.site.context.SiteContext`,
:class:`~.dagon.context.DagonContext`), which its stage functions receive.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..workflow import Workflow, registry
from .config import CLAMPED_YEARS, SCHEMA, ConfigError, clamped_default_years, is_site
from .context import Context
from .dagon.context import DagonContext
from .dagon.workflow import DAGON
from .global_.context import GlobalContext
from .global_.workflow import GLOBAL
from .site.context import SiteContext
from .site.workflow import SITE

__all__ = ["CONTEXTS", "all_stage_help", "check_unread", "make_context", "workflow_for",
           "workflow_name"]

for _w in (GLOBAL, SITE, DAGON):
    registry.register(_w)

#: the context class each workflow's stage functions receive
CONTEXTS: dict[str, type[Context]] = {"global": GlobalContext, "site": SiteContext, "dagon": DagonContext}


def workflow_name(config: dict[str, Any]) -> str:
    """``"site"`` for a site model (``model.kind`` dalec, python or external, unless
    ``run.workflow = "global"``), ``"dagon"`` for ``run.workflow = "dagon"``, else ``"global"``."""
    if is_site(config):
        return "site"
    return "dagon" if config["run"].get("workflow", "default") == "dagon" else "global"


def workflow_for(config: dict[str, Any]) -> Workflow:
    """The registered workflow a config runs."""
    return registry.get(workflow_name(config))


def make_context(config: dict[str, Any], run_dir: str | Path | None = None, **kwargs) -> GlobalContext:
    """The context (with its workflow) for a config: global, Dagon's, or the site route.

    Parameters
    ----------
    config : dict
        A validated config.
    run_dir : path, optional
        Default ``config["run"]["output"]``.
    **kwargs
        ``progress``, ``config_text``, ``model`` of :class:`~.global_.context.GlobalContext`; ``workflow``
        replaces the registered one (the same stages with other functions, say).
    """
    name = workflow_name(config)
    kwargs.setdefault("workflow", registry.get(name))
    check_unread(config, kwargs["workflow"])
    return CONTEXTS[name](config, run_dir, **kwargs)


#: sections whose keys the stages declare (and validation leaves as given), less the keys read
#: without changing a result (a batch size); a key of them away from its default that no stage of
#: the workflow reads, on any of its routes, is an error
_CHECKED = ("design", "emulator", "oat", "emulator_screen", "screen", "optimize", "posterior",
            "equifinality", "propagate")
_NOT_DECLARED = ("design.batch_size",)
#: the keys that choose a route, and their values: a key read on any route is read
_ROUTES = {("posterior", "route"): ("direct", "emulator"),
           ("posterior", "method"): ("refine", "history_matching"),
           ("posterior", "start"): ("tempered", "optimum"),
           ("posterior", "left_out"): ("marginalise", "fix"),
           ("optimize", "method"): ("none", "ga", "dfols", "cma_es", "differential_evolution"),
           ("emulator", "training"): ("all", "optimize"), ("screen", "enabled"): (True, False)}
_SITE_POSTERIOR = ("route", "moves", "start", "n_particles", "emulator_target")


def check_unread(config: dict[str, Any], workflow: Workflow) -> None:
    """ConfigError for a key set away from its default that no stage of ``workflow`` reads on any
    of its routes: it would change nothing (``posterior.route`` in a global config,
    ``posterior.hm_waves`` or ``emulator_screen.keep`` in a site config)."""
    reads = _reads(config, workflow)
    # a site config may keep a global config's [observations] keys (docs/pipeline.md); Dagon's may not
    for section in (*_CHECKED, "observations") if workflow.name == "dagon" else _CHECKED:
        for key, (_, default) in SCHEMA[section].items():
            dotted = f"{section}.{key}"
            read = dotted in _NOT_DECLARED or dotted in reads or section in reads
            left_out = clamped_default_years(config, section, key) if (section, key) in CLAMPED_YEARS \
                else default  # a window left out of the config holds its default clamped to the model's
            if read or config[section][key] in (default, left_out):
                continue
            hint = (" (it is for site models: model.kind = dalec, python or external)"
                    if section == "posterior" and key in _SITE_POSTERIOR and workflow.name != "site" else "")
            theirs = sorted(k for k in reads if k.startswith(section + "."))
            raise ConfigError(f"'{dotted}' is not read by the {workflow.name} workflow{hint}: remove it"
                              + (f" (its {section} keys: {', '.join(theirs)})" if theirs else ""))


def _reads(config: dict[str, Any], workflow: Workflow) -> set[str]:
    """The keys the workflow's stages (and their kept stores) read with this config, or with any
    one route key set to another of its values."""
    from ..workflow.stage import _keys_of

    variants = [config] + [{**config, s: {**config[s], k: v}} for (s, k), vs in _ROUTES.items() for v in vs]
    out: set[str] = set()
    for cfg in variants:
        for stage in workflow.stages:
            for reads in (stage.reads, *(store.reads for store in stage.keeps)):
                try:
                    out |= set(_keys_of(reads, cfg))
                except Exception:  # noqa: BLE001,S112 - a route this config cannot take: its keys unread
                    continue
    return out


def all_stage_help() -> str:
    """Every workflow's stages, one block per workflow (for ``bayescal run --help``)."""
    return "\n\n".join(f"{w.name} workflow: {w.description}\n{w.help_text()}" for w in registry.registered())
