"""The whole calibration from one TOML file, stage by stage, resumable (``bayescal run``).

``config`` (schema, validation, loading), ``runner`` (:class:`Pipeline`: stage hashing, records,
resume), ``stages`` (each stage a function of the pipeline context); the run directory's layout is
described in docs/architecture.md.
"""

from .config import SCHEMA, STAGE_HELP, STAGES, ConfigError, load_config, main_stage_names, validate_config
from .runner import Pipeline, StageRecord
from .stages import PipelineError

__all__ = ["ConfigError", "Pipeline", "PipelineError", "SCHEMA", "STAGES", "STAGE_HELP", "StageRecord",
           "load_config", "main_stage_names", "validate_config"]
