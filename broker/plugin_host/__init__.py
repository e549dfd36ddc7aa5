"""Plugins: sources, actions, transforms and route targets loaded from Python files.

The host registers the `plugin:<name>` route target, reloads plugins when their files or
the `[plugins]` table change, adds their action kinds to the actions feature's registry
and their transforms to the bus. Plugins see only `broker.plugin_host.api`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.plugin_host.host import PluginHost

if TYPE_CHECKING:
    from broker.wiring import Wiring

__all__ = ["PluginHost", "wire"]


def wire(host: PluginHost, wiring: Wiring) -> None:
    """The host's registrations at start-up."""
    wiring.target("plugin", host.route_target, writes=False)
    wiring.on_config(host.on_config)
    wiring.service("plugin-watch", host.watch)
    wiring.on_stop(host.stop)
    wiring.metrics.sampled("opsbus_plugins_loaded", "Plugins with an active version.", "gauge",
                           lambda: sum(1 for p in host.plugins.values() if p.version))
    wiring.metrics.sampled("opsbus_plugins_failed", "Plugins whose last load failed.", "gauge",
                           lambda: sum(1 for p in host.plugins.values() if p.error))
    wiring.metrics.sampled("opsbus_plugin_errors_total",
                           "Errors raised by plugin sources, transforms, actions, hooks.",
                           "counter", lambda: host.errors_total)
