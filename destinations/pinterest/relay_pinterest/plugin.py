"""The plugin module the `relay.destinations` entry point names."""

from __future__ import annotations

from collections.abc import Callable

from relay.destinations import Destination
from relay.hookspecs import hookimpl
from relay_pinterest.destination import PinterestDestination


@hookimpl
def relay_register_destinations(register: Callable[[Destination], None]) -> None:
    register(PinterestDestination())
