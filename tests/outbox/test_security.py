from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from huiyuan.outbox.security import UnsafeTarget, check_target, sign, verify_signature


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/hook",
        "http://localhost:9000/hook",
        "http://192.168.1.20/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://100.64.0.1/hook",
    ],
)
def test_refuses_non_public_targets(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_target(url, allow_private=False)
    check_target(url, allow_private=True)  # the setting lets local development through


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://1.1.1.1/", "http:///nohost"]
)
def test_refuses_other_schemes_even_when_private_allowed(url: str) -> None:
    with pytest.raises(UnsafeTarget):
        check_target(url, allow_private=True)


def test_public_literal_is_allowed() -> None:
    check_target("https://93.184.215.14/hook", allow_private=False)


def test_unresolvable_host_is_refused() -> None:
    with pytest.raises(UnsafeTarget, match="does not resolve"):
        check_target("https://no-such-host.invalid/hook", allow_private=False)


@given(st.binary(max_size=500), st.text(min_size=1, max_size=40))
def test_signature_round_trip(body: bytes, secret: str) -> None:
    now = int(time.time())
    header = sign(secret, now, body)
    assert header.startswith("v1=")
    assert verify_signature(secret, now, body, header)
    assert verify_signature(secret, str(now), body, f"v1=deadbeef, {header}")  # rotation: one match is enough
    assert not verify_signature(secret + "x", now, body, header)
    assert not verify_signature(secret, now, body + b"x", header)
    assert not verify_signature(secret, now + 1, body, header)


def test_signature_outside_tolerance_is_refused() -> None:
    old = int(time.time()) - 301
    header = sign("s", old, b"{}")
    assert not verify_signature("s", old, b"{}", header, tolerance=300)
    assert verify_signature("s", old, b"{}", header, tolerance=400)
    assert not verify_signature("s", "not-a-number", b"{}", header)
    assert not verify_signature("s", old, b"{}", "", tolerance=400)
