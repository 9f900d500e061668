"""A destination's settings form for the admin pages: described, checked, saved.

The form is the destination's `Setting` declarations, so a plugin's new
setting appears without touching the pages. Checking is field by field,
with `relay.plugins.validate_setting`'s messages (the CLI's). A secret is
never sent back: the form says only whether one is stored, and leaving it
empty keeps it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from relay import connections, consent
from relay.conflicts import POLICIES as CONFLICT_POLICIES
from relay.destinations import Destination, Setting, SettingKind
from relay.errors import BadInput, ConfigError
from relay.plugins import validate_setting
from relay.runtime import Runtime
from relay.shops import ensure_shop, find_shop, save_destination, setting_row

MAX_VALUE = 4096
# An optional field the merchant emptied: it goes back to its default.
CLEAR: Any = object()


class InvalidSettings(BadInput):
    """Some fields are not valid; `fields` maps each to what is wrong."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("some settings are not valid", status=400)
        self.fields = fields


@dataclass(frozen=True)
class Changes:
    """A checked form: typed values, and the switches given."""

    values: dict[str, Any]
    enabled: bool | None
    test_mode: bool | None
    consent_policy: str | None
    conflict_policy: str | None


def describe(runtime: Runtime, shop: str, name: str) -> dict[str, Any]:
    """The form as the pages draw it, with the shop's current values."""
    destination = runtime.plugins.destination(name)
    with runtime.db.session() as session:
        shop_row = find_shop(session, shop)
        row = setting_row(session, shop_row, name) if shop_row else None
        secrets = (
            runtime.keyring.decrypt(row.encrypted_secrets)
            if row is not None and row.encrypted_secrets
            else {}
        )
        values = dict(row.values or {}) if row is not None else {}
        return {
            "destination": name,
            "title": destination.title,
            "set_up": row is not None,
            "enabled": row.enabled if row is not None else True,
            "test_mode": row.test_mode if row is not None else True,
            "conflict_policy": row.conflict_policy if row is not None else "send",
            "consent_policy": shop_row.consent_policy if shop_row else consent.DEFAULT,
            "paused": row.paused_reason if row is not None else None,
            "oauth": destination.oauth is not None,
            "connected": connections.is_connected(runtime, shop, name),
            "fields": [
                _field(setting, values, secrets)
                for setting in merchant_settings(destination)
            ],
        }


def merchant_settings(destination: Destination) -> list[Setting]:
    """The settings a merchant's form shows and takes: not the operator's."""
    return [setting for setting in destination.settings if not setting.operator]


def _field(
    setting: Setting, values: dict[str, Any], secrets: dict[str, Any]
) -> dict[str, Any]:
    described: dict[str, Any] = {
        "name": setting.name,
        "label": setting.label,
        "kind": str(setting.kind),
        "required": setting.required,
        "help": setting.help,
        "choices": list(setting.choices),
        "multiple": setting.multiple,
        # What applies when the shop sets nothing (plugins.toml may differ).
        "default": None if setting.kind == SettingKind.SECRET else setting.default,
    }
    if setting.kind == SettingKind.SECRET:
        described["is_set"] = bool(secrets.get(setting.name))
    else:
        described["value"] = values.get(setting.name)
    return described


def check(destination: Destination, body: Any, stored: set[str]) -> Changes:
    """The form's JSON checked field by field; raises InvalidSettings.

    `stored` names the settings the shop already has, so a required one
    left empty keeps its value instead of failing.
    """
    if not isinstance(body, dict):
        raise BadInput("expected a JSON object with the settings")
    errors: dict[str, str] = {}
    given = body.get("values", {})
    if not isinstance(given, dict):
        raise BadInput("values must be an object of setting names to text")
    declared = {setting.name: setting for setting in merchant_settings(destination)}
    for unknown in sorted(set(given) - set(declared)):
        errors[unknown] = f"{destination.title} has no setting {unknown!r}"

    values: dict[str, Any] = {}
    for name, setting in declared.items():
        problem, value = _check_field(setting, given.get(name), name in stored)
        if problem:
            errors[name] = problem
        elif value is CLEAR:
            values[name] = None
        elif value is not None:
            values[name] = value

    switches = {
        key: _check_switch(body, key, errors)
        for key in ("enabled", "test_mode", "consent_policy", "conflict_policy")
    }
    if errors:
        raise InvalidSettings(errors)
    return Changes(values=values, **switches)


def _check_field(setting: Setting, raw: Any, stored: bool) -> tuple[str | None, Any]:
    """What is wrong with one field, or its typed value.

    The value is None to leave the field as it is (not given, or a saved
    secret left empty), and CLEAR for an optional field emptied, which then
    takes its default.
    """
    empty = raw is None or (isinstance(raw, str) and not raw.strip())
    if empty and setting.required:
        # A saved secret is never shown, so an empty box keeps it; a shown
        # value the merchant emptied is a mistake to point out, not ignore.
        keeps = raw is None or setting.kind == SettingKind.SECRET
        if stored and keeps:
            return None, None
        return f"{setting.label} is required", None
    if raw is None or (empty and setting.kind == SettingKind.SECRET):
        return None, None
    if empty and setting.choices:
        return f"{setting.label}: choose at least one", None
    if empty:
        return None, CLEAR
    if isinstance(raw, bool) and setting.kind == SettingKind.BOOLEAN:
        return None, raw
    if not isinstance(raw, str):
        return f"{setting.label} must be text", None
    if len(raw) > MAX_VALUE:
        return f"{setting.label} is too long (at most {MAX_VALUE} characters)", None
    try:
        return None, validate_setting(setting, raw)
    except ConfigError as error:
        # validate_setting names the field first, as the CLI shows it.
        message = str(error).removeprefix(f"{setting.name}: ")
        return f"{setting.label}: {message}", None


SWITCHES: dict[str, tuple[Any, ...]] = {
    "enabled": (True, False),
    "test_mode": (True, False),
    "consent_policy": consent.POLICIES,
    "conflict_policy": CONFLICT_POLICIES,
}


def _check_switch(body: dict[str, Any], key: str, errors: dict[str, str]) -> Any:
    value = body.get(key)
    allowed = SWITCHES[key]
    if value is None:
        return None
    # True == 1 in Python: a number must not pass for a boolean.
    if isinstance(value, bool) != isinstance(allowed[0], bool) or value not in allowed:
        shown = " or ".join(json.dumps(choice) for choice in allowed)
        errors[key] = f"{key} must be {shown}"
        return None
    return value


def save(runtime: Runtime, shop: str, name: str, body: Any) -> None:
    """Check and save a shop's settings for destination `name`.

    Raises InvalidSettings (nothing saved) or BadInput.
    """
    destination = runtime.plugins.destination(name)
    now = runtime.clock.now()
    with runtime.db.session() as session:
        shop_row = ensure_shop(session, shop, now)
        row = setting_row(session, shop_row, name)
        stored = _stored_names(runtime, row)
        changes = check(destination, body, stored)
        saved = save_destination(
            session,
            runtime.keyring,
            runtime.plugins,
            shop_row,
            name,
            changes.values,
            now,
            enabled=changes.enabled,
            test_mode=changes.test_mode,
        )
        # An emptied field is forgotten, so its default applies again.
        saved.values = {k: v for k, v in (saved.values or {}).items() if v is not None}
        if changes.conflict_policy is not None:
            saved.conflict_policy = changes.conflict_policy
        if changes.consent_policy is not None:
            shop_row.consent_policy = changes.consent_policy


def _stored_names(runtime: Runtime, row: Any) -> set[str]:
    if row is None:
        return set()
    secrets = (
        runtime.keyring.decrypt(row.encrypted_secrets) if row.encrypted_secrets else {}
    )
    return {k for k, v in {**(row.values or {}), **secrets}.items() if v}
