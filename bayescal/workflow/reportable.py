"""Whether a run directory can be reported (``bayescal report``): a run directory bayescal wrote,
whose files can be read, whose stages have finished, and whose stages' results are those of its
config.json -- else an error saying what to run."""

from __future__ import annotations

from .keys import stages_of_another_config
from .rundir import RunDir, RunDirError, damaged_files, read_json_record
from .stage import Workflow
from .stage_files import stage_file_problems

__all__ = ["check_reportable"]


def check_reportable(rd: RunDir, workflow: Workflow) -> None:
    """Raise :class:`RunDirRefused` for a path that is not a run directory and
    :class:`RunDirError` for one whose report would fail or describe results it does not hold.

    Parameters
    ----------
    rd : RunDir
    workflow : Workflow
        The workflow that wrote it (its ``config.json``'s).
    """
    bad = damaged_files(rd.path)  # the run directory's own records, then each stage's files
    for stage in workflow.stages:  # not .stale/, nor files of the user's
        folder = rd.path / stage.name
        yours = set(stage.foreign_files(folder))
        bad += [(p, why) for p, why in damaged_files(folder, recursive=True)
                if p.relative_to(folder).parts[0] not in yours]
        # the report's page and figures are made again here: not asked for
        record = None if stage.name == "report" else \
            read_json_record(rd.stage_json(stage.name), set_aside=False)
        bad += [(p, why) for p, why in stage_file_problems(folder, record, yours)
                if why in ("missing", "no longer a file")]  # those its record lists, gone
    if bad:
        lines = "\n".join(f"  {p.relative_to(rd.path)}: {why}" for p, why in bad[:10])
        raise RunDirError(f"{rd.path}: {len(bad)} file(s) cannot be read:\n{lines}\n'bayescal run' "
                          "with the same config reruns their stages (a damaged file set aside first; a "
                          "folder where a file belongs is yours to move)")
    needed = [s for s in workflow.names if s != "report"]
    missing = [s for s in needed if not rd.stage_json(s).exists()]
    if missing:
        raise RunDirError(f"{rd.path}: stages {missing} have not finished; run 'bayescal run' first")
    other = stages_of_another_config(rd.path, needed)
    if other:  # config.json is the last run's: its page would describe results it does not hold
        raise RunDirError(f"{rd.path}: stages {other} hold the results of another config than its "
                          "config.json (a later 'bayescal run' of an edited config stopped before them, or "
                          "ran --until an earlier stage); run 'bayescal run' with that config to bring them "
                          "up to date")
