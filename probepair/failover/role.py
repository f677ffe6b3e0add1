"""``Role`` and the sizes the codec and the machine's config share: a leaf of failover/.

PURE, standard library only. The heartbeat codec (``wire``) carries the role and the
machine's types (``types``) name the codec's values in annotations; both import this
leaf, so neither imports the other at run time and no import circle remains.
"""

from __future__ import annotations

import enum
from typing import Final

BOOT_ID_SIZE: Final = 8
DIGEST_SIZE: Final = 4  # bytes of config digest: enough to notice drift, not a secret


class Role(enum.Enum):
    """A probe's failover role; values are the ``probepair_role{role=...}`` labels."""

    MASTER = "master"  # active: forwards to the sink
    MASTER_PENDING = "master-pending"  # a (re)started master waiting for the handover
    SLAVE_STANDBY = "slave-standby"  # buffers, forwards nothing
    SLAVE_ACTIVE = "slave-active"  # took over from a silent master
    STANDARD = "standard"  # no failover: always active
