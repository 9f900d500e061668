"""Finding destination plugins and resolving their settings.

Plugins come from two places:
- installed distributions that declare the `relay.destinations` entry point
  (Pinterest's own plugin is found this way, like any third-party one);
- modules named in `plugins.toml` under `[plugins] modules`.

`plugins.toml` also holds each destination's defaults. A secret setting may
only appear there as a reference to an environment variable,
`{ env = "NAME" }`, never as a value.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pluggy

from relay import hookspecs
from relay.destinations import Destination, DestinationConfig, Setting, SettingKind
from relay.errors import ConfigError

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "relay.destinations"


class Plugins:
    """The loaded plugins and the destinations they registered."""

    def __init__(
        self,
        manager: pluggy.PluginManager,
        destinations: Mapping[str, Destination],
        defaults: Mapping[str, Mapping[str, Any]],
    ) -> None:
        self.manager = manager
        self.destinations = dict(destinations)
        self.defaults = {name: dict(values) for name, values in defaults.items()}

    @classmethod
    def load(cls, plugins_file: Path | None) -> Plugins:
        """Load every plugin this deployment runs; see the module docstring."""
        document = _read_toml(plugins_file)
        plugin_table = document.get("plugins", {})
        disabled = set(plugin_table.get("disabled", []))

        manager = pluggy.PluginManager(hookspecs.PROJECT)
        manager.add_hookspecs(hookspecs)
        _register_entry_points(manager, disabled)
        for module_name in plugin_table.get("modules", []):
            _register_module(manager, module_name)

        destinations = _collect_destinations(manager)
        defaults = _destination_defaults(document, destinations)
        return cls(manager, destinations, defaults)

    def destination(self, name: str) -> Destination:
        try:
            return self.destinations[name]
        except KeyError:
            known = ", ".join(sorted(self.destinations)) or "none"
            raise ConfigError(
                f"no destination named {name!r} (loaded: {known})"
            ) from None

    def config_for(
        self,
        shop: str,
        name: str,
        values: Mapping[str, Any],
        secrets: Mapping[str, Any],
        test_mode: bool,
        environ: Mapping[str, str] | None = None,
    ) -> DestinationConfig:
        """A shop's settings, over plugins.toml's defaults, over the plugin's.

        Raises ConfigError naming any required setting still missing.
        """
        destination = self.destination(name)
        env = os.environ if environ is None else environ
        resolved: dict[str, Any] = {}
        for setting in destination.settings:
            value = _first_set(
                secrets.get(setting.name)
                if setting.kind == SettingKind.SECRET
                else None,
                values.get(setting.name),
                _resolve_reference(self.defaults.get(name, {}).get(setting.name), env),
                setting.default,
            )
            if value is None and setting.required:
                raise ConfigError(
                    f"{name} for {shop}: setting {setting.name!r} is not set"
                )
            resolved[setting.name] = value
        return DestinationConfig(shop=shop, values=resolved, test_mode=test_mode)


def validate_setting(setting: Setting, raw: str) -> Any:
    """A value typed by a person, converted to the setting's kind.

    Raises ConfigError with a message that says what is wrong.
    """
    value = raw.strip()
    if setting.kind == SettingKind.BOOLEAN:
        lowered = value.lower()
        if lowered in {"true", "yes", "1", "on"}:
            return True
        if lowered in {"false", "no", "0", "off"}:
            return False
        raise ConfigError(f"{setting.name}: expected true or false, got {raw!r}")
    if not value:
        raise ConfigError(f"{setting.name}: must not be empty")
    if setting.kind == SettingKind.URL and not re.match(r"^https?://[^\s/]+", value):
        raise ConfigError(f"{setting.name}: expected an http(s) URL, got {raw!r}")
    if setting.pattern and not re.fullmatch(setting.pattern, value):
        hint = f" ({setting.help})" if setting.help else ""
        shown = "the value" if setting.kind == SettingKind.SECRET else repr(raw)
        raise ConfigError(f"{setting.name}: {shown} is not valid{hint}")
    return value


def _register_entry_points(manager: pluggy.PluginManager, disabled: set[str]) -> None:
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        if entry_point.name in disabled:
            log.info("plugins: %s disabled in plugins.toml", entry_point.name)
            continue
        if manager.has_plugin(entry_point.name):
            continue  # the same distribution seen twice on sys.path
        plugin = entry_point.load()
        manager.register(plugin, name=entry_point.name)
        log.info(
            "plugins: loaded %s from entry point %s",
            entry_point.name,
            entry_point.value,
        )


def _register_module(manager: pluggy.PluginManager, module_name: str) -> None:
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(
            f"plugins.toml names module {module_name!r}: {error}"
        ) from None
    if manager.is_registered(module):
        return
    manager.register(module, name=module_name)
    log.info("plugins: loaded module %s named in plugins.toml", module_name)


def _collect_destinations(manager: pluggy.PluginManager) -> dict[str, Destination]:
    destinations: dict[str, Destination] = {}

    def register(destination: Destination) -> None:
        if not isinstance(destination, Destination):
            raise ConfigError(f"{destination!r} is not a relay Destination")
        if destination.name in destinations:
            raise ConfigError(
                f"two plugins register a destination named {destination.name!r}"
            )
        destinations[destination.name] = destination

    manager.hook.relay_register_destinations(register=register)
    return destinations


def _destination_defaults(
    document: Mapping[str, Any], destinations: Mapping[str, Destination]
) -> dict[str, dict[str, Any]]:
    defaults: dict[str, dict[str, Any]] = {}
    for name, table in document.get("destinations", {}).items():
        if name not in destinations:
            log.warning("plugins.toml: defaults for %s, which no plugin provides", name)
            continue
        declared = {setting.name: setting for setting in destinations[name].settings}
        for key, value in table.items():
            setting = declared.get(key)
            if setting is None:
                raise ConfigError(f"plugins.toml: {name} has no setting {key!r}")
            if setting.kind == SettingKind.SECRET and not _is_reference(value):
                raise ConfigError(
                    f"plugins.toml: {name}.{key} is a secret; write "
                    f'{{ env = "VARIABLE" }}, never the value itself'
                )
        defaults[name] = dict(table)
    return defaults


def _read_toml(path: Path | None) -> dict[str, Any]:
    if path is None or not path.exists():
        return {}
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: {error}") from None


def _is_reference(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"env"}
        and isinstance(value["env"], str)
    )


def _resolve_reference(value: Any, environ: Mapping[str, str]) -> Any:
    if _is_reference(value):
        return environ.get(value["env"]) or None
    return value


def _first_set(*values: Any) -> Any:
    for value in values:
        if value is not None and value != "":
            return value
    return None
