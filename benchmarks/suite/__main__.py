"""``python -m suite`` (what benchmarks/run executes, with PYTHONPATH=benchmarks)."""

from __future__ import annotations

import sys

from .runner import main

sys.exit(main())
