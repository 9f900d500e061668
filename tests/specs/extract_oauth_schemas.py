"""Write pinterest-oauth-ads.schema.json from Pinterest's OpenAPI description.

The fake Pinterest in tests/fake_pinterest_api.py checks the requests Relay
makes to the OAuth and ads endpoints, and its own answers, against these
schemas. They are Pinterest's component schemas, translated from OpenAPI
3.0 to JSON Schema 2020-12: `$ref`s become `$defs` references, `nullable`
adds "null" to `type`, `example` becomes `examples`, and `discriminator`
(an OpenAPI-only hint) is dropped.

    python tests/specs/extract_oauth_schemas.py path/to/pinterest-api-v5-openapi.json

(The OpenAPI file is pinterest/api-description's v5/openapi.json, 5.23.0.)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

WANTED = [
    "OauthAccessTokenRequestCode",
    "OauthAccessTokenRequestRefresh",
    "OauthAccessTokenResponseCode",
    "OauthAccessTokenResponseRefresh",
    "ConversionAccessTokenResponse",
    "AdAccount",
    "ConversionTag",
    "Error",
]
OUT = Path(__file__).with_name("pinterest-oauth-ads.schema.json")


def translate(node: Any, used: set[str]) -> Any:
    if isinstance(node, list):
        return [translate(item, used) for item in node]
    if not isinstance(node, dict):
        return node
    result: dict[str, Any] = {}
    for key, value in node.items():
        if key == "$ref":
            name = value.rsplit("/", 1)[-1]
            used.add(name)
            result["$ref"] = f"#/$defs/{name}"
        elif key == "example":
            result["examples"] = [value]
        elif key in ("discriminator", "xml", "externalDocs", "nullable"):
            continue
        elif key == "properties":
            result[key] = {k: translate(v, used) for k, v in value.items()}
        else:
            result[key] = translate(value, used)
    if node.get("nullable") and "type" in result:
        types = result["type"] if isinstance(result["type"], list) else [result["type"]]
        result["type"] = [*types, "null"]
    return result


def main(openapi: Path) -> None:
    spec = json.loads(openapi.read_text())
    schemas = spec["components"]["schemas"]
    defs: dict[str, Any] = {}
    pending = list(WANTED)
    while pending:
        name = pending.pop()
        if name in defs:
            continue
        used: set[str] = set()
        defs[name] = translate(schemas[name], used)
        pending += sorted(used - set(defs))
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"From Pinterest API {spec['info']['version']} by "
        "tests/specs/extract_oauth_schemas.py; do not edit.",
        "$defs": dict(sorted(defs.items())),
    }
    OUT.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
