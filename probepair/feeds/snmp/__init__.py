"""The SNMP trap feed (issue 22): ``ber`` codec, ``usm`` (SNMPv3), ``tokens`` (mttrapd's
elements), ``control`` (flood control), ``names`` (DNS cache) and the trio ``feed``.

``ber``, ``usm``, ``tokens`` and ``control`` are sans-IO; only ``feed`` and ``names``
import trio.
"""
