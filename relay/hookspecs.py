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
    from relay.conflicts import CheckContext, Finding
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


@hookspec
def relay_check_conflicts(context: CheckContext) -> list[Finding] | None:
    """Look for a native integration that also sends the shop's conversions.

    Called for one shop and one destination (`context.destination`); answer
    None for destinations that are not yours. Otherwise return one
    `relay.conflicts.Finding` per signal you looked at, each with a verdict:

    - `conflict`: the same conversions reach the platform twice;
    - `dedup risk`: a second sender whose event ids may not match Relay's;
    - `ok`: you looked and found nothing;
    - `unknown`: you could not look, or the platform or Shopify is silent.
      Never say `ok` for silence.

    Say what was seen (or why you could not look) in `evidence`, and what
    the merchant must do in `steps`, naming the Shopify admin path to click.
    Use `context.storefront`, `context.admin` and `context.platform_token()`
    rather than your own clients, so tests and operators see every call.
    """
