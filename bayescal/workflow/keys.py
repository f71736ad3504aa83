"""The key of a stage: a hash of everything it declares it reads.

``key = hash(values of its declared config keys, contents of its input files, the keys of the
stages it needs, bayescal's version)``. The inputs behind the key are kept beside it in the
stage's records, so ``bayescal check`` can say what changed.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import tomllib
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from bayescal import __version__

from .stage import RunStore, Stage, config_value

__all__ = ["STAGE_KEYS", "changed_inputs", "file_digest", "portable", "stage_inputs", "stage_key",
           "stages_of_another_config", "write_stage_keys"]

_DIGESTS: dict[tuple[str, int, int], str] = {}


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's content (``"missing"`` if it is not a file); cached per size and mtime.

    A TOML file counts by its parsed values and a Python file by its syntax tree, so a comment,
    a blank line or another layout of the same values or code keeps the stages that read it (a
    file that does not parse counts byte for byte)."""
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return "missing"
    if not path.is_file():
        return "missing"
    cache_key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if cache_key not in _DIGESTS:
        _DIGESTS[cache_key] = _parsed_digest(path) or _bytes_digest(path)
    return _DIGESTS[cache_key]


def _bytes_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _typed(value: Any) -> list[str]:
    """A TOML date or time as its type and text: not equal to the same text as a string."""
    return [type(value).__name__, value.isoformat() if hasattr(value, "isoformat") else str(value)]


class _Text(str):
    """Text :func:`_syntax_text` writes as it is (a plain ``str`` in a tree is a value: its repr)."""


def _syntax_text(tree: Any) -> str:
    """A syntax tree as text, the same on every Python: ``ast.dump`` is not (3.12 added empty
    ``type_params`` fields and empty strings in nested f-string format specs, 3.13 leaves empty
    fields out), so fields that are None or empty, and an f-string's empty pieces, are left out
    here on all of them. Without recursion: a model's 1,000-branch ``elif`` chain is text too."""
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, _Text):
            out.append(node)
        elif isinstance(node, (ast.AST, list)):
            todo.extend(reversed(_pieces(node)))
        else:
            out.append(repr(node))
    return "".join(out)


def _pieces(node: ast.AST | list) -> list:
    """One node (or list) as its opening, fields (still trees) and closing, in order."""
    if isinstance(node, list):
        items, parts = node, [_Text("[")]
    else:
        fields = list(ast.iter_fields(node))
        if isinstance(node, ast.JoinedStr):  # 3.12: f"{x:{w}}" holds Constant('') pieces
            fields = [(k, [x for x in v if not (isinstance(x, ast.Constant) and x.value == "")])
                      for k, v in fields]
        fields = [(k, v) for k, v in fields if v is not None and v != []]
        items, parts = fields, [_Text(type(node).__name__ + "(")]
    for i, item in enumerate(items):
        if i:
            parts.append(_Text(", "))
        if isinstance(node, list):
            parts.append(item)
        else:
            parts.extend((_Text(item[0] + "="), item[1]))
    parts.append(_Text("]" if isinstance(node, list) else ")"))
    return parts


def _parsed_digest(path: Path) -> str | None:
    """The digest of a TOML file's values or a Python file's syntax tree (without comments and
    layout; a docstring counts); None for other files and for one that does not parse."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":  # in the file's order (a parameter space's order is its tables')
            text = json.dumps(tomllib.loads(path.read_text(encoding="utf-8")), default=_typed)
        elif suffix == ".py":  # and its #! line, which picks the interpreter of a script run as a program
            source = path.read_bytes()
            shebang = source.split(b"\n", 1)[0] if source.startswith(b"#!") else b""
            text = shebang.decode(errors="replace") + _syntax_text(ast.parse(source))
        else:
            return None
    # TOMLDecodeError and UnicodeDecodeError are ValueErrors; a tree too deep for the parser (a sum of
    # thousands of terms) is a RecursionError: such a file counts byte for byte
    except (ValueError, SyntaxError, OSError, RecursionError):
        return None
    return suffix[1:] + ":" + hashlib.sha256(text.encode()).hexdigest()


def stage_inputs(stage: Stage | RunStore, config: Mapping[str, Any], needed: Mapping[str, str]) -> dict:
    """What a stage's (or run store's) key is made of.

    Parameters
    ----------
    stage : Stage or RunStore
        The declaration.
    config : mapping
        The validated config.
    needed : mapping
        Key of every stage of the workflow computed so far (name -> key).

    Returns
    -------
    dict
        ``reads`` (key -> hash of its value), ``files`` (path -> content hash), ``needs``
        (stage -> key), ``bayescal`` (the version) and the stage's (or store's) ``revision``
        (when not 0);
        ``detail``, not in the key, holds a hash
        per value of each table read (``{"oat": {"unit": ..., "delta": ...}}``), so a change can
        be named by its key (``oat.unit``).
    """
    root = config.get("run", {}).get("config_dir")
    values = {k: portable(config_value(config, k), root) for k in stage.keys(config)}
    out = {
        "reads": {k: _hash(v) for k, v in values.items()},
        "detail": {k: _leaves(v) for k, v in values.items() if isinstance(v, Mapping) or _tables(v)},
        "files": {portable(p, root): file_digest(p)
                  for p in sorted({str(p) for p in stage.input_files(config) if p})},
        "needs": {n: needed[n] for n in stage.needs},
        "bayescal": __version__,
    }
    if getattr(stage, "revision", 0):  # absent at 0: the keys of stages never revised stay as they were
        out["revision"] = stage.revision
    return out


def portable(value: Any, root: str | None) -> Any:
    """``value`` with every path string under ``root`` (the config file's folder) written relative
    to it (``"<config>/data/nee.csv"``) and every path into bayescal's package data as the config
    names it (``"bayescal:data/..."``): a project folder moved or copied elsewhere, its run
    directory with it, or bayescal installed anew elsewhere, keeps its stages' keys. Other paths
    are kept as they are."""
    if isinstance(value, str):
        for prefix, name in ((root, "<config>" + os.sep), (_PACKAGE, "bayescal:")):
            head = prefix.rstrip("/\\") + os.sep if prefix else None
            if head and value.startswith(head):
                return name + value[len(head):]
        return "<config>" if root and value == root else value
    if isinstance(value, Mapping):
        return {k: portable(v, root) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v, root) for v in value]
    return value


_PACKAGE = str(resources.files("bayescal"))  # as resolve_path makes "bayescal:data/..." paths


def _tables(value: Any) -> bool:
    """A non-empty list of tables (``observations.products``)."""
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _leaves(table: Mapping[str, Any] | list, prefix: str = "") -> dict[str, str]:
    """A hash per value of a (nested) table, by dotted key; a list of tables' by item
    (``[1].sigma_floor``)."""
    if isinstance(table, list):
        return {k: v for i, t in enumerate(table) for k, v in _leaves(t, f"{prefix}[{i}].").items()}
    out: dict[str, str] = {}
    for k, v in table.items():
        if isinstance(v, Mapping) and v or _tables(v):
            out.update(_leaves(v, f"{prefix}{k}{'' if _tables(v) else '.'}"))
        else:
            out[f"{prefix}{k}"] = _hash(v)
    return out


def stage_key(name: str, inputs: Mapping[str, Any]) -> str:
    """The key of stage ``name`` with ``inputs`` (from :func:`stage_inputs`; its ``detail`` is
    not in the key: it restates ``reads``)."""
    return _hash({"stage": name, **{k: v for k, v in inputs.items() if k != "detail"}})


def changed_inputs(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """The inputs that differ between two :func:`stage_inputs` (``run.seed``, a file, a stage)."""
    if not old or not isinstance(old, Mapping):
        return []
    out = []
    for group, label in (("reads", "{}"), ("files", "file {}"), ("needs", "stage {}")):
        a, b = old.get(group, {}) or {}, new.get(group, {})
        moved = _moved_files(a, b) if group == "files" else {}
        out += [f"file {k} (moved to {v}, the same content: its path counts)" for k, v in moved.items()]
        for k in sorted((set(a) | set(b)) - set(moved) - set(moved.values())):
            if a.get(k) != b.get(k):
                out += _changed_leaves(old, new, k) if group == "reads" else [label.format(k)]
    if old.get("bayescal") != new.get("bayescal"):
        out.append(f"bayescal version {old.get('bayescal')} -> {new.get('bayescal')}")
    if old.get("revision", 0) != new.get("revision", 0):
        out.append(f"the stage's code (revision {old.get('revision', 0)} -> {new.get('revision', 0)}: "
                   "CHANGELOG.md says what changed)")
    if old.get("model") != new.get("model"):
        out.append("the model given to the workflow (its class, source file or parameter space)")
    return out


def _moved_files(old: Mapping[str, str], new: Mapping[str, str]) -> dict[str, str]:
    """Paths read before and not now (``old``: path -> content hash) paired with paths read now
    and not before that hold the same content: a file moved or copied elsewhere."""
    gone = [k for k in old if k not in new]
    came = {k: v for k, v in new.items() if k not in old}
    out = {}
    for k in gone:
        match = next((c for c, v in came.items() if v == old[k]), None)
        if match is not None:
            out[k] = match
            del came[match]
    return out


def _changed_leaves(old: Mapping[str, Any], new: Mapping[str, Any], key: str) -> list[str]:
    """The dotted keys that changed inside table ``key`` (``["oat.unit"]``), or ``[key]`` when the
    records do not say (an older record, a value that is no longer a table)."""
    a = (old.get("detail") or {}).get(key)
    b = (new.get("detail") or {}).get(key)
    if not isinstance(a, Mapping) or not isinstance(b, Mapping):
        return [key]
    items = lambda d: {k.partition("]")[0] for k in d if k.startswith("[")}  # noqa: E731 - a list's items
    if items(a) != items(b):  # a product added or left out: said by the count
        return [f"{key} ({len(items(a))} -> {len(items(b))} items)"]
    leaves = [f"{key}{'' if k.startswith('[') else '.'}{k}" for k in sorted(set(a) | set(b))
              if a.get(k) != b.get(k)]
    return leaves or [key]


#: ``<run>/stage_keys.json``: every stage's key under the run directory's config.json, written
#: with it by each ``bayescal run``; a stage whose record holds another key was made with another
#: config (a later run of an edited config stopped before it, or ran ``--until`` an earlier stage)
STAGE_KEYS = "stage_keys.json"


def write_stage_keys(run_dir: str | Path, keys: Mapping[str, str]) -> None:
    """Record ``keys`` (stage -> key) as those of the run directory's config.json (after it)."""
    from .rundir import write_json_atomic

    run_dir = Path(run_dir)
    write_json_atomic(run_dir / STAGE_KEYS, {"config": _bytes_digest(run_dir / "config.json"),
                                             "stages": dict(keys)})


def stages_of_another_config(run_dir: str | Path, names: list[str]) -> list[str]:
    """Of the finished stages ``names``, those whose record holds another key than the run
    directory's config gives them (:data:`STAGE_KEYS`); none for a run directory without the file
    (an older bayescal's)."""
    from .rundir import read_json_record

    run_dir = Path(run_dir)
    current = read_json_record(run_dir / STAGE_KEYS, set_aside=False)
    if current is None:
        return []
    if current.get("config") != _bytes_digest(run_dir / "config.json"):  # written apart: all unsure
        return list(names)
    keys = current.get("stages", {})
    record = {n: read_json_record(run_dir / n / "stage.json", set_aside=False) or {} for n in names}
    return [n for n in names if record[n].get("key") != keys.get(n)]
