"""`python -m broker` is `opsbus`."""

import sys

from broker.cli import main

sys.exit(main())
