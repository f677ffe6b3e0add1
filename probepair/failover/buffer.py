"""What a probe that is not forwarding holds: the standby buffer of the failover machine.

PURE. Events held in arrival order, each as (key, serialised alert, arrival time), bounded
by an event cap (``limit``, BufferSize), a byte cap (``byte_limit``, BufferBytes: payload
bytes plus ``EVENT_COST`` an event) and an age (``retention``); past a cap the oldest goes
first, counted by reason. Keys the peer acked before this probe saw the event (the peer's
copy of the feed can be faster) go into ``unseen`` (key -> expiry, bounded); such an event
is dropped on arrival.

Memory layout (issue 9: a held event costs about its bytes, and RSS comes back after a
burst). Holding each alert as its own ``bytes`` costs ~4 KiB when the ``bytes`` came from
``orjson.dumps`` (it keeps its output buffer), and millions of small objects fragment the
heap so that RSS stays high after they are freed. So:

- payloads are *copied* into blocks: anonymous ``mmap``s of ``block_size`` bytes, filled
  front to back (a payload larger than a block gets a block of its own size). A block is
  unmapped, so its memory goes back to the OS at once, when its last event leaves; the
  write block is reused from its start when it empties. ``footprint`` is what the blocks
  map. Acks remove events roughly in arrival order, so blocks empty in order and the
  footprint stays within about two blocks of ``bytes``; events the acks passed over can
  pin sparse blocks, so the footprint is also capped (``byte_limit`` plus a quarter, plus
  two blocks) by dropping the oldest, which frees the oldest blocks first.
- per-event metadata lives in pages of ``PAGE`` slots (a list of keys and three flat
  arrays: block location, size, arrival time), ~30 bytes an event plus the key;
  ``index`` maps key -> sequence number, the slot's position. A removed slot's key is
  set to None; the head (oldest live sequence number) skips such slots, and pages behind
  it are dropped.

Arrival times must not decrease from one ``hold`` to the next (the runtime passes its
monotonic clock), so "older than" is always a prefix.

The machine reads ``unseen`` and calls ``hold`` on its hot path, so ``unseen`` stays a
plain mapping (an OrderedDict: its oldest entry is found in O(1)).
"""

from __future__ import annotations

import mmap
import sys
from array import array
from collections import OrderedDict
from typing import Final

PAGE_BITS: Final = 12
PAGE: Final = 1 << PAGE_BITS  # event slots per metadata page (~120 KiB a page)
PAGE_MASK: Final = PAGE - 1
BLOCK_SIZE: Final = 256 * 1024  # bytes per payload block: ~1,000 alerts of ~250 bytes
MIN_BLOCK: Final = 4096  # one memory page
_OFFSET_BITS: Final = 32  # a location is block number << 32 | offset in the block
_OFFSET_MASK: Final = (1 << _OFFSET_BITS) - 1
_SHRINK_MIN: Final = 1 << 20  # bytes: smaller index tables are not worth rebuilding
INF: Final = float("inf")
# Memory an event costs besides its payload: its key object (48 bytes), its share of the
# index table (~50), its sequence number (32) and its page slots (32). The byte cap
# counts it, so that BufferBytes bounds the memory the buffer uses (a 316-byte alert
# costs ~480 bytes of RSS held), not only the alerts' bytes.
EVENT_COST: Final = 160
_ZEROS: Final = bytes(8 * PAGE)
SPARE_BLOCKS: Final = 4  # freed blocks kept mapped for reuse (1 MiB at the default size)
# Pre-fault a new block in one call (~30% cheaper than a page fault per 4 KiB on touch).
_MAP_FLAGS: Final = mmap.MAP_PRIVATE | getattr(mmap, "MAP_POPULATE", 0)


class _Page:
    """Metadata of PAGE consecutive sequence numbers (slot = seq & PAGE_MASK)."""

    __slots__ = ("keys", "locs", "sizes", "times")

    def __init__(self) -> None:
        # Allocated whole and filled by index: an item store is cheaper than append().
        self.keys: list[bytes | None] = [None] * PAGE
        self.locs = array("q", _ZEROS)
        self.sizes = array("q", _ZEROS)
        self.times = array("d", _ZEROS)


class StandbyBuffer:
    """Events held un-forwarded, and keys acked before they were seen.

    Args:
        limit: events held at most (BufferSize).
        retention: seconds an event is held at most (BufferRetention).
        byte_limit: memory held at most (BufferBytes): payload bytes plus EVENT_COST
            an event. ``bytes`` counts the payload bytes alone.
        block_size: bytes per payload block (tests use small ones).
    """

    __slots__ = (
        "_blocks",
        "_fp_limit",
        "_head",
        "_last_time",
        "_live",
        "_mm",
        "_page0",
        "_pages",
        "_seq",
        "_spare",
        "_wbase",
        "_wblock",
        "_wfirst",
        "_woff",
        "_wsize",
        "acked",
        "block_size",
        "byte_limit",
        "bytes",
        "dropped_bytes",
        "dropped_full",
        "dropped_retention",
        "duplicates_avoided",
        "footprint",
        "index",
        "limit",
        "retention",
        "unseen",
    )

    def __init__(
        self,
        limit: int,
        retention: float,
        byte_limit: int = 256 * 2**20,
        *,
        block_size: int = BLOCK_SIZE,
    ) -> None:
        if limit < 1 or byte_limit < 1 or retention <= 0:
            raise ValueError("limit and byte_limit must be >= 1 and retention positive")
        self.limit = limit
        self.retention = retention
        self.byte_limit = byte_limit
        # Small caps get small blocks, so that one block is not most of the cap.
        self.block_size = max(MIN_BLOCK, min(block_size, byte_limit // 8))
        self._fp_limit = byte_limit + byte_limit // 4 + 2 * self.block_size
        self.index: dict[bytes, int] = {}  # held key -> sequence number
        self.unseen: OrderedDict[bytes, float] = OrderedDict()  # acked key -> expiry
        self.bytes = 0  # payload bytes held
        self.footprint = 0  # bytes mapped by the blocks
        self.duplicates_avoided = 0  # events dropped on arrival: the peer had acked them
        self.acked = 0  # held events removed by the peer's acks
        self.dropped_full = 0
        self.dropped_retention = 0
        self.dropped_bytes = 0
        self._seq = 0  # the next sequence number
        self._head = 0  # no live event has a smaller sequence number
        self._pages: list[_Page] = []
        self._page0 = 0  # page number of _pages[0]
        self._blocks: dict[int, mmap.mmap] = {}
        self._live: dict[int, int] = {}  # block number -> live events in it
        self._wblock = -1  # the block being written, its map, base location, offset, size
        self._mm: mmap.mmap | None = None
        self._wbase = 0
        self._woff = 0
        self._wsize = 0
        self._wfirst = 0  # the sequence number that started the write block
        self._spare: list[mmap.mmap] = []  # freed blocks kept for reuse
        self._last_time = -INF

    def __len__(self) -> int:
        return len(self.index)

    # -- the hot path -----------------------------------------------------------------

    def hold(self, key: bytes, payload: bytes, now: float) -> None:
        """Keep an event; past ``limit`` or ``byte_limit`` the oldest go (counted).

        A key held already is replaced (the old copy goes). The newest event stays even
        when it alone is larger than ``byte_limit``.
        """
        seq = self._seq
        index = self.index
        old = index.setdefault(key, seq)
        if old != seq:
            self._remove(old)
            index[key] = seq
        n = len(payload)
        off = self._woff
        if off + n > self._wsize:
            off = self._new_block(n)
        self._mm[off : off + n] = payload  # type: ignore[index]
        self._woff = off + n
        self._seq = seq + 1
        slot = seq & PAGE_MASK
        if slot:
            page = self._pages[-1]
        else:
            page = _Page()
            self._pages.append(page)
        page.keys[slot] = key
        page.locs[slot] = self._wbase | off
        page.sizes[slot] = n
        if now < self._last_time:
            now = self._last_time  # see the module comment: arrival order is time order
        self._last_time = now
        page.times[slot] = now
        self.bytes += n
        if len(index) > self.limit:
            self._evict_oldest()
            self.dropped_full += 1
        while (
            self.bytes + EVENT_COST * len(index) > self.byte_limit
            or self.footprint > self._fp_limit
        ) and len(index) > 1:
            self._evict_oldest()
            self.dropped_bytes += 1

    def ack(self, keys: tuple[bytes, ...] | list[bytes], now: float) -> float | None:
        """The peer delivered ``keys``: forget them, or remember them until seen.

        Returns:
            the newest arrival time among the held events removed, None if none was held.
        """
        index, unseen, pages, live = self.index, self.unseen, self._pages, self._live
        expiry = now + self.retention
        newest = -INF
        page0, wblock = self._page0, self._wblock
        removed = 0
        for key in keys:
            seq = index.pop(key, None)
            if seq is None:
                unseen[key] = expiry
                continue
            # _remove, inlined: acks reach every event a standby holds.
            page = pages[(seq >> PAGE_BITS) - page0]
            slot = seq & PAGE_MASK
            page.keys[slot] = None
            self.bytes -= page.sizes[slot]
            block = page.locs[slot] >> _OFFSET_BITS
            left = live[block] - 1
            live[block] = left
            if left == 0 and block != wblock:
                self._free_block(block)
            removed += 1
            t = page.times[slot]
            if t > newest:
                newest = t
        while len(unseen) > self.limit:
            unseen.popitem(last=False)
        if not removed:
            return None
        self.acked += removed
        self._advance()
        return newest

    def oldest_at(self) -> float | None:
        """When the oldest event held arrived (None: none held)."""
        if not self.index:
            return None
        return self._pages[(self._head >> PAGE_BITS) - self._page0].times[self._head & PAGE_MASK]

    # -- in arrival order ---------------------------------------------------------------

    def take_older_than(self, horizon: float) -> list[tuple[bytes, bytes]]:
        """Remove and return, in arrival order, every held event that arrived before
        ``horizon``."""
        out: list[tuple[bytes, bytes]] = []
        self._take_front(horizon, out)
        return out

    def prune(self, now: float, *, keep_unseen: bool = False) -> None:
        """Drop held events older than ``retention`` and expired unseen keys (those kept
        with ``keep_unseen``: the spool's replay still needs them)."""
        self.dropped_retention += self._take_front(now - self.retention, None)
        unseen = self.unseen
        while not keep_unseen and unseen and next(iter(unseen.values())) <= now:
            unseen.popitem(last=False)
        self._shrink_index()

    def drain(self, now: float) -> list[tuple[bytes, bytes]]:
        """Everything still held and within retention, in arrival order; empties it.

        Each block is unmapped as soon as its events are copied out, so a takeover with
        a full buffer does not hold the blocks and their copies at once.
        """
        self.prune(now)
        out: list[tuple[bytes, bytes]] = []
        self._take_front(INF, out)
        return out

    # -- internals ------------------------------------------------------------------------

    def _write_live(self) -> int:
        """Live events in the write block: its count in ``_live`` lacks those written
        since it became the write block (one per sequence number: no per-event update)."""
        return self._live[self._wblock] + self._seq - self._wfirst

    def _new_block(self, n: int) -> int:
        """Make room for ``n`` bytes in a write block; returns the offset to write at.

        Called by ``hold`` before it takes its sequence number.
        """
        wblock = self._wblock
        if wblock in self._live:
            if self._write_live() == 0 and n <= self._wsize:
                self._woff = 0  # the write block emptied: reuse it from its start
                return 0
            self._live[wblock] += self._seq - self._wfirst
            if self._live[wblock] == 0:
                self._free_block(wblock)
        size = max(self.block_size, n)
        wblock += 1
        mm = self._spare.pop() if size == self.block_size and self._spare else None
        if mm is None:
            mm = mmap.mmap(-1, size, flags=_MAP_FLAGS)
        self._blocks[wblock] = mm
        self._live[wblock] = 0
        self.footprint += size
        self._wblock, self._mm, self._wsize, self._wfirst = wblock, mm, size, self._seq
        self._wbase = wblock << _OFFSET_BITS
        self._woff = 0
        return 0

    def _free_block(self, block: int) -> None:
        mm = self._blocks.pop(block)
        del self._live[block]
        self.footprint -= len(mm)
        if block == self._wblock:
            self._mm = None
            self._woff, self._wsize = 0, -1  # the next hold maps a new block
        if len(mm) == self.block_size and len(self._spare) < SPARE_BLOCKS:
            self._spare.append(mm)  # already faulted in: the next block costs no page faults
        else:
            mm.close()

    def _remove(self, seq: int) -> float:
        """Forget the event at ``seq`` (its key is out of ``index`` already, or is being
        replaced); returns its arrival time."""
        page = self._pages[(seq >> PAGE_BITS) - self._page0]
        slot = seq & PAGE_MASK
        page.keys[slot] = None
        self.bytes -= page.sizes[slot]
        block = page.locs[slot] >> _OFFSET_BITS
        live = self._live[block] - 1
        self._live[block] = live
        if live == 0 and block != self._wblock:
            self._free_block(block)
        return page.times[slot]

    def _advance(self) -> None:
        """Move the head past removed slots; drop the pages behind it."""
        self._take_front(-INF, None)

    def _take_front(
        self, horizon: float, out: list[tuple[bytes, bytes]] | None, most: float = INF
    ) -> int:
        """Remove up to ``most`` of the oldest events while they arrived before
        ``horizon`` (appended to ``out`` unless None), then move the head to the oldest
        event left. Returns how many were removed.

        One loop over the pages rather than a call per event: a takeover drains up to
        BufferSize events at once.
        """
        index, blocks, live, pages = self.index, self._blocks, self._live, self._pages
        head, end, wblock = self._head, self._seq, self._wblock
        taken = 0
        while head < end:
            page = pages[0]
            keys, times, locs, sizes = page.keys, page.times, page.locs, page.sizes
            slot, stop = head & PAGE_MASK, min(PAGE, end - (head & ~PAGE_MASK))
            while slot < stop:
                key = keys[slot]
                if key is not None:
                    if times[slot] >= horizon or taken >= most:
                        break
                    loc, n = locs[slot], sizes[slot]
                    block = loc >> _OFFSET_BITS
                    if out is not None:
                        off = loc & _OFFSET_MASK
                        out.append((key, blocks[block][off : off + n]))
                    keys[slot] = None
                    del index[key]
                    self.bytes -= n
                    left = live[block] - 1
                    live[block] = left
                    if left == 0 and block != wblock:
                        self._free_block(block)
                    taken += 1
                slot += 1
            head = (head & ~PAGE_MASK) + slot
            if slot < PAGE:
                break  # a live event stopped us, or the end of the last, partly filled page
            del pages[0]
            self._page0 += 1
        self._head = head
        if not index:
            self._reset()
        return taken

    def _reset(self) -> None:
        """Nothing is held: release the pages, the index table and a large write block."""
        self._pages.clear()
        # The next event starts a fresh page, so page numbers stay seq >> PAGE_BITS.
        start = (self._seq + PAGE_MASK) & ~PAGE_MASK
        self._page0 = start >> PAGE_BITS
        if len(self.index) == 0 and sys.getsizeof(self.index) > _SHRINK_MIN:
            self.index = {}
        if self._wblock in self._live:
            self._live[self._wblock] += self._seq - self._wfirst  # 0: nothing is held
            self._woff = 0
        self._seq = self._head = self._wfirst = start  # (after the fold above)
        if self._wsize > self.block_size:
            self._free_block(self._wblock)

    def _evict_oldest(self) -> None:
        self._take_front(INF, None, 1)

    def _shrink_index(self) -> None:
        """A dict keeps its table after deletions: rebuild one that is mostly empty."""
        index = self.index
        size = sys.getsizeof(index)
        if size > _SHRINK_MIN and size > 800 * (len(index) + 1):
            self.index = dict(index)
