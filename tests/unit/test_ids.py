"""Minion ids taken from event tags and data: one plain id, never a target expression."""

import pytest
from salt.exceptions import SaltInvocationError

import outpost_ids


@pytest.mark.parametrize("good", ["client-1", "shop-01.example.com", "A_b.c-9", "x" * 63])
def test_plain_minion_ids_are_accepted(good):
    assert outpost_ids.check_minion_id(good) == good


@pytest.mark.parametrize(
    "bad",
    [
        "*",
        "client-*",
        "client-?",
        "client-[12]",
        "a,b",
        "E@.*",
        "G@os:Windows",
        "a b",
        "-x",
        ".x",
        "",
        "client-1\n",
        "x" * 64,
        None,
        7,
        ["client-1"],
    ],
)
def test_target_expressions_and_odd_values_are_refused(bad):
    """A glob, list or compound target from an event tag reached LocalClient as a target."""
    assert not outpost_ids.is_minion_id(bad)
    with pytest.raises(SaltInvocationError, match="^client: .* is not one plain minion id"):
        outpost_ids.check_minion_id(bad)
