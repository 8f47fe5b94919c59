"""``python -m creditbook.entrypoints.cli``."""

import sys

from creditbook.entrypoints.cli.app import main

sys.exit(main())
