"""Migrations, encrypted secrets and the embedded Redis."""

from __future__ import annotations

import stat

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy import select

from relay.cli import cli
from relay.config import Config
from relay.errors import ConfigError
from relay.models import Base, DestinationSetting
from relay.redisconn import MAX_SOCKET_PATH, EmbeddedRedis, connect
from relay.secrets import KeyRing
from relay.shops import destination_config, find_shop
from tests.conftest import ROOT, SHOP, configure_destination


def test_migrations_build_exactly_the_models_schema(db):
    with db.engine.connect() as connection:
        differences = compare_metadata(
            MigrationContext.configure(connection), Base.metadata
        )

    assert differences == []


def test_secrets_are_stored_encrypted_and_read_back(runtime):
    configure_destination(
        runtime, "pinterest", {"ad_account_id": "1", "conversion_token": "pina_s3cret"}
    )

    with runtime.db.session() as session:
        row = session.scalars(select(DestinationSetting)).one()
        assert "pina_s3cret" not in (row.encrypted_secrets or "")
        assert row.values == {"ad_account_id": "1"}
        shop = find_shop(session, SHOP)
        config = destination_config(
            session, runtime.keyring, runtime.plugins, shop, "pinterest"
        )
    assert config.get("conversion_token") == "pina_s3cret"


def test_key_rotation_reencrypts_with_the_new_key(runtime, database_url, tmp_path):
    old_key = runtime.config.secret_keys[0]
    configure_destination(
        runtime, "pinterest", {"ad_account_id": "1", "conversion_token": "pina_old"}
    )
    new_key = Fernet.generate_key().decode()
    env = {
        "DATABASE_URL": database_url,
        "RELAY_SECRET_KEY": f"{new_key},{old_key}",
        "RELAY_INSTANCE_PATH": str(tmp_path),
        "RELAY_PLUGINS_FILE": str(ROOT / "plugins.toml"),
    }

    result = CliRunner().invoke(cli, ["secrets", "rotate"], env=env)

    assert result.output == "re-encrypted 1 settings\n"
    with runtime.db.session() as session:
        token = session.scalars(select(DestinationSetting)).one().encrypted_secrets
    assert KeyRing((new_key,)).decrypt(token) == {"conversion_token": "pina_old"}
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        KeyRing((old_key,)).decrypt(token)


def test_a_deployment_database_without_a_key_is_refused(tmp_path):
    config = Config(instance_path=tmp_path, database_url="postgresql://db/relay")

    with pytest.raises(ConfigError, match="RELAY_SECRET_KEY must be set"):
        KeyRing.from_config(config)


def test_development_key_is_generated_once_readable_by_owner_only(tmp_path):
    config = Config(instance_path=tmp_path)

    first = KeyRing.from_config(config)
    second = KeyRing.from_config(config)

    assert second.decrypt(first.encrypt({"a": 1})) == {"a": 1}
    mode = stat.S_IMODE((tmp_path / "secret.key").stat().st_mode)
    assert mode == 0o600


def test_a_malformed_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match="must hold Fernet keys"):
        KeyRing(("not-a-key",))


def test_embedded_redis_in_a_deep_folder_puts_its_socket_somewhere_short(tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    assert len(str(deep / "redis.sock")) > MAX_SOCKET_PATH

    server = EmbeddedRedis(deep)
    try:
        assert len(str(server.socket_path)) <= MAX_SOCKET_PATH
        client = connect(server.url)
        client.set("k", "v")
        assert client.get("k") == b"v"
    finally:
        server.stop()
    assert (deep / "appendonly.aof").exists() or (deep / "appendonlydir").exists()


def test_second_owner_of_one_instance_is_refused(tmp_path):
    server = EmbeddedRedis(tmp_path)
    try:
        with pytest.raises(
            ConfigError, match="another process runs the embedded Redis"
        ):
            EmbeddedRedis(tmp_path)
    finally:
        server.stop()
