"""Retention: removing old events by age, count and size while keeping what is needed."""

from __future__ import annotations

from broker.retention.policy import RetentionPolicy, policy_of
from broker.retention.repository import LogUsage, Removal, RetentionRepository
from broker.retention.service import APPLIED_TYPE, Retention

__all__ = ["APPLIED_TYPE", "LogUsage", "Removal", "Retention", "RetentionPolicy",
           "RetentionRepository", "policy_of"]
