"""``python -m petool_lib COMMAND ...``: see :mod:`petool_lib.cli`."""

import sys

from .cli import main

sys.exit(main())
