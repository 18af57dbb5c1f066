"""``python -m ccloss``: see ``ccloss.cli``."""

import sys

from .cli import main

sys.exit(main())
