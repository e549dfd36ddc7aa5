"""`python -m broker` is `opsbus` (and the entry point of the one-file executable)."""

import sys

from broker.cli import main
from broker.frozen import restore_child_environment

restore_child_environment()
sys.exit(main())
