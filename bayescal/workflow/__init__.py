"""A small workflow engine: declared stages, keys of what they read, owned run directories.

``stage`` (:class:`Stage`, :class:`Workflow`: name, function, help, the config keys and input
files a stage reads, the stages it needs, what it writes), ``keys`` (the key of a stage: its
declared config values, its input files' contents, the keys of the stages it needs, the bayescal
version), ``engine`` (:class:`Engine`: reuse, resume, rerun, records, summaries), ``rundir_guard``
(the run directory's marker, ``.stale/``), ``registry`` (workflows by name). docs/architecture.md.
"""

from .engine import Engine, PlannedStage, StageContext, summary_table
from .keys import file_digest, stage_inputs, stage_key
from .rundir_guard import STALE, check_run_dir, claim_run_dir, set_aside
from .stage import RunStore, Stage, Workflow, WorkflowError, config_value

__all__ = ["STALE", "Engine", "PlannedStage", "RunStore", "Stage", "StageContext", "Workflow",
           "WorkflowError", "check_run_dir", "claim_run_dir", "config_value", "file_digest", "set_aside",
           "stage_inputs", "stage_key", "summary_table"]
