"""``model.parameters_file`` for a model that has a space of its own (DALEC, a ``python`` entry point).

The file lists only the values it changes, each a table of the keys it changes (``lower``,
``upper``, ``default``, ``fixed``, ``scale``, ...); every other value, and every key the file does
not give (a log ``scale``, the units), stays the model's. The bounds can be narrowed, not widened:
the model's own bounds say where it is valid (a DALEC fraction above 1 breaks the carbon balance).
An external program has no space of its own: its ``parameters_file`` is the whole space
(:func:`bayescal.workflows.own_model.file_space`).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError, did_you_mean

__all__ = ["merged_space"]


def merged_space(m: dict, builtin: Any, model: str, short: str) -> Any:
    """``builtin`` (a :class:`~bayescal.parameters.ParameterSpace`) changed by the file
    ``m["parameters_file"]``; ``model`` names the model in errors ("DALEC-evergreen"), ``short`` in
    the range messages ("DALEC"). Every problem is a ConfigError naming the file."""
    from bayescal.parameters import ParameterSpace

    where = f"'model.parameters_file' {m['parameters_file']}"
    given = _read_tables(where, Path(m["parameters_file"]))
    unknown = [k for k in given if k not in builtin.names]
    if unknown:
        raise ConfigError(f"{where}: {model} has no values {unknown}"
                          f"{did_you_mean(unknown[0], builtin.names)}; its values are {builtin.names} "
                          f"(list those you change: the others keep {short}'s bounds and defaults)")
    merged = builtin.to_dict()
    for name, spec in given.items():
        merged["parameters"][name] = {**merged["parameters"][name], **spec}
    try:
        space = ParameterSpace.from_dict(merged, source=str(m["parameters_file"]))
    except Exception as err:  # noqa: BLE001 - any problem of the user's parameter file, named
        text = str(err).removeprefix(f"{m['parameters_file']}: ")  # the file once
        raise ConfigError(f"{where}: {type(err).__name__}: {text}") from None
    if space.all_labels != builtin.all_labels:  # 'groups' made a value a vector, or changed its groups
        odd = next(n for n in given if space[n].labels != builtin[n].labels)
        raise ConfigError(f"{where}: {odd} is {len(builtin[odd].labels)} value(s) in {short} "
                          f"({builtin[odd].labels}); the file makes it {len(space[odd].labels)} (a file "
                          "cannot change a value's groups)")
    lo, hi, qlo, qhi = space.all_lower, space.all_upper, builtin.all_lower, builtin.all_upper
    for k in np.flatnonzero((lo < qlo) | (hi > qhi)):
        lab = space.all_labels[k]
        what = builtin[lab.split("[")[0]].description
        raise ConfigError(f"{where}: {lab}'s bounds [{lo[k]:g}, {hi[k]:g}] leave {short}'s range "
                          f"[{qlo[k]:g}, {qhi[k]:g}]{f' ({what})' if what else ''}: a "
                          "parameters file can narrow the bounds, not widen them")
    return space


def _read_tables(where: str, path: Path) -> dict:
    try:
        given = tomllib.loads(path.read_text()).get("parameters")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(f"{where}: cannot be read as TOML ({type(err).__name__}: {err})") from None
    if not isinstance(given, dict) or not all(isinstance(v, dict) for v in given.values()):
        raise ConfigError(f"{where}: needs a [parameters.<name>] table for each value it changes, such as "
                          "[parameters.p2] with lower = 0.3, upper = 0.6")
    return given
