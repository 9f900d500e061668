"""Storefront pages as the conflict check reads them, for the tests."""

from __future__ import annotations

import json

from tests.conftest import SHOP

OTHER_TAG = "2619999999999"
RELAY_PIXEL = {
    "id": "88001",
    "configuration": json.dumps(
        {"relayUrl": "https://relay.example/pixel", "shopDomain": SHOP}
    ),
    "eventPayloadVersion": "v1",
    "runtimeContext": "STRICT",
    "type": "APP",
    "apiClientId": 901,
    "privacyPurposes": ["MARKETING", "SALE_OF_DATA"],
}


def pinterest_pixel(tag_id: str) -> dict:
    """Pinterest's app pixel as the web pixels manager lists it."""
    return {
        "id": "77001",
        "configuration": json.dumps({"tagId": tag_id, "enhancedMatch": "true"}),
        "eventPayloadVersion": "v1",
        "runtimeContext": "STRICT",
        "scriptVersion": "0.0.4",
        "type": "APP",
        "apiClientId": 2329312,
        "privacyPurposes": ["ANALYTICS", "MARKETING", "SALE_OF_DATA"],
    }


def storefront(pixels: list[dict] | None = None, body: str = "") -> str:
    setup = (
        '<script id="web-pixels-manager-setup">(function e(e,t){})'
        '({"shopId":60123456789,"storefrontBaseUrl":"https://www.example-shop.com",'
        f"webPixelsConfigList:{json.dumps(pixels or [RELAY_PIXEL])},"
        "isMerchantRequest:false});</script>"
    )
    return f"<!doctype html><html><head>{setup}</head><body>{body}</body></html>"


PASTED = (
    "<script>!function(e){{window.pintrk=function(){{}}}}"
    '("https://s.pinimg.com/ct/core.js");'
    "pintrk('load', '{tag}', {{em: ''}});pintrk('page');</script>"
)
