"""Relay's web process: the embedded admin app, Shopify webhooks, a health check."""

from __future__ import annotations

import logging

from flask import Flask, jsonify
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from relay import logs
from relay.config import Config
from relay.runtime import Runtime

log = logging.getLogger(__name__)


def create_app(config: Config | None = None, runtime: Runtime | None = None) -> Flask:
    """Build the web app; with no arguments, from the environment."""
    config = config or (runtime.config if runtime else Config.from_env())
    logs.configure(config.log_level)
    runtime = runtime or Runtime.build(config)

    app = Flask(__name__)
    # A byte over the webhook limit, so the view sees an oversized body and
    # answers 413 itself however the body is framed.
    app.config["MAX_CONTENT_LENGTH"] = config.webhook_max_bytes + 1
    app.extensions["relay"] = runtime
    if not config.webhook_secrets:
        log.warning("webhooks: SHOPIFY_API_SECRET is not set; every webhook gets 401")

    from webapp import admin, connect, dashboard, devadmin, health, pixel, webhooks

    # Behind Heroku's router the app sees http:// and the router's address;
    # the package builds redirects from the URL the browser used, and a
    # visitor's IP comes from the one X-Forwarded-For entry the router adds.
    # The router passes Host as is.
    proxied = ProxyFix(app.wsgi_app, x_for=1, x_proto=1)
    app.wsgi_app = proxied  # type: ignore[method-assign]
    app.register_blueprint(admin.blueprint)
    app.register_blueprint(connect.blueprint)
    app.register_blueprint(dashboard.blueprint)
    if config.dev_admin:
        log.warning(
            "RELAY_DEV_ADMIN is on: anyone who reaches this server can open any "
            "shop's pages at /dev/admin?shop=...; never run it in production"
        )
        app.register_blueprint(devadmin.blueprint)
    app.register_blueprint(webhooks.blueprint)
    app.register_blueprint(pixel.blueprint)
    app.register_blueprint(health.blueprint)
    _register_error_handlers(app)
    return app


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):  # type: ignore[no-untyped-def]
        return jsonify(error=error.description), error.code

    @app.errorhandler(Exception)
    def unexpected(error: Exception):  # type: ignore[no-untyped-def]
        # A bug must not lose a webhook: answer so that Shopify retries later.
        log.exception("unexpected error while answering a request")
        return jsonify(error="temporary failure, retry later"), 503
