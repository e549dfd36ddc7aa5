"""Readable one-line summaries of events, for people (CLI, console)."""

from __future__ import annotations

from typing import Any

SUMMARY_FIELDS = ("summary", "title", "message", "description", "status", "reason")


def data_summary(event: dict[str, Any], width: int = 60) -> str:
    """A short hint of what the data says (annotations.summary, title, status...)."""
    data = event.get("data")
    if isinstance(data, dict):
        # Alertmanager annotations, then a todo audit event's item, then the data itself.
        for holder in (data.get("annotations"), data.get("item"), data):
            if isinstance(holder, dict):
                for key in SUMMARY_FIELDS:
                    value = holder.get(key)
                    if isinstance(value, str | int | float) and not isinstance(value, bool):
                        return _clip(str(value), width)
        return _clip(", ".join(f"{k}={v}" for k, v in data.items()
                               if isinstance(v, str | int | float)), width)
    if isinstance(data, str):
        return _clip(data.replace("\n", " "), width)
    return ""


def one_line(event: dict[str, Any]) -> str:
    time = str(event.get("time", ""))[:19].replace("T", " ")
    parts = [time, str(event.get("type")), str(event.get("source"))]
    if event.get("subject"):
        parts.append(str(event["subject"]))
    hint = data_summary(event)
    line = "  ".join(p for p in parts if p)
    return f"{line}  — {hint}" if hint else line


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
