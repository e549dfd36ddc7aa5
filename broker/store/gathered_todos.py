"""What a transaction's gathered todo writes keep on every backend: the rows that wait
for the transaction's end, the items it has seen, and a journal so that a step rolled
back to its savepoint forgets what it gathered."""

from __future__ import annotations

from typing import Any, Final

from broker.todos.model import TodoItem

MISSING: Final = object()
"""A mapping's value that is not there (`put` with it removes the key)."""


class GatheredTodos:
    def __init__(self) -> None:
        self.items: dict[int, TodoItem] = {}
        """Unresolved items as they now are (written or gathered)."""
        self.saves: dict[int, TodoItem] = {}
        self.events: list[tuple[int, int]] = []
        self.history: list[tuple[Any, ...]] = []
        self._journal: list[tuple[dict[Any, Any], Any, Any]] = []

    def put(self, mapping: dict[Any, Any], key: Any, value: Any) -> None:
        """Set (or with MISSING, remove) a key of one of this object's mappings, undoably."""
        self._journal.append((mapping, key, mapping.get(key, MISSING)))
        if value is MISSING:
            mapping.pop(key, None)
        else:
            mapping[key] = value

    def forget_saves(self) -> None:
        for todo_id in list(self.saves):
            self.put(self.saves, todo_id, MISSING)

    def mark(self) -> tuple[int, int, int]:
        return len(self._journal), len(self.events), len(self.history)

    def undo(self, mark: tuple[int, int, int] | None) -> None:
        journal, events, history = mark or (0, 0, 0)
        for mapping, key, previous in reversed(self._journal[journal:]):
            if previous is MISSING:
                mapping.pop(key, None)
            else:
                mapping[key] = previous
        del self._journal[journal:], self.events[events:], self.history[history:]
