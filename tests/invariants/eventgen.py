"""Seeded CloudEvents for the workload: alerts that fire and resolve, tickets, deploys,
jobs and notes, some carrying a `dedupkey`, some without the fields a title uses."""

from __future__ import annotations

import random
import uuid
from typing import Any

ALERTNAMES = ("DiskFull", "HighLatency", "NodeDown", "CertExpiring")


class EventFactory:
    """Makes events from one seeded generator, so a seed always makes the same ones."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.made = 0

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def event(self) -> dict[str, Any]:
        rng = self.rng
        self.made += 1
        kind = rng.choices(("alert", "ticket", "deploy", "job", "note"),
                           weights=(5, 3, 2, 2, 1))[0]
        event: dict[str, Any] = {"specversion": "1.0", "id": self.new_id(),
                                 "time": f"2026-11-25T10:{self.made // 60 % 60:02d}:"
                                         f"{self.made % 60:02d}Z",
                                 "datacontenttype": "application/json"}
        if kind == "alert":
            status = "resolved" if rng.random() < 0.3 else "firing"
            event.update(source="inv/monitoring", type=f"alert.{status}",
                         subject=f"{rng.choice(['host', 'db'])}-{rng.randint(0, 5)}",
                         data={"alertname": rng.choice(ALERTNAMES), "status": status,
                               "severity": rng.choice(["page", "warn"])})
            if rng.random() < 0.25:
                event["dedupkey"] = f"alert-{rng.randint(0, 4)}"
        elif kind == "ticket":
            data: dict[str, Any] = {"ticket": rng.randint(0, 6)}
            if rng.random() < 0.7:
                data["summary"] = rng.choice(["VPN down", "Printer on fire", "Quota"])
            event.update(source="inv/tickets", type="ticket.update",
                         subject=f"T-{data['ticket']}", data=data)
            if rng.random() < 0.2:
                event["dedupkey"] = f"ticket-merge-{rng.randint(0, 2)}"
        elif kind == "deploy":
            event.update(source="inv/ci",
                         type=rng.choice(["deploy.started", "deploy.finished",
                                          "deploy.rollback"]),
                         subject=rng.choice(["api", "web", "db-proxy"]),
                         data={"env": rng.choice(["prod", "staging"]),
                               "service": rng.choice(["api", "web"])})
        elif kind == "job":
            event.update(source="inv/jobs",
                         type=rng.choice(["job.started", "job.failed", "job.done"]),
                         subject=f"job-{rng.randint(0, 9)}", data={"run": rng.randint(1, 99)})
        else:
            event.update(source="inv/misc", type="note.added",
                         subject=rng.choice(["db-1", "web-2", "cache"]),
                         data={"text": "something happened"})
        return event

    def conflicting(self, original: dict[str, Any]) -> dict[str, Any]:
        """Same source and id, different content."""
        changed = dict(original)
        changed["data"] = {"conflict": self.rng.randint(0, 1 << 30)}
        return changed
