"""Todo items as the on-call engineer reads them: urgency, sort orders, key fields."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from broker.summary import SUMMARY_FIELDS

Item = dict[str, Any]

PRIORITY_RANK = {
    "critical": 0, "page": 0, "p1": 0, "sev1": 0, "emergency": 0,
    "high": 1, "error": 1, "major": 1, "p2": 1, "sev2": 1,
    "warning": 2, "medium": 2, "minor": 2, "p3": 2, "sev3": 2,
    "low": 3, "p4": 3, "info": 4, "none": 5,
}
"""Smaller is more urgent; a priority we do not know sorts after `low`, none last."""
URGENT = frozenset({"critical", "high"})
"""Priorities that announce a new item (toast, bell) the moment it opens."""
SORTS = ("priority", "age", "count", "owner")
"""Sort keys of the item list (k9s style: shift+P, A, C, O)."""
LABELS_SHOWN = 4
SUMMARY_WIDTH = 160
NOISY_LABELS = frozenset({"alertname", "severity", "prometheus", "job", "endpoint",
                          "container", "receiver", "service"})
"""Labels every alert carries or the title already says: left out of the key fields."""


def priority_rank(priority: str | None) -> int:
    if priority is None or priority == "":
        return 9
    return PRIORITY_RANK.get(priority.lower(), 4 if priority.lower() != "-" else 9)


def is_urgent(item: Item) -> bool:
    return str(item.get("priority") or "").lower() in URGENT


def is_critical(item: Item) -> bool:
    return priority_rank(item.get("priority")) == 0


def is_snoozed(item: Item, now: str) -> bool:
    return bool(item.get("snoozed_until")) and str(item["snoozed_until"]) > now


def is_unclaimed(item: Item, now: str) -> bool:
    """Open, not snoozed: waiting for someone to take it."""
    return item.get("state") == "open" and not is_snoozed(item, now)


def sort_items(items: Iterable[Item], key: str = "priority", reverse: bool = False
               ) -> list[Item]:
    """Items in the order the list shows them. `priority`: most urgent first, then the
    one waiting longest; `age`: oldest first; `count`: most events first; `owner`: by
    owner, unowned last. `reverse` flips the chosen order."""
    def by_age(i: Item) -> tuple[str, int]:
        return str(i.get("first_seen") or ""), int(i["id"])

    if key == "age":
        ordered = sorted(items, key=by_age)
    elif key == "count":
        ordered = sorted(items, key=lambda i: (-int(i.get("count") or 0), *by_age(i)))
    elif key == "owner":
        ordered = sorted(items, key=lambda i: (i.get("owner") is None,
                                               str(i.get("owner") or ""),
                                               priority_rank(i.get("priority")), *by_age(i)))
    else:
        ordered = sorted(items, key=lambda i: (priority_rank(i.get("priority")), *by_age(i)))
    if reverse:
        ordered.reverse()
    return ordered


@dataclass(frozen=True)
class KeyFields:
    """What an item's latest event is about, without opening it."""

    summary: str = ""
    labels: tuple[tuple[str, str], ...] = field(default_factory=tuple)
    runbook: str | None = None

    def line(self) -> str:
        """One line: the summary, then the labels that matter."""
        parts = [self.summary] if self.summary else []
        if self.labels:
            parts.append(" ".join(f"{k}={v}" for k, v in self.labels))
        return "  ".join(parts)


DEAD_LETTER = "opsbus.delivery.deadlettered"


def dead_letter_fields(data: dict[str, Any]) -> KeyFields:
    """A dead letter says which subscription gave up on which event, and why."""
    found = data.get("event")
    inner: dict[str, Any] = found if isinstance(found, dict) else {}
    what = f"{inner.get('type', 'an event')} from {inner.get('source', '?')}"
    error = data.get("last_error") or data.get("last_status") or "no answer"
    return KeyFields(
        f"{data.get('subscription', '?')} gave up on seq {data.get('seq', '?')} ({what}) "
        f"after {data.get('attempts', '?')} attempts: {error}",
        (("subscription", str(data.get("subscription", "?"))),))


def _text(value: Any) -> str | None:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    return None


def key_fields(event: dict[str, Any]) -> KeyFields:
    """The summary (or message), labels that matter and runbook link of an event:
    Alertmanager annotations and labels first, then the data's own fields."""
    data = event.get("data")
    if isinstance(data, str):
        return KeyFields(summary=data.replace("\n", " ").strip())
    if event.get("type") == DEAD_LETTER and isinstance(data, dict):
        return dead_letter_fields(data)
    if not isinstance(data, dict):
        return KeyFields()
    found = data.get("annotations")
    annotations: dict[str, Any] = found if isinstance(found, dict) else {}
    summary = ""
    for holder in (annotations, data):
        for name in SUMMARY_FIELDS:
            text = _text(holder.get(name))
            if text and name != "status":
                summary = text
                break
        if summary:
            break
    found = data.get("labels")
    raw_labels: dict[str, Any] = found if isinstance(found, dict) else {}
    labels = tuple((str(k), str(v)) for k, v in raw_labels.items()
                   if k not in NOISY_LABELS and _text(v) is not None)[:LABELS_SHOWN]
    if not summary:  # no summary field: the data's own scalar members say something
        summary = ", ".join(f"{k}={v}" for k, v in data.items()
                            if k not in ("severity", "labels", "annotations")
                            and _text(v) is not None)[:SUMMARY_WIDTH]
    runbook = None
    for holder in (annotations, data):
        for name in ("runbook_url", "runbook", "runbook_link"):
            text = _text(holder.get(name))
            if text:
                runbook = text
                break
        if runbook:
            break
    return KeyFields(summary.replace("\n", " ").strip(), labels, runbook)
