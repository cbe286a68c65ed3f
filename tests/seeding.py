"""One seed replays every random test: COSMOS3_TEST_SEED.

A run draws one session seed (or takes COSMOS3_TEST_SEED) and every random choice of the tests derives from it and
from where it is made: `seed_for(*keys)` for a named use (a session fixture's checkpoint, say), `fresh_seed()` inside
a test (the test's node id and how many seeds it took before). So

    COSMOS3_TEST_SEED=123 pytest tests/x.py::test_y

draws what test_y drew in any run with that session seed, whether it ran alone or among the whole suite. A failing
test's report names the session seed (conftest.py's report hook)."""

from __future__ import annotations

import hashlib
import os
import random
from collections import Counter

ENV = "COSMOS3_TEST_SEED"


def _session_seed() -> int:
    value = os.environ.get(ENV, "").strip()
    if value:
        try:
            return int(value, 0)
        except ValueError:
            raise SystemExit(f"{ENV}={value!r}: expected an integer") from None
    return random.SystemRandom().randrange(2**31)


SESSION_SEED = _session_seed()
_taken: Counter = Counter()


def seed_for(*keys) -> int:
    """A seed in [0, 2**31) that depends on the session seed and `keys` only."""
    digest = hashlib.sha256(repr((SESSION_SEED, *map(str, keys))).encode()).digest()
    return int.from_bytes(digest[:8], "big") % 2**31


def current_test() -> str:
    """The running test's node id ("" outside a test)."""
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]


def fresh_seed(label: str = "") -> int:
    """A new seed for the running test (the n-th call of a test gets the same seed in every run with the same
    session seed); `label` names a use shared across tests (a session fixture's) instead."""
    where = label or current_test()
    n = _taken[where]
    _taken[where] += 1
    return seed_for(where, n)
