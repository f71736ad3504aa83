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
from .config import is_site
from .context import Context
from .dagon.context import DagonContext
from .dagon.workflow import DAGON
from .global_.context import GlobalContext
from .global_.workflow import GLOBAL
from .site.context import SiteContext
from .site.workflow import SITE

__all__ = ["CONTEXTS", "all_stage_help", "make_context", "workflow_for", "workflow_name"]

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
    return CONTEXTS[name](config, run_dir, **kwargs)


def all_stage_help() -> str:
    """Every workflow's stages, one block per workflow (for ``bayescal run --help``)."""
    return "\n\n".join(f"{w.name} workflow: {w.description}\n{w.help_text()}" for w in registry.registered())
