"""The checker itself, on tiny hand-made histories whose verdict is known."""

from __future__ import annotations

import pytest
from tests.support.linearizability import Op, check


def read(p: int, t0: float, t1: float | None, result: tuple[str, int] | None, key: str = "k") -> Op:
    return Op(p, key, "read", t0, t1, result=result)


def cas(p: int, t0: float, t1: float | None, value: str, expected: int, ok: bool = True) -> Op:
    return Op(p, "k", "cas", t0, t1, value=value, expected=expected, result=ok)


def write(p: int, t0: float, t1: float | None, value: str, key: str = "k") -> Op:
    return Op(p, key, "write", t0, t1, value=value, result=True)


def test_sequential_history_is_linearizable() -> None:
    history = [
        read(1, 0, 1, None),
        cas(1, 2, 3, "a", 0),
        read(2, 4, 5, ("a", 10)),
        cas(2, 6, 7, "b", 10),
        cas(1, 8, 9, "c", 10, ok=False),
        read(1, 10, 11, ("b", 12)),
    ]
    assert check(history)


def test_concurrent_ops_may_take_effect_in_either_order() -> None:
    # the read overlaps the write, so seeing the old or the new value is fine
    history = [
        cas(1, 0, 1, "a", 0),
        read(3, 1.5, 1.6, ("a", 5)),
        write(1, 2, 6, "b"),
        read(2, 3, 4, ("b", 7)),
        read(3, 3.5, 5, ("b", 7)),
    ]
    assert check(history)


def test_stale_read_after_a_completed_write_is_not_linearizable() -> None:
    history = [
        cas(1, 0, 1, "a", 0),
        read(2, 1.1, 1.2, ("a", 5)),
        cas(1, 2, 3, "b", 5),
        read(2, 4, 5, ("a", 5)),
    ]
    verdict = check(history)
    assert not verdict and verdict.key == "k"


def test_two_cas_on_the_same_index_cannot_both_succeed() -> None:
    history = [
        cas(1, 0, 1, "a", 0),
        read(1, 1.1, 1.2, ("a", 5)),
        cas(1, 2, 4, "b", 5),
        cas(2, 2.5, 3.5, "c", 5),
    ]
    assert not check(history)


def test_a_failed_cas_needs_a_reason_to_fail() -> None:
    history = [cas(1, 0, 1, "a", 0), read(1, 2, 3, ("a", 5)), cas(2, 4, 5, "b", 5, ok=False)]
    assert not check(history)


def test_an_unknown_write_may_have_happened_later() -> None:
    # the timed-out write is seen long after it was sent: allowed, as Knossos allows
    history = [
        cas(1, 0, 1, "a", 0),
        read(1, 1.1, 1.2, ("a", 5)),
        cas(2, 2, None, "b", 5),
        read(1, 3, 4, ("a", 5)),
        read(1, 9, 10, ("b", 8)),
    ]
    assert check(history)


def test_an_unknown_write_may_never_have_happened() -> None:
    history = [cas(1, 0, 1, "a", 0), cas(2, 2, None, "b", 99), read(1, 3, 4, ("a", 5))]
    assert check(history)


def test_an_unknown_write_cannot_undo_itself() -> None:
    history = [
        cas(1, 0, 1, "a", 0),
        read(1, 1.1, 1.2, ("a", 5)),
        cas(2, 2, None, "b", 5),
        read(1, 3, 4, ("b", 8)),
        read(1, 5, 6, ("a", 5)),
    ]
    assert not check(history)


def test_a_value_read_with_two_indexes_is_a_violation() -> None:
    history = [write(1, 0, 1, "a"), read(1, 2, 3, ("a", 5)), read(2, 4, 5, ("a", 6))]
    verdict = check(history)
    assert not verdict and "indexes" in verdict.reason


def test_keys_are_checked_independently() -> None:
    good_a = [write(1, 0, 1, "x", key="a"), read(2, 2, 3, ("x", 4), key="a")]
    bad_b = [
        write(1, 0, 1, "y", key="b"),
        read(2, 2, 3, ("y", 5), key="b"),
        write(1, 4, 5, "z", key="b"),
        read(2, 6, 7, ("y", 5), key="b"),
    ]
    assert check(good_a)
    verdict = check([*good_a, *bad_b])
    assert not verdict and verdict.key == "b"


def test_reads_of_an_absent_key() -> None:
    assert check([read(1, 0, 1, None), write(2, 0.5, 2, "a"), read(1, 3, 4, ("a", 2))])
    assert not check([write(2, 0, 1, "a"), read(1, 2, 3, None)])


def test_many_concurrent_unknown_writes_stay_tractable() -> None:
    history = [cas(0, 0, 1, "v0", 0), read(0, 1.1, 1.2, ("v0", 1))]
    history += [cas(p, 2, None, f"u{p}", 1) for p in range(1, 15)]
    history += [read(0, 3, 4, ("u7", 30)), read(0, 5, 6, ("u7", 30))]
    assert check(history)


def test_written_values_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        check([write(1, 0, 1, "a"), write(2, 2, 3, "a")])
