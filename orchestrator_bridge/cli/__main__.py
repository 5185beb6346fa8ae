"""``python -m orchestrator_bridge.cli`` = ``producer``."""

import sys

from orchestrator_bridge.cli.main import main

sys.exit(main())
