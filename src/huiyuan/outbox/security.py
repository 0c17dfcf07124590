"""Webhook signatures and the guard against server-side request forgery (SSRF).

Signature scheme (``v1``), for receivers:

* We send ``X-Huiyuan-Timestamp: <unix seconds>`` and ``X-Huiyuan-Signature: v1=<hex>`` where
  ``<hex>`` is ``HMAC-SHA256(secret, f"{timestamp}.{body}")`` over the exact raw request body
  (UTF-8 JSON) and the secret shown once when the subscription was created.
* A receiver recomputes it over the raw body it received, compares in constant time, and refuses
  timestamps further than a tolerance (default 300 s) from its clock, which stops replays.
  ``verify_signature`` does exactly that and may be copied into a receiver as is. Several ``v1=``
  values separated by commas may appear (reserved for secret rotation); one match is enough.

SSRF guard: a webhook URL must be http(s) and every address its host resolves to must be public.
Loopback, private, link-local (cloud metadata at 169.254.169.254), multicast, reserved, unspecified
and other non-global addresses are refused, unless ``webhook_allow_private_targets`` is on (local
development, tests). It is checked when a subscription is created and again before every send,
because DNS answers change. Redirects are never followed, so a public host cannot bounce us inside.
This module does no I/O beyond DNS resolution and owns no database rows.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
import time
from urllib.parse import urlsplit

SIGNATURE_VERSION = "v1"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def sign(secret: str, timestamp: int | str, body: bytes | str) -> str:
    """The ``X-Huiyuan-Signature`` header value for this body and timestamp."""
    raw = body if isinstance(body, bytes) else body.encode()
    message = f"{timestamp}.".encode() + raw
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def verify_signature(
    secret: str,
    timestamp: int | str,
    body: bytes | str,
    header: str,
    tolerance: int = 300,
    *,
    now: float | None = None,
) -> bool:
    """True when ``header`` is a valid v1 signature of ``body`` at ``timestamp`` within tolerance."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        return False
    expected = sign(secret, ts, body)
    candidates = [part.strip() for part in (header or "").split(",")]
    return any(hmac.compare_digest(expected, c) for c in candidates if c.startswith(f"{SIGNATURE_VERSION}="))


class UnsafeTarget(ValueError):
    """The URL may not be called: wrong scheme, unresolvable, or a non-public address."""


def _refusal(addr: IPAddress) -> str | None:
    mapped = getattr(addr, "ipv4_mapped", None)
    if mapped is not None:
        addr = mapped
    for flag, label in (
        ("is_loopback", "loopback"),
        ("is_private", "private"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_reserved", "reserved"),
        ("is_unspecified", "unspecified"),
    ):
        if getattr(addr, flag):
            return label
    if not addr.is_global:  # shared address space (100.64/10), documentation ranges, …
        return "non-public"
    return None


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an IP literal resolves to itself)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeTarget(f"the host '{host}' does not resolve") from exc
    out: list[IPAddress] = []
    for info in infos:
        address = str(info[4][0]).split("%", 1)[0]  # drop an IPv6 zone id
        out.append(ipaddress.ip_address(address))
    if not out:
        raise UnsafeTarget(f"the host '{host}' does not resolve")
    return out


def check_target(url: str, *, allow_private: bool) -> None:
    """Raise ``UnsafeTarget`` unless ``url`` is http(s) and (when required) points at public hosts."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeTarget("only http and https URLs are allowed")
    host = parts.hostname
    if not host:
        raise UnsafeTarget("the URL has no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeTarget("the URL's port is not valid") from exc
    if allow_private:
        return
    for addr in resolve(host, port):
        reason = _refusal(addr)
        if reason is not None:
            raise UnsafeTarget(f"'{host}' resolves to {addr}, a {reason} address")
