"""The `relay` command."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click

from relay import logs
from relay.config import Config
from relay.consent import POLICIES
from relay.errors import BadInput, ConfigError, RelayError


class RelayGroup(click.Group):
    """Shows Relay's own errors as one line, without a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RelayError as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=RelayGroup)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Relay: a Shopify store's conversions, sent to ad platforms server-side."""
    try:
        config = Config.from_env()
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    long_running = ctx.invoked_subcommand in ("serve", "worker", "cron")
    if long_running or "RELAY_LOG_LEVEL" in os.environ:
        logs.configure(config.log_level)
    else:
        # One-off commands print their answer; routine INFO lines would bury it.
        logs.configure("WARNING")
    ctx.obj = config


def main() -> None:
    cli()


# -- processes ---------------------------------------------------------------


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, help="Defaults to $PORT, then 8000.")
@click.pass_obj
def serve(config: Config, host: str, port: int | None) -> None:
    """Run the web app and a worker together, for development.

    With no REDIS_URL, an embedded Redis runs in the instance folder for as
    long as this command does.
    """
    from relay.devserver import serve as run_serve

    run_serve(config, host, port or config.port)


@cli.command()
@click.option("--burst", is_flag=True, help="Stop when the queue is empty.")
@click.pass_obj
def worker(config: Config, burst: bool) -> None:
    """Process queued webhooks and deliveries."""
    from relay.worker import run_worker

    run_worker(_runtime(config), burst=burst)


@cli.command()
@click.pass_obj
def cron(config: Config) -> None:
    """Queue scheduled jobs on time (hourly retention), until stopped.

    Run one: the Procfile's `clock` process. A second one would only queue
    each job twice, which is harmless.
    """
    from relay.scheduling import run_cron

    run_cron(_runtime(config))


@cli.command()
@click.pass_obj
def retention(config: Config) -> None:
    """Delete data past its lifetime now (`relay cron` does it hourly)."""
    from relay import retention as retention_module

    counts = retention_module.enforce(_runtime(config))
    for kind, count in sorted(counts.items()):
        click.echo(f"{retention_module.DESCRIPTIONS[kind]}: {count}")


@cli.group()
def privacy() -> None:
    """Shopify's privacy requests and their reports."""


@privacy.command("report")
@click.option("--shop", required=True, help="The shop's myshopify.com domain.")
@click.option("--id", "report_id", type=int, help="Print this report in full.")
@click.pass_obj
def privacy_report(config: Config, shop: str, report_id: int | None) -> None:
    """List a shop's customer data reports, or print one as JSON."""
    from relay import privacy as privacy_module

    runtime = _runtime(config)
    if report_id is not None:
        report = privacy_module.read_report(runtime, shop, report_id)
        if report is None:
            raise click.ClickException(f"no report {report_id} for {shop}")
        click.echo(json.dumps(report, indent=2))
        return
    reports = privacy_module.list_reports(runtime, shop)
    if not reports:
        click.echo(f"no reports for {shop}")
    for entry in reports:
        click.echo(
            f"{entry['id']}: data request {entry['data_request_id']}, made "
            f"{entry['created_at']}, kept until {entry['expires_at']}"
        )


# -- webhooks ----------------------------------------------------------------


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--topic", required=True, help="The webhook topic, e.g. orders/create.")
@click.option("--destination", "destination_name", help="Only this destination.")
@click.option("--shop", default="preview.myshopify.com", show_default=True)
@click.option(
    "--now",
    "move_to_now",
    is_flag=True,
    help="Move the payload's action times to now, as `replay --now` does.",
)
@click.pass_obj
def preview(
    config: Config,
    file: Path,
    topic: str,
    destination_name: str | None,
    shop: str,
    move_to_now: bool,
) -> None:
    """Print the exact request body each destination would send for FILE.

    Needs no Redis, database or network, and applies no age limit (a
    fixture's old times would be skipped as "too old" when really sent;
    --now moves them). With --destination the body alone is printed;
    otherwise a JSON object keyed by destination name.
    """
    from relay.preview import move_times, preview_bodies

    payload = _read_json(file)
    if move_to_now:
        payload = move_times(payload, datetime.now(timezone.utc))
    bodies = preview_bodies(config, payload, topic, shop, destination_name)
    if destination_name:
        body = bodies[destination_name]
        if isinstance(body, str):
            raise click.ClickException(f"{destination_name} would not send it: {body}")
        click.echo(json.dumps(body, indent=2))
    else:
        click.echo(json.dumps(bodies, indent=2))


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--topic", required=True, help="The webhook topic, e.g. orders/create.")
@click.option("--shop", required=True, help="The shop's myshopify.com domain.")
@click.option(
    "--now",
    "move_to_now",
    is_flag=True,
    help="Move the payload's action times to now (Pinterest refuses events "
    "older than 7 days).",
)
@click.pass_obj
def replay(
    config: Config, file: Path, topic: str, shop: str, move_to_now: bool
) -> None:
    """Queue FILE as if Shopify had delivered it to this shop."""
    from relay.intake import accept_webhook
    from relay.preview import move_times
    from relay.shopify.webhooks import SHOP_DOMAIN, TOPICS

    if not SHOP_DOMAIN.fullmatch(shop):
        raise click.BadParameter("expected a myshopify.com domain", param_hint="--shop")
    if topic not in TOPICS:
        raise click.BadParameter(f"Relay does not use {topic}", param_hint="--topic")

    runtime = _runtime(config)
    payload = _read_json(file)
    if move_to_now:
        payload = move_times(payload, runtime.clock.now())
    webhook_id = f"replay-{uuid.uuid4()}"
    accept_webhook(
        runtime.queue,
        config,
        shop=shop,
        topic=topic,
        webhook_id=webhook_id,
        body=json.dumps(payload).encode(),
    )
    click.echo(f"queued {topic} for {shop} as webhook {webhook_id}")


# -- destinations --------------------------------------------------------------


@cli.group()
def destinations() -> None:
    """Set up and inspect destinations."""


@destinations.command("list")
@click.option("--shop", help="Show this shop's settings.")
@click.pass_obj
def destinations_list(config: Config, shop: str | None) -> None:
    """List loaded destinations, or one shop's settings for each."""
    from relay.admin import describe_destinations

    for line in describe_destinations(config, shop):
        click.echo(line)


@destinations.command("set")
@click.argument("name")
@click.option("--shop", required=True, help="The shop's myshopify.com domain.")
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="KEY=VALUE",
    help="A setting; repeat for several. A secret given as KEY=- is asked for.",
)
@click.option("--test-mode/--live", default=None, help="Send as test events, or live.")
@click.option("--enable/--disable", default=None)
@click.option(
    "--conflict-policy",
    type=click.Choice(["send", "hold"]),
    help="While a conflict stands unacknowledged: keep sending purchases "
    "(flagged), or hold them back.",
)
@click.pass_obj
def destinations_set(
    config: Config,
    name: str,
    shop: str,
    assignments: tuple[str, ...],
    test_mode: bool | None,
    enable: bool | None,
    conflict_policy: str | None,
) -> None:
    """Change a shop's settings for destination NAME."""
    from relay.admin import set_destination

    changes: dict[str, str] = {}
    for assignment in assignments:
        key, sep, value = assignment.partition("=")
        if not sep:
            raise click.BadParameter(f"expected KEY=VALUE, got {assignment!r}")
        if value == "-":
            value = click.prompt(key, hide_input=True)
        changes[key.strip()] = value
    for line in set_destination(
        config, shop, name, changes, test_mode, enable, conflict_policy
    ):
        click.echo(line)
    _queue_conflict_check(config, shop, name)


def _queue_conflict_check(config: Config, shop: str, name: str) -> None:
    """Settings changed: send what a pause held and check conflicts again,
    if Redis can be reached."""
    from relay import conflicts
    from relay.deadletters import resume_held

    try:
        runtime = _runtime(config)
        resumed = resume_held(runtime, shop, name)
        conflicts.queue_check(runtime, shop, name)
    except (click.ClickException, RelayError, OSError) as error:
        reason = error.message if isinstance(error, click.ClickException) else error
        click.echo(
            f"nothing queued ({reason}); run `relay retry` and `relay check-conflicts`"
        )
        return
    if resumed:
        click.echo(f"{_deliveries(resumed, 'held')} queued again")
    click.echo("conflict check queued")


@destinations.command("connect")
@click.argument("name")
@click.option("--shop", required=True, help="The shop's myshopify.com domain.")
@click.option("--account", "account_id", help="The ad account to send to.")
@click.option("--tag", "tag_id", help="The account's tag to compare against.")
@click.option(
    "--port",
    default=8085,
    show_default=True,
    help="Local port the platform redirects back to (register "
    "http://localhost:PORT/callback as a redirect URI of your app).",
)
@click.option("--wait", default=300, show_default=True, help="Seconds to wait.")
@click.pass_obj
def destinations_connect(
    config: Config,
    name: str,
    shop: str,
    account_id: str | None,
    tag_id: str | None,
    port: int,
    wait: int,
) -> None:
    """Connect SHOP to destination NAME by OAuth, from a terminal.

    Prints the platform's authorization URL, waits for the redirect back on
    localhost, then lists the ad accounts to choose from and saves the
    settings (a conversion token is minted for sending).
    """
    from urllib.parse import parse_qs, urlsplit

    from relay import conflicts, connections
    from relay.localcallback import wait_for_callback

    runtime = _runtime(config)
    redirect_uri = f"http://localhost:{port}/callback"
    url = connections.start(runtime, shop, name, redirect_uri)
    state = parse_qs(urlsplit(url).query)["state"][0]
    click.echo(f"Open this address in a browser and allow Relay:\n\n  {url}\n")
    params = wait_for_callback(port, wait, state)
    if params.get("error"):
        raise click.ClickException(f"not connected: {params['error']}")
    connections.finish(runtime, name, params.get("state", ""), params.get("code", ""))
    click.echo(f"{name} connected for {shop}.")

    accounts = connections.accounts(runtime, shop, name)
    account_id = account_id or _choose("ad account", accounts)
    tags = connections.tags(runtime, shop, name, account_id)
    if tag_id is None and len(tags) > 1:
        tag_id = _choose("tag", tags)
    saved = connections.choose_account(runtime, shop, name, account_id, tag_id)
    shown = ", ".join(f"{k}={v}" for k, v in sorted(saved.items()))
    click.echo(f"saved: {shown} (and a conversion token, never shown)")
    conflicts.queue_check(runtime, shop, name)
    click.echo("conflict check queued; see `relay check-conflicts`")


def _choose(what: str, choices: list[Any]) -> str:
    if not choices:
        raise click.ClickException(f"the connection sees no {what}")
    if len(choices) == 1:
        return str(choices[0].id)
    for number, choice in enumerate(choices, 1):
        click.echo(f"  {number}. {choice.name} ({choice.id}) {choice.detail}".rstrip())
    picked = click.prompt(f"Which {what}", type=click.IntRange(1, len(choices)))
    return str(choices[picked - 1].id)


@cli.command("check-conflicts")
@click.option("--shop", required=True, help="The shop's myshopify.com domain.")
@click.option("--destination", "only", help="Only this destination.")
@click.option("--last", is_flag=True, help="Show the last result; check nothing.")
@click.pass_obj
def check_conflicts(config: Config, shop: str, only: str | None, last: bool) -> None:
    """Check now whether a native integration also sends SHOP's conversions.

    Exits with status 1 while a conflict stands unacknowledged.
    """
    from relay import conflicts
    from relay.shops import active_destinations, find_shop

    runtime = _runtime(config)
    with runtime.db.session() as session:
        shop_row = find_shop(session, shop)
        if shop_row is None:
            raise click.ClickException(f"no shop {shop!r} (see `relay shops list`)")
        names = [only] if only else active_destinations(session, shop_row)
        stored = {n: conflicts.last_result(session, shop_row, n) for n in names}
    if not names:
        raise click.ClickException(f"{shop} has no destination set up")
    standing = 0
    for name in names:
        result = stored[name] if last else conflicts.check(runtime, shop, name)
        if result is None:
            click.echo(f"{name} for {shop}: not checked yet")
            continue
        for line in conflicts.describe(result):
            click.echo(line)
        standing += len(result.standing_conflicts())
    if standing:
        # For scripts: a conflict nobody has acknowledged yet.
        raise SystemExit(1)


@cli.command("acknowledge-conflict")
@click.argument("finding_id")
@click.option("--shop", required=True, help="The shop's myshopify.com domain.")
@click.option("--destination", default="pinterest", show_default=True)
@click.pass_obj
def acknowledge_conflict(
    config: Config, finding_id: str, shop: str, destination: str
) -> None:
    """Record that the merchant has seen finding FINDING_ID and acted on it."""
    from relay import conflicts

    finding = conflicts.acknowledge(_runtime(config), shop, destination, finding_id)
    click.echo(f"acknowledged: {finding.signal}: {finding.summary}")


# -- the log and maintenance ------------------------------------------------------


DELIVERY_STATUSES = ["queued", "retrying", "held", "sent", "failed", "skipped"]


@cli.command()
@click.option("--shop", help="Only this shop.")
@click.option(
    "--status",
    type=click.Choice(DELIVERY_STATUSES),
    help="Only this status.",
)
@click.option("--order", "order_id", help="Only this Shopify order id.")
@click.option("--customer", "customer_id", help="Only this Shopify customer id.")
@click.option("--limit", default=20, show_default=True)
@click.option(
    "--failed",
    is_flag=True,
    help="Only deliveries that failed for good (`relay retry` sends them again).",
)
@click.option(
    "--summary",
    is_flag=True,
    help="Count deliveries by destination, status and reason instead.",
)
@click.option(
    "--since",
    metavar="TIME",
    help="Only deliveries made since TIME (ISO 8601, UTC if no offset); "
    "with --summary the default is the last 24 hours.",
)
@click.pass_obj
def deliveries(
    config: Config,
    shop: str | None,
    status: str | None,
    order_id: str | None,
    customer_id: str | None,
    limit: int,
    failed: bool,
    summary: bool,
    since: str | None,
) -> None:
    """The most recent deliveries, newest first.

    A delivery is queued, retrying (the platform or network failed; RQ
    tries again), held (its destination is paused), sent, failed (for good)
    or skipped (with the reason).
    """
    if failed:
        if status not in (None, "failed"):
            raise click.UsageError("--failed shows failed deliveries; drop --status")
        status = "failed"
    from relay.admin import DeliveryFilter, delivery_summary, recent_deliveries

    start = _time_option(since)
    if summary:
        if order_id or customer_id:
            raise click.UsageError(
                "--summary counts a shop's deliveries, not an order's or a customer's"
            )
        start = start or datetime.now(timezone.utc) - timedelta(days=1)
        for line in delivery_summary(config, shop, start, status):
            click.echo(line)
        return
    wanted = DeliveryFilter(shop, status, order_id, customer_id, start)
    for line in recent_deliveries(config, wanted, limit):
        click.echo(line)


@cli.command()
@click.option("--shop", help="Only this shop.")
@click.option("--destination", help="Only this destination.")
@click.option("--since", metavar="TIME", help="Only deliveries made since TIME.")
@click.pass_obj
def retry(
    config: Config, shop: str | None, destination: str | None, since: str | None
) -> None:
    """Send failed deliveries again, while their events are still kept.

    Each keeps its event id, so a platform that did receive one before
    counts it once.
    """
    from relay.deadletters import retry_failed
    from relay.shops import find_shop

    runtime = _runtime(config)
    if shop is not None:
        with runtime.db.session() as session:
            if find_shop(session, shop) is None:
                raise click.ClickException(f"no shop {shop!r} (see `relay shops list`)")
    if destination is not None and destination not in runtime.plugins.destinations:
        raise click.ClickException(f"no destination {destination!r}")
    done = retry_failed(runtime, shop, destination, _time_option(since))
    click.echo(
        f"{_deliveries(done.queued, 'failed')} queued again"
        + (f"; {done.expired} not, their event expired" if done.expired else "")
        + (f"; {_deliveries(done.resumed, 'held')} resumed" if done.resumed else "")
    )


@cli.group()
def shops() -> None:
    """The shops Relay knows."""


@shops.command("list")
@click.pass_obj
def shops_list(config: Config) -> None:
    """Every shop, installed or not."""
    from relay.admin import list_shops

    for line in list_shops(config):
        click.echo(line)


@shops.command("reinstall")
@click.argument("domain")
@click.pass_obj
def shops_reinstall(config: Config, domain: str) -> None:
    """Mark DOMAIN installed again, so its events are sent.

    Until Relay records installs itself, this is how an operator undoes an
    `app/uninstalled` for a shop that installed the app again.
    """
    from relay.admin import reinstall_shop

    click.echo(reinstall_shop(config, domain))


@shops.command("consent-policy")
@click.argument("domain")
@click.argument("policy", type=click.Choice(POLICIES))
@click.pass_obj
def shops_consent_policy(config: Config, domain: str, policy: str) -> None:
    """Set which events DOMAIN's visitors' consent lets Relay send.

    standard: everything but what a visitor refused (a refusal of the sale
    of their data is sent flagged for Limited Data Processing).
    strict: only events of visitors whose browser gave marketing consent.
    See docs/consent.md.
    """
    from relay.admin import set_consent_policy

    click.echo(set_consent_policy(config, domain, policy))


@shops.command("set-up")
@click.argument("domain")
@click.pass_obj
def shops_set_up(config: Config, domain: str) -> None:
    """Create or update Relay's Web Pixel in a shop now."""
    from relay.shopify.install import set_up_shop

    pixel_id = set_up_shop(_runtime(config), domain)
    click.echo(f"{domain}: web pixel {pixel_id or 'not set up (not installed)'}")


@cli.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(config: Config) -> None:
    """Apply every pending migration (the release process runs this)."""
    from relay.database import Database

    Database(config.sqlalchemy_url).upgrade()
    click.echo("database is up to date")


@cli.group()
def secrets() -> None:
    """Keys for secrets at rest."""


@secrets.command("new-key")
def secrets_new_key() -> None:
    """Print a new key for RELAY_SECRET_KEY."""
    from relay.secrets import new_key

    click.echo(new_key())


@secrets.command("rotate")
@click.pass_obj
def secrets_rotate(config: Config) -> None:
    """Re-encrypt every stored secret with the first key of RELAY_SECRET_KEY."""
    from relay.admin import rotate_secrets

    click.echo(f"re-encrypted {rotate_secrets(config)} settings")


# -- helpers -------------------------------------------------------------------


def _runtime(config: Config) -> Any:
    """A runtime on REDIS_URL, or on the embedded Redis `relay serve` runs."""
    from relay.devserver import REDIS_URL_FILE
    from relay.runtime import Runtime

    url = config.redis_url
    url_file = config.instance_path / REDIS_URL_FILE
    if url is None and url_file.exists():
        url = url_file.read_text().strip()
    if url is None:
        raise click.ClickException(
            "no Redis: set REDIS_URL, or start `relay serve` "
            "(it runs an embedded Redis)"
        )
    return Runtime.build(config, redis_url=url)


def _deliveries(count: int, kind: str) -> str:
    return f"{count} {kind} {'delivery' if count == 1 else 'deliveries'}"


def _time_option(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 time", param_hint="--since"
        ) from None
    if not 2000 <= moment.year <= 2100:
        raise click.BadParameter(
            f"{text!r} is outside the years 2000 to 2100", param_hint="--since"
        )
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _read_json(file: Path) -> dict[str, Any]:
    try:
        payload = json.loads(file.read_bytes())
    except ValueError as error:
        raise BadInput(f"{file}: not JSON ({error})") from None
    if not isinstance(payload, dict):
        raise BadInput(f"{file}: expected a JSON object")
    return payload


if __name__ == "__main__":
    main()
