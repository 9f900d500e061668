"""The plugin module the `relay.destinations` entry point names."""

from __future__ import annotations

from collections.abc import Callable

from relay.conflicts import CheckContext, Finding
from relay.destinations import Destination
from relay.hookspecs import hookimpl
from relay_pinterest import conflicts
from relay_pinterest.destination import PinterestDestination


@hookimpl
def relay_register_destinations(register: Callable[[Destination], None]) -> None:
    register(PinterestDestination())


@hookimpl
def relay_check_conflicts(context: CheckContext) -> list[Finding] | None:
    if context.destination != PinterestDestination.name:
        return None
    return conflicts.check(context)
