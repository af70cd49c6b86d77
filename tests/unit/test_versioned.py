"""Versioned containers (shell.versioned): every change moves the version, nothing else does."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ftrollout.shell.versioned import VersionedDict, VersionedSet


def _set_changes() -> list[Callable[[VersionedSet[int]], Any]]:
    def ior(s: VersionedSet[int]) -> None:
        s |= {9}

    def iand(s: VersionedSet[int]) -> None:
        s &= {1}

    def isub(s: VersionedSet[int]) -> None:
        s -= {1}

    def ixor(s: VersionedSet[int]) -> None:
        s ^= {1, 9}

    return [
        lambda s: s.add(9),
        lambda s: s.discard(1),
        lambda s: s.remove(1),
        lambda s: s.pop(),
        lambda s: s.clear(),
        lambda s: s.update({9}),
        lambda s: s.difference_update({1}),
        lambda s: s.intersection_update({1}),
        lambda s: s.symmetric_difference_update({9}),
        ior,
        iand,
        isub,
        ixor,
    ]


@pytest.mark.parametrize("change", _set_changes())
def test_every_change_of_a_set_moves_its_version(change: Callable[[Any], Any]) -> None:
    s = VersionedSet([1, 2])
    before = set(s)
    change(s)
    assert set(s) != before
    assert s.version == 1
    assert isinstance(s, VersionedSet)


def test_adding_what_a_set_has_or_discarding_what_it_lacks_is_no_change() -> None:
    s = VersionedSet([1])
    s.add(1)
    s.discard(5)
    assert s.version == 0
    assert 1 in s
    assert len(s) == 1


def _dict_changes() -> list[Callable[[VersionedDict[str, int]], Any]]:
    def setitem(d: VersionedDict[str, int]) -> None:
        d["a"] = 5

    def new(d: VersionedDict[str, int]) -> None:
        d["z"] = 1

    def delitem(d: VersionedDict[str, int]) -> None:
        del d["a"]

    def ior(d: VersionedDict[str, int]) -> None:
        d |= {"z": 1}

    return [
        setitem,
        new,
        delitem,
        ior,
        lambda d: d.pop("a"),
        lambda d: d.popitem(),
        lambda d: d.clear(),
        lambda d: d.update({"z": 1}),
        lambda d: d.setdefault("z", 1),
    ]


@pytest.mark.parametrize("change", _dict_changes())
def test_every_change_of_a_dict_moves_its_version(change: Callable[[Any], Any]) -> None:
    d = VersionedDict({"a": 1, "b": 2})
    before = dict(d)
    change(d)
    assert dict(d) != before
    assert d.version == 1


def test_the_same_value_again_or_a_lookup_is_no_change() -> None:
    d = VersionedDict({"a": 1})
    d["a"] = 1
    d.setdefault("a", 7)
    d.get("zz")
    assert d.version == 0
    assert d == {"a": 1}
