"""Consent policies: which events a shop lets Relay send, by what the visitor allowed.

Shopify loads Relay's pixel only for visitors who granted marketing and the
sale of their data (the `[customer_privacy]` block of the pixel's TOML), and
the pixel passes on every later change. So Relay knows a visitor's choice
when their browser was seen, and knows nothing for orders with no browser
behind them (a phone order, a visitor whose pixel never loaded).

- `standard` (the default): events are sent unless the visitor is known to
  have refused marketing. A visitor known to have refused the sale of their
  data is sent with Pinterest's `opt_out` and Limited Data Processing flags
  (the destination reads `Consent.sale_of_data`), and none of what their
  browser told Relay is used.
- `strict`: only events tied to a pixel session with marketing consent are
  sent; a refusal of the sale of data holds the event back too.

Skipped events are logged and counted with a reason starting "consent:".
"""

from __future__ import annotations

from relay.events import Consent

STANDARD = "standard"
STRICT = "strict"
POLICIES = (STANDARD, STRICT)
DEFAULT = STANDARD


def refusal(policy: str, consent: Consent, *, from_browser: bool = False) -> str | None:
    """Why `policy` holds back an event with `consent`, or None to send it.

    `from_browser`: the event is the pixel's own (a page view): all of it is
    what the browser told Relay, so a refusal of the sale of data holds it
    back under either policy.
    """
    if consent.marketing is False:
        return "consent: visitor refused marketing"
    if consent.sale_of_data is False and from_browser:
        return "consent: visitor refused the sale of their data"
    if policy == STRICT:
        if consent.marketing is not True:
            return "consent: no pixel session with marketing consent"
        if consent.sale_of_data is False:
            return "consent: visitor refused the sale of their data"
    return None
