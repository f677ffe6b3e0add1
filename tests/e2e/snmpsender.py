"""A paced SNMP trap sender: the Feeder's schedule, numbered SNMPv2c traps.

Trap ``seq`` carries its number in a varbind (``$1`` = ``<tag>-<seq>``) and goes to
both probes byte for byte, as snmpd does to two trap sinks. Its event key is the one
the snmp feed computes (``feeds/snmp/feed.py``: version byte + the PDU less its
request-id, occurrence index 0 as every trap is unique), so the test knows every key
that must reach the sinks without asking the probes.
"""

from __future__ import annotations

from probepair.events import key_of
from probepair.feeds.snmp import ber
from tests.e2e.feeder import Feeder

TRAP_OID = ".1.3.6.1.4.1.8072.2.3.0.1"  # NET-SNMP-EXAMPLES-MIB netSnmpExampleHeartbeat
SEQ_OID = ".1.3.6.1.4.1.8072.2.3.2.1"


def trap(tag: str, seq: int, request_id: int | None = None) -> bytes:
    """The v2c trap ``seq`` of run ``tag``."""
    varbinds = [
        (".1.3.6.1.2.1.1.3.0", ber.TIMETICKS, 4200),
        (".1.3.6.1.6.3.1.1.4.1.0", ber.OID, TRAP_OID),
        (SEQ_OID, ber.OCTET_STRING, f"{tag}-{seq:08d}".encode()),
    ]
    pdu = ber.encode_pdu(ber.TRAP_V2, seq if request_id is None else request_id,
                         ber.encode_varbinds(varbinds))
    return ber.encode_message(ber.V2C, b"public", pdu)


def trap_key(data: bytes) -> str:
    """The hex event key the snmp feed gives ``data`` (first of its kind)."""
    msg = ber.decode_message(data)
    assert isinstance(msg, ber.Message)
    return key_of(bytes((msg.version,)) + msg.pdu.key_material).hex()


class TrapFeeder(Feeder):
    """``Feeder`` sending traps instead of lines."""

    def payload(self, seq: int) -> bytes:
        return trap(self.tag, seq)

    def key(self, seq: int) -> str:
        return trap_key(self.payload(seq))
