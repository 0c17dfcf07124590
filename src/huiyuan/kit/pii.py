"""PII at rest: Fernet encryption (``cryptography``), keyed blind indexes for exact lookup, masking.

Phone numbers and e-mail addresses never reach the database in plaintext: the row keeps the Fernet
token and an HMAC-SHA256 "blind index" of the normalised value, so equality lookup and uniqueness
work without decrypting. Keys come from ``Settings``; ``MultiFernet`` lets old tokens decrypt while
``rotate`` re-encrypts them under the newest key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from huiyuan.settings import get_settings

_PHONE_STRIP = re.compile(r"[\s\-()]")


@lru_cache(maxsize=4)
def _fernet(keys: tuple[bytes, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k) for k in keys])


def _cipher() -> MultiFernet:
    return _fernet(tuple(get_settings().fernet_keys()))


def encrypt(value: str) -> str:
    return _cipher().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _cipher().decrypt(token.encode()).decode()
    except InvalidToken as exc:  # a key was removed before rotation finished
        raise RuntimeError("cannot decrypt PII: key missing; run `huiyuan keys rotate-pii`") from exc


def rotate(token: str) -> str:
    return _cipher().rotate(token.encode()).decode()


def normalise(kind: str, value: str) -> str:
    """Canonical form used for blind indexes and uniqueness."""
    value = value.strip()
    if kind == "phone":
        value = _PHONE_STRIP.sub("", value)
        if value.startswith("+86"):
            value = value[3:]
        elif value.startswith("0086"):
            value = value[4:]
        return value
    if kind == "email":
        return value.lower()
    return value


def blind_index(kind: str, value: str) -> str:
    """Keyed hash of ``kind:normalised value``; equal inputs give equal indexes, nothing else leaks."""
    msg = f"{kind}:{normalise(kind, value)}".encode()
    return hmac.new(get_settings().blind_key(), msg, hashlib.sha256).hexdigest()


def mask(kind: str, value: str | None) -> str | None:
    if value is None:
        return None
    if kind == "phone":
        return value[:3] + "****" + value[-4:] if len(value) >= 7 else "****"
    if kind == "email":
        local, _, domain = value.partition("@")
        return (local[:1] + "***@" + domain) if domain else "***"
    if len(value) <= 4:
        return "****"
    return value[:2] + "*" * (len(value) - 4) + value[-2:]
