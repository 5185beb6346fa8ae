"""The installed package's version (``producer --version``, ``producer_build_info``)."""

from __future__ import annotations

import importlib.metadata
from functools import lru_cache


@lru_cache(maxsize=1)
def version() -> str:
    try:
        return importlib.metadata.version("attribute-producer")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        return "unknown"
