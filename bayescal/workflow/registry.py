"""The one registry of workflows: each declares itself here by name; a config chooses one.

The workflows live above this package (:mod:`bayescal.workflows.catalog` registers the global,
site and Dagon workflows when :mod:`bayescal.workflows` is imported); the registry knows none of
them, so nothing here imports upwards.
"""

from __future__ import annotations

from .stage import Workflow, WorkflowError

__all__ = ["get", "names", "register", "registered"]

_WORKFLOWS: dict[str, Workflow] = {}


def register(workflow: Workflow) -> Workflow:
    """Add ``workflow`` under its name (again: replaced); returns it."""
    _WORKFLOWS[workflow.name] = workflow
    return workflow


def get(name: str) -> Workflow:
    """The workflow called ``name``."""
    if name not in _WORKFLOWS:
        raise WorkflowError(f"no workflow {name!r}; known: {sorted(_WORKFLOWS)} (import bayescal.workflows)")
    return _WORKFLOWS[name]


def names() -> tuple[str, ...]:
    """The registered workflows' names, in registration order."""
    return tuple(_WORKFLOWS)


def registered() -> tuple[Workflow, ...]:
    """Every registered workflow, in registration order."""
    return tuple(_WORKFLOWS.values())
