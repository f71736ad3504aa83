"""Declared stages and workflows: what a stage reads, needs and writes.

A :class:`Stage` is a function plus its declaration -- Kedro's ``node(func, inputs, outputs)``
with Snakemake's rerun triggers. The engine (:mod:`bayescal.workflow.engine`) hashes exactly what
a stage declares (config keys, input files' contents, the keys of the stages it needs, the
bayescal version), so a stage reruns when, and only when, something it reads changed.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["RunStore", "Stage", "Workflow", "WorkflowError", "config_value"]

#: the config keys of a stage: a fixed tuple, or a function of the config (keys a route reads)
Reads = tuple[str, ...] | Callable[[Mapping[str, Any]], Sequence[str]]
#: the input files of a stage: a function of the config giving paths (missing paths are hashed as such)
Files = Callable[[Mapping[str, Any]], Sequence[str | Path]]


class WorkflowError(ValueError):
    """A workflow declaration that does not hold together (unknown key, need or duplicate name)."""


def config_value(config: Mapping[str, Any], dotted: str) -> Any:
    """The value of a dotted config key (``"run.seed"``), a whole section (``"emulator"``), or one
    field of every table of a list (``"observations.products[].variable"``).

    Parameters
    ----------
    config : mapping
        A validated config (section -> key -> value).
    dotted : str
        ``"section"``, ``"section.key"`` or ``"section.list[].field"``.

    Returns
    -------
    Any
        The value (a list of the field's values for ``[]``).

    Raises
    ------
    WorkflowError
        If the key is not in the config (a declaration naming a key that does not exist).
    """
    head, sep, rest = dotted.partition("[].")
    node: Any = config
    for part in head.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise WorkflowError(f"declared config key {dotted!r} is not in the config")
        node = node[part]
    if not sep:
        return node
    if not isinstance(node, list):
        raise WorkflowError(f"declared config key {dotted!r}: {head!r} is not a list")
    return [config_value(item, rest) if isinstance(item, Mapping) else None for item in node]


def _no_files(config: Mapping[str, Any]) -> Sequence[str | Path]:
    return ()


def _keys_of(reads: Reads, config: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(sorted(set(reads(config) if callable(reads) else reads)))


@dataclass(frozen=True)
class RunStore:
    """A runner store inside a stage's folder that outlives a rerun of its stage.

    When the stage reruns because of a key the store's runs do not depend on, the store is kept
    (its finished model runs reused) while the store's own declared inputs are unchanged.

    Parameters
    ----------
    path : str
        The store's folder (or file: an HDF5 chain), relative to the stage's folder (``"design"``).
    reads : tuple of str or callable
        The config keys its model runs depend on.
    needs : tuple of str
        Stages whose keys its runs depend on.
    input_files : callable
        ``config -> paths`` its runs read (hashed by content).
    revision : int, default 0
        Raised when the code changes what its runs are (which members, what they keep): in its
        key, so an earlier run directory's store is not kept. Its stage's own ``revision`` (what
        the stage makes of the runs) keeps a store whose key is unchanged, or that the earlier
        record has no key for.
    """

    path: str
    reads: Reads = ()
    needs: tuple[str, ...] = ()
    input_files: Files = _no_files
    revision: int = 0

    def keys(self, config: Mapping[str, Any]) -> tuple[str, ...]:
        """The declared config keys for this config, sorted."""
        return _keys_of(self.reads, config)


@dataclass(frozen=True)
class Stage:
    """One stage of a workflow and what it depends on.

    Parameters
    ----------
    name : str
        The stage's name; it owns ``<run>/<name>/``.
    function : callable
        ``function(context)``: reads earlier stages' files, writes its own folder.
    help : str
        One sentence for ``bayescal run --help`` and ``bayescal check``.
    reads : tuple of str or callable
        Dotted config keys the stage reads (``"run.seed"``, ``"posterior.n_steps"``, or a whole
        section ``"emulator"``), or ``config -> keys`` when a route reads different keys.
        Keys that change how but not what is computed (``run.workers``, ``design.batch_size``)
        are not declared.
    needs : tuple of str
        Earlier stages whose files it reads.
    writes : tuple of str
        What it writes, relative to its folder (``*`` and ``<variable>`` match any name): every
        entry, for :meth:`foreign_files` (the tests check it after full runs).
    input_files : callable
        ``config -> paths`` of the data, driver and parameter files it reads; the engine hashes
        their contents.
    keeps : tuple of RunStore
        Runner stores in its folder kept across a rerun while their own inputs are unchanged.
    expected_runs : callable, optional
        ``config -> str``: the model runs it will make, when cheaply known (``bayescal check``);
        one with a ``space`` keyword gets a given model's space (``config, space=... -> str``).
    revision : int, default 0
        Raised when the stage's code writes something else from the same inputs (a fixed bug, a
        changed aggregation): in its key, so a run directory of the earlier code of the same
        bayescal version (a development build) reruns it and the stages after it, while the
        stages before it and its stores are kept (a store whose runs changed has a ``revision``
        of its own). A new bayescal version is in every key: it reruns everything.
    """

    name: str
    function: Callable[[Any], None]
    help: str
    reads: Reads = ()
    needs: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()
    input_files: Files = _no_files
    keeps: tuple[RunStore, ...] = ()
    expected_runs: Callable[[Mapping[str, Any]], str] | None = None
    revision: int = 0

    def keys(self, config: Mapping[str, Any]) -> tuple[str, ...]:
        """The declared config keys for this config, sorted."""
        return _keys_of(self.reads, config)

    def foreign_files(self, folder: str | Path) -> list[str]:
        """The entries of ``folder`` (the stage's) that the stage does not write: the user's own.

        Its records (``stage.json``, ``started.json``), hidden files (bayescal's temporary
        files), what an interrupted write leaves (``*.tmp``, ``*.partial``) and the files it set
        aside (``*.damaged``, ``*.damaged2``, ``*.corrupt``) are its own.

        Parameters
        ----------
        folder : path
            The stage's folder (or where it was set aside).

        Returns
        -------
        list of str
            The names, sorted (none if the folder does not exist).
        """
        import fnmatch

        folder = Path(folder)
        if not folder.is_dir():
            return []
        # a write beside the folder ("../report.html") is set aside into it: its own there too
        own = [Path(w.rstrip("/")).name.replace("<variable>", "*") for w in self.writes]
        own += ["stage.json", "started.json", ".*", "*.damaged*", "*.tmp", "*.partial", "*.corrupt"]
        return sorted(p.name for p in folder.iterdir() if not any(fnmatch.fnmatch(p.name, w) for w in own))


@dataclass(frozen=True)
class Workflow:
    """A named, ordered list of stages; each stage needs only stages before it.

    Parameters
    ----------
    name : str
        ``"global"``, ``"site"``, ``"dagon"``.
    stages : tuple of Stage
        In the order they run.
    description : str
        One line for the help text.
    """

    name: str
    stages: tuple[Stage, ...]
    description: str = ""
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, int] = {}
        for i, stage in enumerate(self.stages):
            if stage.name in index:
                raise WorkflowError(f"workflow {self.name!r}: stage {stage.name!r} declared twice")
            for need in (*stage.needs, *(n for s in stage.keeps for n in s.needs)):
                if need not in index:
                    raise WorkflowError(f"workflow {self.name!r}: stage {stage.name!r} needs {need!r}, "
                                        "which is not an earlier stage")
            index[stage.name] = i
        object.__setattr__(self, "_index", index)

    @property
    def names(self) -> tuple[str, ...]:
        """The stage names, in order."""
        return tuple(s.name for s in self.stages)

    def stage(self, name: str) -> Stage:
        """The stage called ``name``."""
        if name not in self._index:
            raise WorkflowError(f"workflow {self.name!r} has no stage {name!r}; its stages: "
                                f"{list(self.names)}")
        return self.stages[self._index[name]]

    def upstream(self, name: str) -> set[str]:
        """Every stage ``name`` depends on, directly or through others."""
        seen: set[str] = set()
        todo = list(self.stage(name).needs)
        while todo:
            need = todo.pop()
            if need not in seen:
                seen.add(need)
                todo.extend(self.stage(need).needs)
        return seen

    def help_text(self, indent: str = "  ", width: int = 100) -> str:
        """Each stage's name and help, wrapped to ``width`` columns."""
        pad = indent + " " * 16
        return "\n".join(textwrap.fill(s.help, width, initial_indent=f"{indent}{s.name:15s} ",
                                        subsequent_indent=pad) for s in self.stages)
