"""The scheduler process: `python run_ingestor.py` runs the scheduler loop; any CLI command works too."""

from __future__ import annotations

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["run"]))
