"""A scroll view drawn line by line whose component styles are read once per pass."""

from __future__ import annotations

from rich.style import Style
from textual.geometry import Region
from textual.scroll_view import ScrollView
from textual.strip import Strip


class PassStyledView(ScrollView):
    """Looks its component styles up once per render pass, not once per line: each
    lookup walks the widget's ancestors. `_styles_key` changes whenever a style does, so
    subclasses can key their cached lines on it."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._styles: dict[str, Style] = {}
        self._base = Style()
        self._styles_key: tuple[Style, ...] = ()

    def render_lines(self, crop: Region) -> list[Strip]:
        self._take_styles()
        return super().render_lines(crop)

    def _take_styles(self) -> None:
        self._styles = {name: self.get_component_rich_style(name)
                        for name in sorted(self.COMPONENT_CLASSES)}
        self._base = self.rich_style
        self._styles_key = (self._base, *self._styles.values())
