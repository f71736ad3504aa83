"""``python -m bayescal`` = the ``bayescal`` command."""

import sys

from bayescal.cli import main

sys.exit(main())
