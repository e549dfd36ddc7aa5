"""Configuration objects (routes, queues, subscriptions, actions, proxy mounts): kinds
registered by the features, kept in the store, applied from opsbus.toml and the API."""

from broker.config.manager import ConfigManager, Kind
from broker.config.repository import ConfigObject, ConfigRepository, ConfigWrites

__all__ = ["ConfigManager", "ConfigObject", "ConfigRepository", "ConfigWrites", "Kind"]
