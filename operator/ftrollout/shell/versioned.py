"""A dict and a set that count their changes.

A reader that derives something from several of them (the log scanner's list of pods to read)
keeps what it derived while every version is the one it saw: at 1000 idle rollouts, walking
every rollout's pods again every 15 s to find nothing new was a quarter of the operator's CPU.
Every mutating method moves `version`, so no writer can forget to say it changed something.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")
T = TypeVar("T")


class VersionedDict(dict[K, V]):
    __slots__ = ("version",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.version = 0

    def __setitem__(self, key: K, value: V) -> None:
        # The same value again is no change (a reconcile sets its rollout's entry every time).
        if key not in self or self[key] != value:
            self.version += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: K) -> None:
        super().__delitem__(key)
        self.version += 1

    def pop(self, key: K, *default: Any) -> Any:
        self.version += 1
        return super().pop(key, *default)

    def popitem(self) -> tuple[K, V]:
        self.version += 1
        return super().popitem()

    def clear(self) -> None:
        self.version += 1
        super().clear()

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.version += 1
        super().update(*args, **kwargs)

    def setdefault(self, key: K, default: Any = None) -> Any:
        if key not in self:
            self.version += 1
        return super().setdefault(key, default)

    def __ior__(self, other: Any) -> VersionedDict[K, V]:  # type: ignore[override,misc]
        self.version += 1
        super().__ior__(other)
        return self


class VersionedSet(set[T]):
    __slots__ = ("version",)

    def __init__(self, items: Iterable[T] = ()) -> None:
        super().__init__(items)
        self.version = 0

    def add(self, item: T) -> None:
        if item not in self:
            self.version += 1
            super().add(item)

    def discard(self, item: object) -> None:
        if item in self:
            self.version += 1
            super().discard(item)

    def remove(self, item: T) -> None:
        super().remove(item)
        self.version += 1

    def pop(self) -> T:
        self.version += 1
        return super().pop()

    def clear(self) -> None:
        self.version += 1
        super().clear()

    def update(self, *others: Iterable[Any]) -> None:
        self.version += 1
        super().update(*others)

    def difference_update(self, *others: Iterable[Any]) -> None:
        self.version += 1
        super().difference_update(*others)

    def intersection_update(self, *others: Iterable[Any]) -> None:
        self.version += 1
        super().intersection_update(*others)

    def symmetric_difference_update(self, other: Iterable[T]) -> None:
        self.version += 1
        super().symmetric_difference_update(other)

    def __ior__(self, other: Any) -> VersionedSet[T]:  # type: ignore[override,misc]
        self.version += 1
        super().__ior__(other)
        return self

    def __iand__(self, other: Any) -> VersionedSet[T]:  # type: ignore[misc]
        self.version += 1
        super().__iand__(other)
        return self

    def __isub__(self, other: Any) -> VersionedSet[T]:  # type: ignore[misc]
        self.version += 1
        super().__isub__(other)
        return self

    def __ixor__(self, other: Any) -> VersionedSet[T]:  # type: ignore[override,misc]
        self.version += 1
        super().__ixor__(other)
        return self
