"""The scheduler process: `python run_ingestor.py [--log-level L]` runs the scheduler loop.

Any `crypto-pipeline` command works here too (`python run_ingestor.py status`); with none, it is `run`.
"""

from __future__ import annotations

import sys

from pipeline.runtime.cli import COMMANDS, main

if __name__ == "__main__":
    args = sys.argv[1:]
    if not any(arg in COMMANDS for arg in args):
        args.append("run")
    sys.exit(main(args))
