"""A fork server for ``bayescal`` command lines (the ``cli`` fixture of tests/conftest.py): each
``bayescal run`` a test starts, and may SIGKILL, is a fresh child process, without the seconds of interpreter
start-up and imports that ``python -m bayescal`` pays every time.

The server imports bayescal's modules once (importing runs no model; its only other threads are
OpenBLAS's idle workers, which OpenBLAS shuts down before a fork and starts again in the child),
then reads one JSON request a line on stdin, ``{"argv": [...], "log": path}``, and forks a
child for it: the child starts its own session (its pid is its process group: ``os.killpg`` kills it),
writes stdout and stderr to ``log`` and exits with ``bayescal.cli.main(argv)``'s code, as
``python -m bayescal`` does. The server answers each request with the child's pid and, when the
child has ended, writes its exit status (negative: killed by that signal) to ``<log>.rc``.
When its stdin closes it kills any child still running (left by a failed test) and exits.
"""

import importlib
import json
import os
import select
import signal
import sys
import traceback

#: imported once here, before any fork: the command line, and the modules its stages import when
#: they start (only a speed-up: a module missing from this list is imported by the child)
PRELOAD = ("bayescal.workflows", "bayescal.workflows.global_.stages", "bayescal.posterior",
           "bayescal.posterior.refinement", "bayescal.emulators", "bayescal.analysis.equifinality",
           "bayescal.report", "bayescal.workflows.site.stages", "bayescal.workflows.dagon.stages")


def _child(argv: list[str], log: str) -> None:
    os.setsid()
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    code = 1
    try:
        from bayescal.cli import main

        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # noqa: BLE001 - shown in the log, exit 1, as the interpreter does
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)


def _reap(children: dict[int, str]) -> None:
    while children:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        log = children.pop(pid)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        with open(log + ".rc.tmp", "w") as f:
            f.write(str(code))
        os.replace(log + ".rc.tmp", log + ".rc")  # atomic: never read half-written


def main() -> None:
    import bayescal.cli  # noqa: F401 - what every child runs

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    from bayescal.readers.units import registry

    registry()  # the unit registry (half a second to build), made once, as the imports are
    print("ready", flush=True)
    children: dict[int, str] = {}
    stdin = sys.stdin.fileno()
    buf = b""
    open_ = True
    while open_ or children:
        if open_ and select.select([stdin], [], [], 0.005)[0]:
            chunk = os.read(stdin, 65536)
            open_ = bool(chunk)
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                if not line.strip():
                    continue
                req = json.loads(line)
                pid = os.fork()
                if pid == 0:
                    _child(req["argv"], req["log"])
                children[pid] = req["log"]
                print(pid, flush=True)
        elif not open_:  # the tests are done: a child still running was left by a failed test
            for pid in children:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            select.select([], [], [], 0.005)
        _reap(children)


if __name__ == "__main__":
    main()
