"""``python -m bayescal`` = the ``bayescal`` command."""

from bayescal.cli import entry

entry()
