"""probepair: two event probes on two hosts as a hot-standby failover pair."""

from __future__ import annotations

from probepair._version import __version__

__all__ = ["__version__"]
