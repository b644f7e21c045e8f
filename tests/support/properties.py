"""How many examples a property test runs: all of them in the full suite, a few on the fast path.

`python -m pytest -m "not slow"` (the fast path) selects the hypothesis profile "fast" (see
tests/conftest.py): properties with the default settings run FAST_EXAMPLES examples, and those that ask
for a number through `examples(n)` run at most FAST_EXAMPLES. The full suite runs every property in full.
"""

from __future__ import annotations

from hypothesis import settings

FAST_EXAMPLES = 25
settings.register_profile("fast", max_examples=FAST_EXAMPLES)

_fast = False


def use_fast_path() -> None:
    """Run properties with few examples (called by tests/conftest.py for `-m "not slow"`)."""
    global _fast  # one switch for the session, set before any test module is imported
    _fast = True
    settings.load_profile("fast")


def examples(n: int) -> int:
    """`n`, or at most FAST_EXAMPLES on the fast path."""
    return min(n, FAST_EXAMPLES) if _fast else n
