"""`python -m tracecc ...` is the `tracecc` command."""

import sys

from .cli import main

sys.exit(main())
