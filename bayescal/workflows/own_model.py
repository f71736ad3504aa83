"""A model of your own named by ``[model]``: a Python entry point or an external program.

``model.kind = "python"`` imports ``entry_point`` (``package.module:Factory``, found beside the
config file or in ``model.python_path`` before ``sys.path``) and calls it with ``model.options``;
``model.kind = "external"`` runs ``model.command`` per member through
:class:`~bayescal.models.external.ExternalModel`. Both routes use them: the site workflow (series,
:mod:`.site.model`) and the global workflow with ``run.workflow = "global"`` (gridded outputs,
docs/own-model.md). Paths in the config are relative to its folder and made absolute here; the
files a model is made of (the entry point's source, the files its command names) are inputs of
the stages that run it (:func:`model_source_files`).
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import inspect
import os
import shutil
import sys
from importlib import import_module, resources
from pathlib import Path
from typing import Any

from .config import ConfigError, expand_path

__all__ = ["OWN_KINDS", "add_python_path", "check_own_model_keys", "external_model", "file_space",
           "forget_stale_module", "import_entry_point", "model_source_files", "python_model",
           "resolve_command", "resolve_path"]

#: the ``model.kind`` of a model of your own
OWN_KINDS = ("python", "external")


def resolve_path(value: str, base: Path | None, key: str) -> str:
    """A path from the config: ``bayescal:data/...`` is package data; ``~`` and ``$VARIABLES``
    expanded; relative paths are relative to the config file's folder."""
    if value.startswith("bayescal:"):
        path = Path(str(resources.files("bayescal") / value.split(":", 1)[1]))
    else:
        path = Path(expand_path(value, key))
        if base is not None and not path.is_absolute():
            path = base / path
        path = Path(os.path.normpath(path))  # data/../data/x.csv is data/x.csv: named, and keyed, once
    if path.is_dir():
        raise ConfigError(f"'{key}': {path} is a folder, not a file; give the file in it")
    if not path.is_file():
        raise ConfigError(f"'{key}': file not found: {path}")
    return str(path)


def resolve_command(command: list, base: Path | None, run_files: tuple[str, ...] = ()) -> list[str]:
    """``model.command`` with paths relative to the config file's folder made absolute (each
    member's program runs in its own run directory): the program when it is a path (``./my_model``,
    ``bin/model``) or a file beside the config, and every other argument that names a file there
    (``["python", "my_model.py", ...]``). ``{...}`` fields, options, names of programs on
    ``PATH`` (``python``) and ``run_files`` -- the names of the files each run writes in its own
    directory (the parameter file, the output), even if a file of that name sits beside the
    config -- are kept as they are."""
    if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
        raise ConfigError(f"'model.command' must be a non-empty list of strings (never run by a shell), "
                          f"got {command!r}")
    words = command[0].split()
    there = Path(command[0]) if base is None or Path(command[0]).is_absolute() else base / command[0]
    if len(words) > 1 and not there.exists():  # "./model {param_file} {output}" in one string
        raise ConfigError(f"'model.command' {command!r}: its first entry {command[0]!r} holds spaces; the "
                          f"command is a list of the program and its arguments, one entry each (no shell "
                          f"splits it): {words + command[1:]!r}")
    if base is None:
        return list(command)
    _refuse_a_missing_script(command, base, run_files)
    out = []
    for i, arg in enumerate(command):
        path = Path(arg)
        here = (not path.is_absolute() and "{" not in arg and not arg.startswith("-") and arg
                and (i == 0 or arg not in run_files))
        if here and ((i == 0 and ("/" in arg or os.sep in arg)) or (base / path).is_file()):
            arg = os.path.abspath(base / path)  # not resolved: a linked program keeps its name
        out.append(arg)
    return out


#: programs whose first argument is the script they run
_INTERPRETERS = ("python", "python3", "Rscript", "bash", "sh", "julia", "perl", "ruby", "node")
_SCRIPTS = (".py", ".r", ".sh", ".jl", ".pl", ".rb", ".js")


def _refuse_a_missing_script(command: list[str], base: Path, run_files: tuple[str, ...]) -> None:
    """``["python", "my_model.py", ...]`` where ``my_model.py`` is neither beside the config nor
    an absolute path: a ConfigError now (the member's run would look for it in its own folder)."""
    if Path(command[0]).name.rstrip("0123456789.") not in _INTERPRETERS:
        return
    for script in command[1:]:
        # a module or code, not a script file: -m, -c, -e, and groups such as bash's -lc
        if script in ("--eval", "--command") or (script[:1] == "-" and script[1:2] != "-"
                                                 and set(script[1:]) & set("cem")):
            return
        if not script.startswith("-"):
            break
    else:
        return
    if "{" in script or script in run_files or Path(script).is_absolute() or shutil.which(script):
        return
    if Path(script).suffix.lower() in _SCRIPTS and not (base / script).is_file():
        raise ConfigError(f"'model.command' runs {command[0]} on {script!r}, which is not a file beside the "
                          f"config ({base / script}); give its path relative to the config's folder, or an "
                          "absolute one")


def check_program(program: str) -> None:
    """The program of ``model.command``, before any run: a path must name an executable file (a
    ConfigError: the run at the defaults is made here, also with ``run.scheduler``); a name not
    on ``PATH`` here is warned of."""
    import shutil
    import warnings

    if "{" in program:  # "{run_dir}/model": a run's own file, there only when it runs
        return
    if os.path.isabs(program):
        if not os.path.isfile(program):
            from .config import did_you_mean

            folder = Path(program).parent
            there = [p.name for p in folder.iterdir()] if folder.is_dir() else []
            near = did_you_mean(Path(program).name, there)
            raise ConfigError(f"'model.command': the program {program} does not exist{near} (a relative "
                              "path is relative to the config file's folder)")
        if not os.access(program, os.X_OK):
            raise ConfigError(f"'model.command': the program {program} is not executable: make it so "
                              f"(chmod +x), or run it through its interpreter ([\"python\", "
                              f"\"{os.path.basename(program)}\", ...])")
    elif shutil.which(program) is None:
        warnings.warn(f"'model.command': the program {program!r} is not on this machine's PATH; its runs "
                      "fail unless the machines that run them have it", UserWarning, stacklevel=2)


def check_own_model_keys(cfg: dict, base: Path | None) -> None:
    """``[model]`` of a ``python`` or ``external`` model, in place: the entry point's form, the
    folders searched for it (the config's own first), an external model's required keys with its
    paths made absolute, ``model.parameters_file``. Nothing is imported or run here."""
    m = cfg["model"]
    if m["kind"] == "python" and (not m["entry_point"] or ":" not in m["entry_point"]):
        raise ConfigError(f"'model.entry_point' must be 'package.module:Factory', got {m['entry_point']!r}")
    folders = [str(Path(f) if base is None else (base / f).resolve()) for f in m["python_path"] or []]
    missing = [f for f in folders if not Path(f).is_dir()]
    if missing:
        raise ConfigError(f"'model.python_path': {missing[0]} is not a folder (a relative path is relative "
                          "to the config file's folder)")
    own = [str(base.resolve())] if base is not None and m["kind"] == "python" else []  # its modules
    m["python_path"] = list(dict.fromkeys(folders + own))  # idempotent: a config validated twice
    if m["kind"] == "external":
        for k in ("command", "template", "output", "parameters_file"):
            if not m[k]:
                raise ConfigError(f"'model.{k}' is required for model.kind = 'external'")
        m["template"] = resolve_path(m["template"], base, "model.template")
        from bayescal.models.external import ExternalModel

        param_file = inspect.signature(ExternalModel).parameters["param_file"].default
        run_files = (param_file, str(m["output"]))  # written in each run's own directory
        m["command"] = resolve_command(m["command"], base, run_files)
        check_program(m["command"][0])
    if m["parameters_file"] is not None:
        m["parameters_file"] = resolve_path(m["parameters_file"], base, "model.parameters_file")
    if m["kind"] == "external":  # the template's placeholders against the values, before any run
        external_model(m, file_space(m), Path("external"), None)


def file_space(m: dict) -> Any:
    """The space of ``model.parameters_file`` (None without one); any problem of the file is a
    ConfigError naming it."""
    from bayescal.parameters import ParameterSpace

    if not m.get("parameters_file"):
        return None
    try:
        return ParameterSpace.from_toml(m["parameters_file"])
    except Exception as err:  # noqa: BLE001 - any problem of the user's parameter file, named
        text = str(err).removeprefix(f"{m['parameters_file']}: ")  # the file once
        raise ConfigError(f"'model.parameters_file' {m['parameters_file']}: "
                          f"{type(err).__name__}: {text}") from None


def add_python_path(m: dict) -> None:
    """Put ``model.python_path`` (the config file's folder and any listed) in front of
    ``sys.path``, as Python does for a script's folder: a module beside the config is found."""
    for folder in reversed(list(m.get("python_path") or [])):
        if sys.path[:1] != [folder]:  # in front, also of another config's folder added before
            while folder in sys.path:
                sys.path.remove(folder)
            sys.path.insert(0, folder)


def _file_digest(path: str | None) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None
    except OSError:
        return None


def forget_stale_module(m: dict) -> None:
    """Forget the entry point's module (and its package's modules) if this process imported it
    from another file than ``model.python_path`` names now, or its files changed on disk since:
    in one session (a notebook, a test run) two configs' ``mymodel.py`` in two folders, or an
    edited model, would otherwise run the module imported first while the stage keys hash the
    file on disk. bayescal and installed packages (files under the interpreter's prefixes) are
    left alone. One process holds one module of a name: two pipelines of one session whose
    entry points are two files of the same module name cannot both be used (name them apart).
    An edit that keeps a file's size within the second it was compiled can still load Python's
    cached bytecode of the earlier text (Python's own cache rule)."""
    top = m["entry_point"].partition(":")[0].split(".")[0]
    loaded = sys.modules.get(top)
    if loaded is None or top == "bayescal" or _installed(getattr(loaded, "__file__", None)):
        return
    spec = importlib.machinery.PathFinder.find_spec(top, list(m.get("python_path") or []))
    if spec is None or not spec.origin:
        return
    names = [n for n in list(sys.modules) if n == top or n.startswith(top + ".")]
    moved = os.path.realpath(getattr(loaded, "__file__", None) or "") != os.path.realpath(spec.origin)
    changed = any(getattr(sys.modules[n], _DIGEST, None) not in (None, _file_digest(getattr(
        sys.modules[n], "__file__", None))) for n in names)
    if moved or changed:
        for n in names:
            del sys.modules[n]
        importlib.invalidate_caches()


def _installed(path: str | None) -> bool:
    """A module file of an installed package (under the interpreter's prefixes): not the user's."""
    if not path:
        return True  # a built-in or namespace module: not a file of the user's
    real = os.path.realpath(path)
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return any(real.startswith(p + os.sep) for p in prefixes)


#: the attribute holding the digest of a module's file when bayescal imported it
_DIGEST = "__bayescal_digest__"


def import_entry_point(m: dict) -> Any:
    """``package.module:Factory``, searched in ``model.python_path`` (default: the config's
    folder) before ``sys.path``; any failure of the import is a ConfigError naming the entry point.
    A module imported before from another file, or edited since, is imported afresh
    (:func:`forget_stale_module`)."""
    entry = m["entry_point"]
    mod, _, attr = entry.partition(":")
    add_python_path(m)
    try:
        forget_stale_module(m)
        module = import_module(mod)
        top = mod.split(".")[0]
        for n in [n for n in list(sys.modules) if n == top or n.startswith(top + ".")]:
            file = getattr(sys.modules[n], "__file__", None)
            if top != "bayescal" and not _installed(file) and not hasattr(sys.modules[n], _DIGEST):
                setattr(sys.modules[n], _DIGEST, _file_digest(file))
        return getattr(module, attr)
    except ModuleNotFoundError as err:
        raise ConfigError(f"'model.entry_point' {entry!r}: {err} (searched the config file's folder, "
                          "'model.python_path' and the installed packages)") from None
    except AttributeError:
        raise ConfigError(f"'model.entry_point' {entry!r}: module {mod!r} has no {attr!r}") from None
    except Exception as err:  # noqa: BLE001 - the user's module failed on import: named, no traceback
        raise ConfigError(f"'model.entry_point' {entry!r}: importing {mod!r} raised "
                          f"{type(err).__name__}: {err}") from None


def python_model(m: dict) -> Any:
    """The entry point called with ``model.options``: a callable with a ``space`` (which
    ``model.parameters_file``, if any, changes: :func:`~.space_file.merged_space`); errors name
    the key."""
    factory = import_entry_point(m)
    try:
        model = factory(**m["options"])
    except Exception as err:  # noqa: BLE001 - unknown option or a failing constructor, named
        raise ConfigError(f"'model.entry_point' {m['entry_point']!r} with 'model.options' {m['options']}: "
                          f"{type(err).__name__}: {err}") from None
    if not hasattr(model, "space") or not callable(model):
        raise ConfigError(f"'model.entry_point' {m['entry_point']!r} must return a callable with a "
                          "'space' (docs/own-model.md)")
    return model


def external_model(m: dict, space: Any, workdir: Path, variables: list[str] | None) -> Any:
    """The external program of ``[model]`` (one run per member, each in its own folder under
    ``workdir``), reading ``variables`` (None: every variable of its output) and ``model.variables``."""
    import warnings

    from bayescal.models.external import ExternalModel, unused_message

    read = None if variables is None else sorted(set(m["variables"] or ()) | set(variables))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the template's unused values: an error here, said below
            model = ExternalModel(command=list(m["command"]), template=m["template"], space=space,
                                  workdir=workdir, output=m["output"], timeout=m["timeout"], variables=read)
    except ValueError as err:  # a template naming values the space lacks, a bad output name
        what = "model.output" if "plain file name" in str(err) else "model.template"
        raise ConfigError(f"'{what}' {m[what.split('.')[1]]}: {err}") from None
    if model.unused_labels:  # calibrated values the program would never see
        raise ConfigError(f"'model.template' {m['template']}: {unused_message(model.unused_labels)} "
                          f"({m['parameters_file']})")
    return model


def _entry_point_file(m: dict) -> list[str]:
    """The source file of a ``python`` model's entry point (its code is an input too)."""
    if m["kind"] != "python" or not m.get("entry_point"):
        return []
    add_python_path(m)
    try:
        forget_stale_module(m)
        spec = importlib.util.find_spec(m["entry_point"].partition(":")[0])
    except (ImportError, ValueError):
        return []
    return [spec.origin] if spec is not None and spec.origin else []


def _command_files(m: dict) -> list[str]:
    """The files an ``external`` model's command names (the program, a script, a data file it
    reads; made absolute by the config's validation): their contents are inputs too, so an edited
    program or data file reruns the stages that ran it."""
    if m["kind"] != "external" or not m.get("command"):
        return []
    return [c for c in m["command"] if os.path.isabs(c) and os.path.isfile(c)]


def model_source_files(cfg: dict) -> list[str]:
    """What a model of your own is made of: a python entry point's source file, the files an
    external model's command names (none for the embedded models)."""
    m = cfg["model"]
    return _entry_point_file(m) + _command_files(m)
