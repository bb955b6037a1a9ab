"""How many rows a statement changed: the answer every compare-and-set in the store turns on.

``Session.execute`` is typed to return a plain ``Result`` whatever the statement, yet only the ``CursorResult`` an
UPDATE, DELETE or INSERT gives carries ``rowcount``. Saying so here once, with a check, beats a cast at every
compare-and-set: a statement that returns rows passed in by mistake fails loudly instead of counting wrong.
"""

from __future__ import annotations

from sqlalchemy.engine import CursorResult


def changed(result: object) -> int:
    """The row count of an executed UPDATE, DELETE or INSERT."""
    if not isinstance(result, CursorResult):
        raise TypeError(f"expected the result of an UPDATE, DELETE or INSERT, got {type(result).__name__}")
    return result.rowcount
