"""probepair: two event probes on two hosts as a hot-standby failover pair."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
