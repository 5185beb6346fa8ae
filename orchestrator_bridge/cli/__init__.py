"""The ``producer`` command line: ``main`` parses; each command lives in its own module
(``run``, ``status``, ``processes``), with the local run's pieces beside it
(``embedded`` Redis, ``progress`` line and summary, ``options``)."""

from orchestrator_bridge.cli.main import main

__all__ = ["main"]
