"""Prompt lookup's guesses and how the drafting adapts (pure logic; the engine tests run
speculative decoding on the real model)."""

from __future__ import annotations

from llmtui.backends.drafts import Adaptive, Lookup


def test_lookup_guesses_what_followed_a_3_or_4_gram() -> None:
    look = Lookup([1, 2, 3, 4, 5, 6, 7, 9, 1, 2, 3])
    assert look.guess(3) == [4, 5, 6]
    two = Lookup([1, 2, 8, 8, 8, 1, 2])  # a 2-gram alone guesses nothing
    assert two.guess(3) == []
    look.append(4)
    assert look.guess(2) == [5, 6]  # the 4-gram (1, 2, 3, 4)


def test_draft_length_follows_what_was_kept() -> None:
    a = Adaptive(k=8)
    assert a.next_k() == 8
    a.record(8, 2)  # some refused: guess one more than was kept
    assert a.next_k() == 3
    a.record(3, 3)  # all kept: double, up to k
    assert a.next_k() == 6
    a.record(6, 6)
    assert a.next_k() == 8
    for _ in range(3):  # three steps with nothing kept: a pause
        a.record(1, 0)
    assert not a.allowed()
