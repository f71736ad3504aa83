"""``python -m bayescal`` = the ``bayescal`` command."""

import sys

from .cli import main

sys.exit(main())
