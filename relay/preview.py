"""What `relay preview` and `relay replay --now` do to a webhook file."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from relay.config import Config
from relay.destinations import DestinationConfig, Skip
from relay.plugins import Plugins
from relay.shopify.normalize import event_for_topic

# The payload times that say when the action happened, top level only.
ACTION_TIMES = ("processed_at", "created_at", "updated_at")


def preview_bodies(
    config: Config,
    payload: dict[str, Any],
    topic: str,
    shop: str,
    only: str | None = None,
) -> dict[str, Any]:
    """Each destination's request body for one webhook payload.

    A destination that would skip the event maps to the reason instead.
    Settings are the defaults: a body never depends on account or token.
    """
    plugins = Plugins.load(config.plugins_file)
    names = [only] if only else sorted(plugins.destinations)
    event = event_for_topic(shop, topic, payload)

    bodies: dict[str, Any] = {}
    for name in names:
        destination = plugins.destination(name)
        defaults = {s.name: s.default for s in destination.settings}
        settings = DestinationConfig(shop=shop, values=defaults)
        try:
            formatted = destination.format_event(event, settings)
        except Skip as skip:
            bodies[name] = skip.reason
            continue
        bodies[name] = destination.request_body([formatted])
    return bodies


def move_times(payload: dict[str, Any], now: datetime) -> dict[str, Any]:
    """A copy of `payload` whose action times are `now`, keeping their order."""
    moved = dict(payload)
    present = [key for key in ACTION_TIMES if isinstance(payload.get(key), str)]
    if not present:
        return moved
    latest = max(
        datetime.fromisoformat(payload[key].replace("Z", "+00:00")) for key in present
    )
    for key in present:
        original = datetime.fromisoformat(payload[key].replace("Z", "+00:00"))
        moved[key] = (now - (latest - original)).isoformat()
    return moved
