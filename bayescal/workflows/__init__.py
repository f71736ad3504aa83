"""The whole calibration from one TOML file, stage by stage, resumable (``bayescal run``).

``config`` (schema, checks), ``validate`` (loading, validation), ``runner`` (:class:`Pipeline`,
the context the stages receive), ``stages``/``site_stages``/``dagon_stages`` (each stage a
function of the context), ``*_workflow`` (each workflow a declared stage list: what every stage
reads, needs and writes), ``workflows`` (the registry's choice for a config); the engine that
runs them is :mod:`bayescal.workflow`. The run directory's layout: docs/architecture.md.
"""

from .catalog import all_stage_help, make_pipeline, workflow_for, workflow_name
from .config import SCHEMA, ConfigError
from .context import Pipeline, StageRecord
from .global_.stages import PipelineError
from .global_.workflow import STAGE_HELP, STAGES
from .validate import load_config, validate_config


def main_stage_names() -> str:
    """The global workflow's stages, one line each (kept for callers of the old name)."""
    return "\n".join(f"  {s:13s} {STAGE_HELP[s]}" for s in STAGES)


__all__ = ["ConfigError", "Pipeline", "PipelineError", "SCHEMA", "STAGES", "STAGE_HELP", "StageRecord",
           "all_stage_help", "load_config", "main_stage_names", "make_pipeline", "validate_config",
           "workflow_for", "workflow_name"]
