"""``python -m ccloss``: see ``ccloss.cli``."""

from .cli import main
from .runtime.distributed import exit_process

exit_process(main())
