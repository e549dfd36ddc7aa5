"""A model that tells its observers when it changed; it holds no widget code."""

from __future__ import annotations

from collections.abc import Callable

Observer = Callable[[], None]


class Observable:
    """Call `observe(callback)` to hear of changes; it returns the way to stop hearing."""

    def __init__(self) -> None:
        self._observers: list[Observer] = []

    def observe(self, callback: Observer) -> Callable[[], None]:
        self._observers.append(callback)

        def forget() -> None:
            if callback in self._observers:
                self._observers.remove(callback)

        return forget

    def changed(self) -> None:
        """Tell every observer (synchronously, on the app's loop)."""
        for callback in list(self._observers):
            callback()
