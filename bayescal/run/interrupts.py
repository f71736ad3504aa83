"""Ctrl-C and SIGTERM remembered where Python drops them.

Python turns SIGINT into a KeyboardInterrupt (and bayescal's command line turns SIGTERM into
:class:`~bayescal.cli.Terminated`, a KeyboardInterrupt) wherever the main thread is; one raised
inside a finaliser (a garbage-collected object's ``__del__``, a weakref callback) is printed as
"Exception ignored in ..." and dropped, and the run went on: a model ensemble to its end, a
stage to its record (``stage.json``), as if never interrupted. :class:`InterruptLatch` records it
so that the runner (after each batch) and the workflow engine (before a stage's record) raise it
again.
"""

from __future__ import annotations

import signal
import threading

__all__ = ["InterruptLatch"]


class InterruptLatch:
    """While set (in the main thread, over Python handlers of SIGINT and SIGTERM), a
    KeyboardInterrupt a handler raises is also recorded, and :meth:`check` raises it again. A
    handler that does not raise (a "stop after this" flag of yours) is left to do what it does;
    a handler set from C, or the default, is left alone."""

    def __init__(self) -> None:
        self.caught: BaseException | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> InterruptLatch:
        if threading.current_thread() is not threading.main_thread():
            return self
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(signum)
            if callable(previous):
                self._previous[signum] = previous
                signal.signal(signum, self._latched(previous))
        return self

    def _latched(self, previous):
        def latch(signum, frame):
            try:
                previous(signum, frame)
            except KeyboardInterrupt as err:
                self.caught = err
                raise

        return latch

    def check(self) -> None:
        """Raise again the KeyboardInterrupt of a signal caught since the latch was set."""
        if self.caught is not None:
            raise self.caught.with_traceback(None)

    def __exit__(self, *exc) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
