"""Per-process objects that are slow to build (a GX context, the Feast store, the champion, a
Kafka producer), built once per key and shared by the threads of the process."""

from __future__ import annotations

import threading
from collections.abc import Callable

_CACHE: dict[tuple, object] = {}
_CACHE_LOCK = threading.Lock()


def cached(key: tuple, build: Callable[[], object]):
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


def forget(key: tuple) -> None:
    """Drop one object (a producer after a failed flush), so the next call builds a new one."""
    with _CACHE_LOCK:
        _CACHE.pop(key, None)
