"""The input files of the global workflow's stages (their keys hash these files' contents)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["global_files", "model_files"]

Config = Mapping[str, Any]


def model_files(cfg: Config) -> list[str]:
    """The model's own input files: ``model.parameters_file`` (and a site model's drivers, template)."""
    m = cfg["model"]
    return [m[k] for k in ("parameters_file", "drivers", "template") if m.get(k)]


def global_files(cfg: Config) -> list[str]:
    """The model's files and, without a twin, the observation products' files."""
    obs = cfg["observations"]
    products = [] if obs["twin"] else [p["file"] for p in obs["products"]]
    return model_files(cfg) + products
