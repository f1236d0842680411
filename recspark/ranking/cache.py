"""A single-entry cache: what a Python worker keeps between the Spark tasks of one job.

Spark reuses a Python worker process for many tasks (`spark.python.worker.reuse`, on by
default), so a model a task has loaded can serve the next task of the same job instead of being
loaded again. One entry, not more: a model can be catalog-sized squared (EASE, 1.6 GB at 20k
items), and a worker scores one model at a time; asking for another key drops the old value
before the new one is made.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class SingleEntryCache(Generic[V]):
    """The value for one key at a time."""

    def __init__(self) -> None:
        self._entry: tuple[Hashable, V] | None = None

    def get(self, key: Hashable, make: Callable[[], V]) -> V:
        """The value kept for `key`, else `make()` kept in place of whatever was there."""
        if self._entry is None or self._entry[0] != key:
            self._entry = None  # free the old value before making the new one
            self._entry = (key, make())
        return self._entry[1]

    def clear(self) -> None:
        self._entry = None

    def __contains__(self, key: Hashable) -> bool:
        return self._entry is not None and self._entry[0] == key


__all__ = ["SingleEntryCache"]
