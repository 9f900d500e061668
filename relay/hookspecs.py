"""The plugin author's contract: every hook Relay calls.

A plugin is a module (or object) with functions marked `@hookimpl`, found
through the `relay.destinations` entry-point group or named in
`plugins.toml`. Hooks are called with keyword arguments; implement only the
ones you need, with any subset of the arguments.

    from relay.hookspecs import hookimpl

    @hookimpl
    def relay_register_destinations(register):
        register(MyDestination())
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from relay.destinations import Destination

PROJECT = "relay"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def relay_register_destinations(register: Callable[[Destination], None]) -> None:
    """Register the destinations this plugin provides.

    Called once when a web or worker process loads its plugins. Call
    `register(destination)` for each `relay.destinations.Destination`
    instance; two destinations with the same `name` are a configuration
    error. Returns nothing.
    """
