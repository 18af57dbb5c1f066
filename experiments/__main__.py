"""``python -m experiments sweep|report|study|compare ...`` (see :mod:`experiments.cli`)."""

import sys

from .cli import main

sys.exit(main())
