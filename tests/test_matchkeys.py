"""Normalizing and hashing match keys, against Pinterest's user_data rules.

The rules are section 3 of shared/reference/pinterest-capi.md; the hash
vectors are the ones listed in shared/specs/README.txt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import partial

import pytest

from relay import matchkeys

DIGEST = "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d"


def expected_digest(normalized: str) -> str:
    return hashlib.sha256(normalized.encode("utf-8")).hexdigest()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("jane@example.com", "jane@example.com"),
        ("  Jane.Doe@Example.COM ", "jane.doe@example.com"),
        ("\tJANE@EXAMPLE.COM\n", "jane@example.com"),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_email_is_trimmed_and_lowercased(raw, expected):
    assert matchkeys.email(raw) == expected


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("+1 (415) 555-0100", None, "14155550100"),
        ("+1 (415) 555-0100", "US", "14155550100"),
        ("+1 (415) 555-0100", "GB", "14155550100"),  # "+" beats the country
        ("(416) 555-0100", "CA", "14165550100"),
        ("(416) 555-0100", "ca", "14165550100"),
        ("020 7946 0018", "GB", "442079460018"),  # leading zero dropped
        ("+44 20 7946 0018", None, "442079460018"),
        ("12", "US", None),  # impossible
        ("12", None, None),
        ("not a phone", "US", None),
        (None, "US", None),
        ("", "US", None),
        ("   ", "US", None),
        ("(416) 555-0100", None, None),  # no country, no "+"
        ("(416) 555-0100", "Canada", None),  # not a two-letter country
    ],
)
def test_phone_is_digits_with_country_code(raw, country, expected):
    assert matchkeys.phone(raw, country) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Jane", "jane"),
        ("  Mary   Ann ", "mary ann"),
        ("Zoë", "zoë"),
        ("ZOË", "zoë"),
        ("Zoe\u0308", "zoë"),  # decomposed accent composed, so it hashes the same
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_name_is_lowercased_trimmed_and_single_spaced(raw, expected):
    assert matchkeys.name(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("San Francisco", "sanfrancisco"),
        ("Saint-Jérôme", "saintjérôme"),
        ("St. John's", "stjohns"),
        ("Montréal", "montréal"),
        ("Montre\u0301al", "montréal"),
        ("  MENLO PARK ", "menlopark"),
        ("...", None),
        ("", None),
        (None, None),
    ],
)
def test_city_loses_spaces_and_punctuation_but_keeps_accents(raw, expected):
    assert matchkeys.city(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ON", "on"),
        ("ca", "ca"),
        (" on ", "on"),
        ("JP-13", "13"),
        ("US-CA", "ca"),
        ("Ontario", None),  # a name, not a code
        ("", None),
        ("  ", None),
        (None, None),
    ],
)
def test_region_is_the_lowercase_subdivision_code(raw, expected):
    assert matchkeys.region(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("CA", "ca"),
        (" us ", "us"),
        ("Canada", None),
        ("CAN", None),
        ("", None),
        (None, None),
    ],
)
def test_country_is_the_lowercase_alpha_2_code(raw, expected):
    assert matchkeys.country(raw) == expected


@pytest.mark.parametrize(
    ("raw", "country", "expected"),
    [
        ("94103", "US", "94103"),
        ("94103-1234", "US", "94103"),
        ("94103-1234", "us", "94103"),
        ("9410", "US", None),
        ("X0X 0X0", "CA", "x0x0x0"),
        ("SW1A 1AA", "GB", "sw1a1aa"),
        ("10115", "DE", "10115"),
        ("X0X 0X0", None, "x0x0x0"),
        ("", "US", None),
        (None, "US", None),
    ],
)
def test_postal_code_is_five_digits_in_the_us_and_compact_elsewhere(
    raw, country, expected
):
    assert matchkeys.postal_code(raw, country) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("7712345678901", "7712345678901"),
        (" 7712345678901 ", "7712345678901"),
        ("", None),
        ("  ", None),
        (None, None),
    ],
)
def test_external_id_is_trimmed(raw, expected):
    assert matchkeys.external_id(raw) == expected


@pytest.mark.parametrize(
    "normalized",
    ["jane.doe@example.com", "14155550100", "zoë", "saintjérôme", "x0x0x0"],
)
def test_sha256_is_lowercase_hex_of_the_utf8_bytes(normalized):
    assert matchkeys.sha256(normalized) == expected_digest(normalized)


def test_sha256_matches_the_spec_email_vector():
    assert matchkeys.sha256("jane.doe@example.com") == DIGEST


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (DIGEST, True),
        (DIGEST.upper(), True),
        (f"  {DIGEST} ", True),
        (DIGEST[:-1], False),
        (DIGEST + "0", False),
        ("g" + DIGEST[1:], False),
        ("jane.doe@example.com", False),
        ("", False),
    ],
)
def test_is_digest_recognizes_64_hex_characters(value, expected):
    assert matchkeys.is_digest(value) is expected


@pytest.mark.parametrize(
    ("normalized", "raw", "expected"),
    [
        ("jane.doe@example.com", "Jane.Doe@Example.com", DIGEST),
        (DIGEST, DIGEST, DIGEST),  # not hashed a second time
        (None, DIGEST, DIGEST),
        (None, DIGEST.upper(), DIGEST),  # sent as lowercase hex
        ("", "   ", None),
        (None, None, None),
        ("", "", None),
    ],
)
def test_hashed_hashes_the_normalized_value_or_passes_a_digest(
    normalized, raw, expected
):
    assert matchkeys.hashed(normalized, raw) == expected


NORMALIZERS: dict[str, Callable[[str | None], str | None]] = {
    "em": matchkeys.email,
    "ph": partial(matchkeys.phone, country="US"),
    "fn": matchkeys.name,
    "ct": matchkeys.city,
    "st": matchkeys.region,
    "zp": partial(matchkeys.postal_code, country_code="US"),
    "country": matchkeys.country,
    "external_id": matchkeys.external_id,
}


@pytest.mark.parametrize("field", NORMALIZERS)
def test_hashed_passes_a_digest_unchanged_through_every_normalizer(field):
    normalize = NORMALIZERS[field]

    assert matchkeys.hashed(normalize(DIGEST), DIGEST) == DIGEST


@pytest.mark.parametrize("raw", ["", "   ", None])
@pytest.mark.parametrize("field", NORMALIZERS)
def test_hashed_gives_none_for_an_empty_field_never_the_hash_of_nothing(field, raw):
    normalize = NORMALIZERS[field]

    assert normalize(raw) is None
    assert matchkeys.hashed(normalize(raw), raw) is None


# shared/specs/README.txt, "Hash test vectors" (ge and db have no normalizer).
HASH_VECTORS = [
    (
        matchkeys.email,
        "  Jane.Doe@Example.COM ",
        "jane.doe@example.com",
        "86e0b9e56c17cc4d12387e1949b85053fbe73bc3ce5a1188713a9d300cc6133d",
    ),
    (
        partial(matchkeys.phone, country=None),
        "+1 (415) 555-0100",
        "14155550100",
        "5e7ec4c79ccac6e420876e65ad0e6b4b2ccf73ec3dccb50297bf2890a1ec73b9",
    ),
    (
        matchkeys.name,
        "Jane",
        "jane",
        "81f8f6dde88365f3928796ec7aa53f72820b06db8664f5fe76a7eb13e24546a2",
    ),
    (
        matchkeys.name,
        "Doe",
        "doe",
        "799ef92a11af918e3fb741df42934f3b568ed2d93ac1df74f1b8d41a27932a6f",
    ),
    (
        matchkeys.city,
        "San Francisco",
        "sanfrancisco",
        "1a6bd4d9d79dc0a79b53795c70d3349fa9e38968a3fbefbfe8783efb1d2b6aac",
    ),
    (
        matchkeys.region,
        "CA",
        "ca",
        "6959097001d10501ac7d54c0bdb8db61420f658f2922cc26e46d536119a31126",
    ),
    (
        partial(matchkeys.postal_code, country_code="US"),
        "94103",
        "94103",
        "91dc2519ea98c5002cf2091e6a12b772eafdce9dca618e626d7d3b8275361789",
    ),
    (
        matchkeys.country,
        "US",
        "us",
        "79adb2a2fce5c6ba215fe5f27f532d4e7edbac4b6a5e09e1ef3a08084a904621",
    ),
    (
        matchkeys.external_id,
        "7208124530972",
        "7208124530972",
        "b6cb40156dc56db0e9b808e2daf31c420dae2b3c4b4d6f129f6956b37a78df70",
    ),
]


@pytest.mark.parametrize(
    ("normalize", "raw", "normalized", "digest"),
    HASH_VECTORS,
    ids=["em", "ph", "fn", "ln", "ct", "st", "zp", "country", "external_id"],
)
def test_spec_hash_vectors_survive_normalizing_and_hashing(
    normalize, raw, normalized, digest
):
    assert normalize(raw) == normalized
    assert matchkeys.sha256(normalized) == digest
    assert matchkeys.hashed(normalize(raw), raw) == digest
