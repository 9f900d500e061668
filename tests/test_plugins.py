"""Plugin discovery, plugins.toml, and the hookspec contract."""

from __future__ import annotations

import inspect
import json
import textwrap
from pathlib import Path

import pytest

from relay import hookspecs
from relay.destinations import Destination
from relay.errors import ConfigError
from relay.plugins import Plugins
from relay.runtime import Runtime
from tests.conftest import SHOP, TESTS, configure_destination, post_fixture, work
from webapp import create_app

TINY_PLUGIN = """
import json

from relay.destinations import (
    Destination, EventResult, FormattedEvent, Outcome, Setting,
)
from relay.hookspecs import hookimpl


class Tiny(Destination):
    name = "tiny"
    title = "Tiny"
    batch_limit = 10
    settings = (Setting("outbox", "Outbox file", required=True),)

    def format_event(self, event, config):
        commerce = event.commerce
        payload = {"id": event.event_id, "name": event.name.value,
                   "value": str(commerce.value), "currency": commerce.currency}
        return FormattedEvent(event.event_id, payload, payload, ("order",))

    def request_body(self, batch):
        return [formatted.payload for formatted in batch]

    def send_batch(self, batch, config):
        with open(config.get("outbox"), "a") as handle:
            for formatted in batch:
                handle.write(json.dumps(formatted.payload) + "\\n")
        return [EventResult(f.event_id, Outcome.SENT, 200) for f in batch]


@hookimpl
def relay_register_destinations(register):
    register(Tiny())


@hookimpl
def relay_check_conflicts(context):
    from relay.conflicts import Finding, Verdict

    if context.destination != "tiny":
        return None
    outbox = context.settings.get("outbox") if context.settings else None
    return [Finding("tiny outbox", Verdict.OK, "Only Relay writes here.", outbox)]
"""


def install_distribution(
    site: Path, module: str, source: str, entry_point: str
) -> None:
    """A distribution as pip would leave it: a module and its .dist-info."""
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n"
    )
    (info / "entry_points.txt").write_text(f"[relay.destinations]\n{entry_point}\n")


def test_third_party_plugin_receives_events_without_core_changes(
    tmp_path, monkeypatch, runtime: Runtime
):
    site = tmp_path / "site"
    site.mkdir()
    install_distribution(site, "tinydest", TINY_PLUGIN, "tiny = tinydest")
    monkeypatch.syspath_prepend(str(site))
    outbox = tmp_path / "outbox.jsonl"

    runtime.plugins = Plugins.load(runtime.config.plugins_file)
    configure_destination(runtime, "tiny", {"outbox": str(outbox)})
    client = create_app(runtime=runtime).test_client()
    post_fixture(client, "orders_create.json")
    work(runtime)

    sent = [json.loads(line) for line in outbox.read_text().splitlines()]
    assert sent == [
        {
            "id": "6123456789012",
            "name": "purchase",
            "value": "135.00",
            "currency": "CAD",
        }
    ]


def test_third_party_plugin_answers_the_conflict_check_for_its_destination(
    tmp_path, monkeypatch, runtime: Runtime
):
    from relay import conflicts

    site = tmp_path / "site"
    site.mkdir()
    install_distribution(site, "tinydest", TINY_PLUGIN, "tiny = tinydest")
    monkeypatch.syspath_prepend(str(site))
    runtime.plugins = Plugins.load(runtime.config.plugins_file)
    configure_destination(runtime, "tiny", {"outbox": "/tmp/outbox.jsonl"})

    result = conflicts.check(runtime, "example-shop.myshopify.com", "tiny")

    # Pinterest's plugin answers None for a destination that is not its own.
    assert [f.to_dict() for f in result.findings] == [
        {
            "signal": "tiny outbox",
            "verdict": "ok",
            "summary": "Only Relay writes here.",
            "evidence": "/tmp/outbox.jsonl",
            "steps": [],
            "key": conflicts.Finding(
                "tiny outbox", conflicts.Verdict.OK, "", "/tmp/outbox.jsonl"
            ).key,
        }
    ]
    assert result.verdict is conflicts.Verdict.OK


def test_pinterest_registers_through_its_entry_point_like_any_plugin():
    plugins = Plugins.load(None)

    assert plugins.manager.get_plugin("pinterest").__name__ == "relay_pinterest.plugin"
    assert plugins.destination("pinterest").batch_limit == 1000


def test_entry_point_listed_as_disabled_is_not_loaded(tmp_path):
    toml = tmp_path / "plugins.toml"
    toml.write_text('[plugins]\ndisabled = ["pinterest"]\n')

    assert Plugins.load(toml).destinations == {}


def test_module_named_in_plugins_toml_is_loaded(tmp_path, monkeypatch):
    (tmp_path / "localdest.py").write_text(TINY_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    toml = tmp_path / "plugins.toml"
    toml.write_text('[plugins]\nmodules = ["localdest"]\n')

    assert sorted(Plugins.load(toml).destinations) == ["pinterest", "tiny"]


def test_secret_written_as_a_value_in_plugins_toml_is_refused(tmp_path):
    toml = tmp_path / "plugins.toml"
    toml.write_text('[destinations.pinterest]\nconversion_token = "pina_literal"\n')

    with pytest.raises(ConfigError, match="conversion_token is a secret"):
        Plugins.load(toml)


def test_secret_reference_in_plugins_toml_resolves_from_the_environment(tmp_path):
    toml = tmp_path / "plugins.toml"
    toml.write_text(
        textwrap.dedent(
            """
            [destinations.pinterest]
            ad_account_id = "123"
            conversion_token = { env = "PIN_TOKEN" }
            """
        )
    )
    plugins = Plugins.load(toml)

    config = plugins.config_for(
        SHOP, "pinterest", {}, {}, False, environ={"PIN_TOKEN": "pina_from_env"}
    )

    assert dict(config.values) == {
        "ad_account_id": "123",
        "conversion_token": "pina_from_env",
        "tag_id": None,
        "events": "checkout,add_to_cart,page_visit,view_category,search,"
        "initiate_checkout,add_payment_info",
        "value": "subtotal",
        "currency": "buyer",
        "api_base": "https://api.pinterest.com",
    }


@pytest.mark.parametrize(
    ("environ", "api_base"),
    [
        ({}, "https://api.pinterest.com"),
        (
            {"RELAY_PINTEREST_API_BASE": "http://127.0.0.1:8081"},
            "http://127.0.0.1:8081",
        ),
    ],
)
def test_the_shipped_plugins_toml_sends_where_relay_pinterest_api_base_says(
    environ, api_base
):
    plugins = Plugins.load(Path(__file__).parent.parent / "plugins.toml")

    config = plugins.config_for(
        SHOP,
        "pinterest",
        {"ad_account_id": "1"},
        {"conversion_token": "t"},
        False,
        environ=environ,
    )

    assert config.get("api_base") == api_base


def test_shop_settings_override_plugins_toml_defaults(tmp_path):
    toml = tmp_path / "plugins.toml"
    toml.write_text('[destinations.pinterest]\napi_base = "https://proxy.example"\n')
    plugins = Plugins.load(toml)

    config = plugins.config_for(
        SHOP,
        "pinterest",
        {"ad_account_id": "9", "api_base": "https://own.example"},
        {"conversion_token": "t"},
        True,
        environ={},
    )

    assert (config.get("api_base"), config.test_mode) == ("https://own.example", True)


def test_missing_required_setting_is_named(tmp_path):
    plugins = Plugins.load(None)

    with pytest.raises(ConfigError, match="'conversion_token' is not set"):
        plugins.config_for(
            SHOP, "pinterest", {"ad_account_id": "9"}, {}, False, environ={}
        )


def test_unknown_setting_in_plugins_toml_is_refused(tmp_path):
    toml = tmp_path / "plugins.toml"
    toml.write_text('[destinations.pinterest]\ncolour = "red"\n')

    with pytest.raises(ConfigError, match="no setting 'colour'"):
        Plugins.load(toml)


def test_two_destinations_with_one_name_are_refused(tmp_path, monkeypatch):
    (tmp_path / "clash.py").write_text(
        TINY_PLUGIN.replace('name = "tiny"', 'name = "pinterest"')
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    toml = tmp_path / "plugins.toml"
    toml.write_text('[plugins]\nmodules = ["clash"]\n')

    with pytest.raises(
        ConfigError, match="two plugins register a destination named 'pinterest'"
    ):
        Plugins.load(toml)


# -- the contract guard --------------------------------------------------------


def hookspec_functions():  # type: ignore[no-untyped-def]
    return [
        function
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("relay_")
    ]


def test_every_hook_is_prefixed_typed_and_documented():
    assert hookspec_functions(), "no hooks found"
    for hook in hookspec_functions():
        signature = inspect.signature(hook)
        assert hook.__doc__ and len(hook.__doc__.strip()) > 40, hook.__name__
        assert signature.return_annotation is not inspect.Signature.empty, hook.__name__
        for parameter in signature.parameters.values():
            assert parameter.annotation is not inspect.Parameter.empty, (
                hook,
                parameter,
            )


def test_every_hook_is_exercised_by_a_test():
    test_sources = (
        "\n".join(
            path.read_text()
            for path in TESTS.rglob("test_*.py")
            if path.name != "test_plugins.py"
        )
        + TINY_PLUGIN
    )
    for hook in hookspec_functions():
        assert hook.__name__ in test_sources, f"{hook.__name__} has no test"


def test_every_destination_method_is_documented():
    for name in ("format_event", "request_body", "send_batch"):
        assert getattr(Destination, name).__doc__, name
