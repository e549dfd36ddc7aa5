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
        self._marked = False
        """A savepoint is open (a mark was taken and not settled): changes are journaled.
        Outside savepoints nothing can be undone but the whole transaction, so no
        journal is kept: each entry kept an item's previous version alive until COMMIT,
        and the collector walked them all (a third of its time on routed ingest)."""

    def put(self, mapping: dict[Any, Any], key: Any, value: Any) -> None:
        """Set (or with MISSING, remove) a key of one of this object's mappings, undoably."""
        if self._marked:
            self._journal.append((mapping, key, mapping.get(key, MISSING)))
        if value is MISSING:
            mapping.pop(key, None)
        else:
            mapping[key] = value

    def attached(self, item: TodoItem, seq: int) -> bool:
        """Event `seq` attached to `item`, which kept the state it has here (so which
        item is active for its key is unchanged): its event row and its save gathered,
        to be written once at the end. False, gathering nothing, when the item is not
        known here in that state."""
        todo_id = item.id
        before = self.items.get(todo_id)
        if before is None or before.state is not item.state:
            return False
        self.events.append((todo_id, seq))
        # `put` spelled out: this runs for every event a queue takes.
        if self._marked:
            self._journal.append((self.saves, todo_id, self.saves.get(todo_id, MISSING)))
            self._journal.append((self.items, todo_id, before))
        self.saves[todo_id] = item
        self.items[todo_id] = item
        return True

    def forget_saves(self) -> None:
        for todo_id in list(self.saves):
            self.put(self.saves, todo_id, MISSING)

    def mark(self) -> tuple[int, int, int]:
        self._marked = True
        return len(self._journal), len(self.events), len(self.history)

    def settle(self) -> None:
        """No savepoint is open any more: no mark can be undone to (its transaction
        calls this when its outermost savepoint ends)."""
        self._marked = False
        self._journal.clear()

    def undo(self, mark: tuple[int, int, int] | None) -> None:
        journal, events, history = mark or (0, 0, 0)
        for mapping, key, previous in reversed(self._journal[journal:]):
            if previous is MISSING:
                mapping.pop(key, None)
            else:
                mapping[key] = previous
        del self._journal[journal:], self.events[events:], self.history[history:]
