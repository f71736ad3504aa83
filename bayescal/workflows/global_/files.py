"""The input files of the global workflow's stages (their keys hash these files' contents)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["global_files", "model_files"]

from ..own_model import model_source_files

Config = Mapping[str, Any]


def model_files(cfg: Config) -> list[str]:
    """The model's own input files: ``model.parameters_file``; a model of your own's template,
    entry point source and the files its command names."""
    m = cfg["model"]
    return [m[k] for k in ("parameters_file", "drivers", "template") if m.get(k)] + model_source_files(cfg)


def global_files(cfg: Config) -> list[str]:
    """The model's files and, without a twin, the observation products' files."""
    obs = cfg["observations"]
    products = [] if obs["twin"] else [p["file"] for p in obs["products"]]
    return model_files(cfg) + products
