"""``python -m orchestrator_bridge`` = ``producer bridge``."""

import sys

from orchestrator_bridge.cli import main

sys.exit(main(["bridge", *sys.argv[1:]]))
