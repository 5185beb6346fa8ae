"""The orchestrator bridge: wire protocol, bridge process, reference orchestrator and CLI.

Importing the package is light: only the protocol (``orchestrator_bridge.protocol``, a
leaf) is re-exported; the bridge, the orchestrator and the CLI live in their own modules.
Dependencies run one way: this package uses ``producer_tasks``, never the reverse.
"""

from orchestrator_bridge.protocol import *  # noqa: F403  (the protocol's public names)
from orchestrator_bridge.protocol import __all__ as __all__
