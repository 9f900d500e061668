"""Normalizing and hashing the personal fields ad platforms match on.

The rules are the ones the big conversion APIs share (Pinterest's are the
reference): normalize, then SHA-256 as lowercase hex. Each function returns
None for a value that is empty or unusable, so an empty field is omitted
rather than hashed. A value that already is a SHA-256 digest passes through.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import phonenumbers

_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_NOT_ALNUM = re.compile(r"[\W_]+", re.UNICODE)
_WHITESPACE = re.compile(r"\s+", re.UNICODE)


def sha256(value: str) -> str:
    """Lowercase hex SHA-256 of the UTF-8 bytes of `value`."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def is_digest(value: str) -> bool:
    """Whether `value` already is a SHA-256 hex digest."""
    return bool(_DIGEST.fullmatch(value.strip().lower()))


def hashed(normalized: str | None, raw: str | None) -> str | None:
    """The digest to send for a field: `raw` itself if it already is one."""
    if raw is not None and is_digest(raw):
        return raw.strip().lower()
    return sha256(normalized) if normalized else None


def email(raw: str | None) -> str | None:
    """Trimmed and lowercased."""
    text = _clean(raw)
    return text.lower() if text else None


def phone(raw: str | None, country: str | None) -> str | None:
    """Digits only with the country code, e.g. "14155550100".

    A number without a country code is read as belonging to `country` (the
    buyer's address). A number the phonenumbers library does not judge
    possible is dropped: sending it would only ever match the wrong person.
    """
    text = _clean(raw)
    if not text:
        return None
    region = country.strip().upper() if country and len(country.strip()) == 2 else None
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return e164.lstrip("+")


def name(raw: str | None) -> str | None:
    """Lowercased and trimmed; runs of inner spaces become one."""
    text = _clean(raw)
    return _WHITESPACE.sub(" ", text).lower() if text else None


def city(raw: str | None) -> str | None:
    """Lowercased, without spaces or punctuation; accents are kept."""
    text = _clean(raw)
    if not text:
        return None
    return _NOT_ALNUM.sub("", text).lower() or None


def region(raw: str | None) -> str | None:
    """The subdivision code in lowercase: "ON" → "on", "JP-13" → "13".

    Shopify's province codes are usually two letters; some countries use an
    ISO 3166-2 form with the country in front, which is dropped.
    """
    text = _clean(raw)
    if not text:
        return None
    code = text.rsplit("-", 1)[-1].lower()
    return code if code.isalnum() and len(code) <= 3 else None


def country(raw: str | None) -> str | None:
    """ISO 3166-1 alpha-2 in lowercase: "CA" → "ca"."""
    text = _clean(raw)
    if not text or len(text) != 2 or not text.isalpha():
        return None
    return text.lower()


def postal_code(raw: str | None, country_code: str | None) -> str | None:
    """US: the first five digits. Elsewhere: lowercase letters and digits only."""
    text = _clean(raw)
    if not text:
        return None
    if country_code and country_code.strip().upper() == "US":
        digits = "".join(ch for ch in text if ch.isdigit())
        return digits[:5] if len(digits) >= 5 else None
    return _NOT_ALNUM.sub("", text).lower() or None


def external_id(raw: str | None) -> str | None:
    """The store's own id for the person, trimmed."""
    return _clean(raw)


def _clean(raw: str | None) -> str | None:
    if raw is None:
        return None
    text = unicodedata.normalize("NFC", str(raw)).strip()
    return text or None


def email_sha256(raw: str | None) -> str | None:
    """The digest platforms match an email by; None if there is no email."""
    return hashed(email(raw), raw)


def phone_sha256(raw: str | None, country: str | None) -> str | None:
    """The digest platforms match a phone number by; None if it is unusable."""
    return hashed(phone(raw, country), raw)
