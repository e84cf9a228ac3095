"""An undo journal for in-memory state changed by a plan that may still fail to commit.

The replica changes its maps while it builds a plan (so later events of the same batch see earlier
ones), records how to undo each change here, and either forgets the journal (the store committed)
or rolls it back (the store failed): the in-memory state then matches the store again.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, MutableMapping, MutableSet
from typing import Any, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
T = TypeVar("T", bound=Hashable)

_MISSING: Any = object()


class Journal:
    __slots__ = ("_undo", "active")

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []
        self.active = False

    def begin(self) -> None:
        self._undo.clear()
        self.active = True

    def forget(self) -> None:
        self._undo.clear()
        self.active = False

    def rollback(self) -> None:
        while self._undo:
            self._undo.pop()()
        self.active = False

    def set(self, mapping: MutableMapping[K, V], key: K, value: V) -> None:
        if self.active:
            old = mapping.get(key, _MISSING)
            self._undo.append(lambda: _restore(mapping, key, old))
        mapping[key] = value

    def delete(self, mapping: MutableMapping[K, V], key: K) -> None:
        if key not in mapping:
            return
        if self.active:
            old = mapping[key]
            self._undo.append(lambda: _restore(mapping, key, old))
        del mapping[key]

    def add(self, members: MutableSet[T], item: T) -> None:
        if item in members:
            return
        if self.active:
            self._undo.append(lambda: members.discard(item))
        members.add(item)

    def discard(self, members: MutableSet[T], item: T) -> None:
        if item not in members:
            return
        if self.active:
            self._undo.append(lambda: members.add(item))
        members.discard(item)

    def call(self, undo: Callable[[], None]) -> None:
        """Register an arbitrary undo step (for state that is not a map or a set)."""
        if self.active:
            self._undo.append(undo)


def _restore(mapping: MutableMapping[K, V], key: K, old: Any) -> None:
    if old is _MISSING:
        mapping.pop(key, None)
    else:
        mapping[key] = old
