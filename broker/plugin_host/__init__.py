"""Plugins: sources, actions, transforms and route targets loaded from Python files."""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.plugin_host.host import PluginHost

if TYPE_CHECKING:
    from broker.core import Broker

__all__ = ["PluginHost", "host_of", "setup"]


def setup(broker: Broker) -> None:
    """Create the host; it loads plugins on the first configuration load."""
    host = PluginHost(broker)
    broker.extensions["plugins"] = host
    broker.router.register_target("plugin", host.route_target, writes=False)
    broker.config.on_change(host.on_config)
    broker.add_service("plugin-watch", host.watch)
    broker.on_stop(host.stop)
    broker.metrics.sampled("opsbus_plugins_loaded", "Plugins with an active version.", "gauge",
                           lambda: sum(1 for p in host.plugins.values() if p.version))
    broker.metrics.sampled("opsbus_plugins_failed", "Plugins whose last load failed.", "gauge",
                           lambda: sum(1 for p in host.plugins.values() if p.error))
    broker.metrics.sampled("opsbus_plugin_errors_total",
                           "Errors raised by plugin sources, transforms, actions, hooks.",
                           "counter", lambda: host.errors_total)


def host_of(broker: Broker) -> PluginHost:
    host: PluginHost = broker.extensions["plugins"]
    return host
