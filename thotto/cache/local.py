"""The in-process tier (L1): a size-bounded LRU map with per-entry expiry and tags.

Plain data structure, no I/O and no locking: everything runs in the Trio thread. Times are
``trio.current_time()`` values. Each entry has three instants:

- ``fresh_until``: served as a hit until then;
- ``stale_until``: after ``fresh_until`` and before this, ``get_or_load`` may serve it while one
  background load refreshes it (stale-while-revalidate);
- ``keep_until``: kept until then so a failing loader can be answered with it
  (serve-stale-on-error); then it is dropped (eviction reason ``ttl``).

Entries beyond ``max_entries`` or ``max_bytes`` are dropped least recently used first (``lru``);
deletes and invalidations count as ``manual``.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import trio

# Rough per-entry overhead (the entry object, dict slot, heap item), for the byte estimate.
ENTRY_OVERHEAD = 200


class Entry:
    """One cached value and its lifetimes."""

    __slots__ = ("value", "fresh_until", "stale_until", "keep_until", "tags", "size", "seq")

    def __init__(self, value: Any, fresh_until: float, stale_until: float, keep_until: float,
                 tags: tuple[str, ...], size: int, seq: int):
        self.value = value
        self.fresh_until = fresh_until
        self.stale_until = stale_until
        self.keep_until = keep_until
        self.tags = tags
        self.size = size
        self.seq = seq


class Evictions:
    """Counts of entries dropped, by reason."""

    __slots__ = ("lru", "ttl", "manual")

    def __init__(self) -> None:
        self.lru = self.ttl = self.manual = 0


class LocalCache:
    """L1: an LRU of :class:`Entry` by key, bounded by ``max_entries`` and ``max_bytes``."""

    def __init__(self, max_entries: int = 10_000, max_bytes: int | None = None):
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.data: OrderedDict[str, Entry] = OrderedDict()
        self.tags: dict[str, set[str]] = {}
        self.bytes = 0
        self.evictions = Evictions()
        self.hits = 0
        self.misses = 0
        # (keep_until, seq, key): lazily cleaned expiry order (an overwritten entry leaves a
        # stale item, recognised by its seq).
        self._expiry: list[tuple[float, int, str]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self.data)

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, default: Any = None) -> Any:
        """The fresh value of ``key``, or ``default``. Counts a hit or a miss. The hot path."""
        entry = self.data.get(key)
        if entry is not None and entry.fresh_until > trio.current_time():
            self.data.move_to_end(key)
            self.hits += 1
            return entry.value
        self.misses += 1
        return default

    def entry(self, key: str, now: float) -> Entry | None:
        """The entry for ``key`` if it is still kept (fresh or stale), without counting; an
        entry past ``keep_until`` is dropped here."""
        entry = self.data.get(key)
        if entry is None:
            return None
        if entry.keep_until <= now:
            self._drop(key, entry)
            self.evictions.ttl += 1
            return None
        return entry

    def put(self, key: str, value: Any, *, fresh_until: float, stale_until: float | None = None,
            keep_until: float | None = None, tags: Iterable[str] = (), size: int = 0) -> None:
        """Store ``value`` (replacing any entry), most recently used; evict past the bounds."""
        if stale_until is None or stale_until < fresh_until:
            stale_until = fresh_until
        if keep_until is None or keep_until < stale_until:
            keep_until = stale_until
        data = self.data
        old = data.get(key)
        if old is not None:
            self._drop(key, old)
        self._seq = seq = self._seq + 1
        tags = tuple(tags) if tags else ()
        size += len(key) + ENTRY_OVERHEAD
        data[key] = Entry(value, fresh_until, stale_until, keep_until, tags, size, seq)
        self.bytes += size
        for tag in tags:
            self.tags.setdefault(tag, set()).add(key)
        expiry = self._expiry
        heapq.heappush(expiry, (keep_until, seq, key))
        if len(expiry) > 2 * len(data) + 1024:
            self._rebuild_expiry()
        if len(data) > self.max_entries or (self.max_bytes is not None and self.bytes > self.max_bytes):
            self._enforce_bounds()

    def remove(self, key: str) -> bool:
        """Drop ``key`` (a manual eviction). True if it was there."""
        entry = self.data.get(key)
        if entry is None:
            return False
        self._drop(key, entry)
        self.evictions.manual += 1
        return True

    def remove_tag(self, tag: str) -> int:
        """Drop every entry tagged ``tag``; returns how many."""
        keys = self.tags.pop(tag, None)
        if not keys:
            return 0
        count = 0
        for key in list(keys):
            count += self.remove(key)
        return count

    def clear(self) -> int:
        """Drop everything (manual evictions); returns how many."""
        count = len(self.data)
        self.data.clear()
        self.tags.clear()
        self._expiry.clear()
        self.bytes = 0
        self.evictions.manual += count
        return count

    def expire(self, now: float, limit: int = 10_000) -> int:
        """Drop up to ``limit`` entries whose ``keep_until`` has passed; returns how many."""
        count = 0
        expiry = self._expiry
        while expiry and expiry[0][0] <= now and count < limit:
            _, seq, key = heapq.heappop(expiry)
            entry = self.data.get(key)
            if entry is not None and entry.seq == seq:
                self._drop(key, entry)
                self.evictions.ttl += 1
                count += 1
        return count

    def _drop(self, key: str, entry: Entry) -> None:
        del self.data[key]
        self._forget(key, entry)

    def _forget(self, key: str, entry: Entry) -> None:
        """Account for ``entry`` having left ``data``."""
        self.bytes -= entry.size
        for tag in entry.tags:
            keys = self.tags.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.tags[tag]

    def _enforce_bounds(self) -> None:
        data = self.data
        while len(data) > self.max_entries or (self.max_bytes is not None and self.bytes > self.max_bytes
                                                and len(data) > 1):
            key, entry = data.popitem(last=False)
            self._forget(key, entry)
            self.evictions.lru += 1

    def _rebuild_expiry(self) -> None:
        self._expiry = [(entry.keep_until, entry.seq, key) for key, entry in self.data.items()]
        heapq.heapify(self._expiry)
