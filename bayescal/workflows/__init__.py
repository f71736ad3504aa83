"""The whole calibration from one TOML file, stage by stage, resumable (``bayescal run``).

``config`` (schema, checks), ``validate`` (loading, validation), ``context`` (:class:`Context`,
what every stage function receives), one package per workflow -- ``global_``, ``site``,
``dagon`` -- each with its context, its stage functions (``stages``) and its declared stage list
(``workflow``: what every stage reads, needs and writes), and ``catalog`` (the registry's choice
for a config). The engine that runs them is :mod:`bayescal.workflow`. The run directory's
layout: docs/architecture.md.
"""

from .catalog import all_stage_help, make_context, workflow_for, workflow_name
from .config import SCHEMA, ConfigError
from .context import Context, StageError, StageRecord
from .global_.context import GlobalContext
from .global_.workflow import STAGE_HELP, STAGES
from .validate import load_config, validate_config

__all__ = ["ConfigError", "Context", "GlobalContext", "SCHEMA", "STAGES", "STAGE_HELP", "StageError",
           "StageRecord", "all_stage_help", "load_config", "make_context", "validate_config", "workflow_for",
           "workflow_name"]
