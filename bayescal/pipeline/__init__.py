"""The whole calibration from one TOML file, stage by stage, resumable (``bayescal run``).

``config`` (schema, validation, loading), ``runner`` (:class:`Pipeline`: stage hashing, records,
resume), ``stages`` (each stage a function of the pipeline context); the run directory's layout is
described in docs/architecture.md.
"""

from .config import SCHEMA, STAGE_HELP, STAGES, ConfigError, load_config, main_stage_names, validate_config
from .runner import Pipeline, StageRecord
from .stages import PipelineError


def make_pipeline(config: dict, run_dir=None, **kwargs) -> Pipeline:
    """The pipeline for a config: the global route, or the site route (``model.kind`` dalec,
    python or external; :mod:`bayescal.pipeline.site`)."""
    if config["model"]["kind"] == "global":
        if config["run"].get("workflow", "default") == "dagon":
            from .dagon import DagonPipeline

            return DagonPipeline(config, run_dir, **kwargs)
        return Pipeline(config, run_dir, **kwargs)
    from .site import SitePipeline

    return SitePipeline(config, run_dir, **kwargs)


__all__ = ["ConfigError", "Pipeline", "PipelineError", "SCHEMA", "STAGES", "STAGE_HELP", "StageRecord",
           "load_config", "main_stage_names", "make_pipeline", "validate_config"]
