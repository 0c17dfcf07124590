"""Coupon codes: format validation, the Luhn mod N check character, generation and code files."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from huiyuan.coupons.codes import (
    DEFAULT_ALPHABET,
    CodeFormat,
    CodeSpaceExhausted,
    capacity,
    check_char,
    display,
    generate,
    is_valid,
    max_batch,
    normalise,
    parse_import,
    why_invalid,
)

FMT = CodeFormat()


def reference_check(alphabet: str, body: str) -> str:
    """Luhn mod N as the reference describes it, written independently of the module's version."""
    n = len(alphabet)
    factor, total = 2, 0
    for char in reversed(body):
        addend = factor * alphabet.index(char)
        total += addend // n + addend % n
        factor = 3 - factor
    return alphabet[(n - total % n) % n]


# --- CodeFormat ------------------------------------------------------------------------------------


def test_default_format() -> None:
    assert FMT.alphabet == DEFAULT_ALPHABET
    assert (FMT.length, FMT.check, FMT.prefix, FMT.group) == (12, True, None, None)
    assert not set(DEFAULT_ALPHABET) & set("01OIL")
    assert len(DEFAULT_ALPHABET) % 2 == 0
    assert capacity(FMT) == 30**12


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"alphabet": "ABCDEFGHJ"}, "at least 10"),
        ({"alphabet": "ABCDEFGHJKA"}, "repeats"),
        ({"alphabet": "abcdefghjk"}, "uppercase"),
        ({"alphabet": "ABCDE-FGHJK"}, "uppercase"),
        ({"alphabet": "ABCDE FGHJK"}, "uppercase"),
        ({"alphabet": "23456789ABCDEFGHJKMNPQRSTUVWXYZ"}, "even size"),
        ({"length": 5}, "greater than or equal to 6"),
        ({"length": 33}, "less than or equal to 32"),
        ({"prefix": "TOOLONGPX"}, "at most 8"),
        ({"prefix": "VIP-1"}, "letters A-Z and digits"),
        ({"prefix": "会员"}, "letters A-Z and digits"),
        ({"group": 1}, "greater than or equal to 2"),
        ({"checksum": True}, "Extra inputs are not permitted"),
    ],
)
def test_format_refuses(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        CodeFormat.model_validate(fields)


def test_format_accepts_and_tidies() -> None:
    assert CodeFormat(prefix="vip8").prefix == "VIP8"
    assert CodeFormat(prefix="").prefix is None
    # An odd alphabet is fine without a check character.
    assert CodeFormat(alphabet="0123456789A", check=False).check is False
    assert CodeFormat(alphabet="0123456789", length=6).length == 6
    # Round trip through the JSON a template stores.
    fmt = CodeFormat(prefix="S1", group=4, length=8)
    assert CodeFormat.model_validate(fmt.model_dump(mode="json")) == fmt


# --- the check character ---------------------------------------------------------------------------


def test_check_char_matches_reference() -> None:
    # The worked example of the reference (alphabet "abcdef", input "abcdef" gives "e"), uppercased
    # and padded to the 10 characters an alphabet needs.
    fmt = CodeFormat(alphabet="ABCDEFGHJK")
    assert reference_check("ABCDEF", "ABCDEF") == "E"
    for body in ("ABCDEF", "KKKKKK", "AAAAAA", "JHGFEDCBA"):
        assert check_char(fmt, body) == reference_check(fmt.alphabet, body)
    with pytest.raises(ValueError, match="'Z' is not in the alphabet"):
        check_char(fmt, "ABZ")


@settings(max_examples=200)
@given(st.text(alphabet=DEFAULT_ALPHABET, min_size=1, max_size=32))
def test_check_char_property(body: str) -> None:
    check = check_char(FMT, body)
    assert check == reference_check(DEFAULT_ALPHABET, body)
    if len(body) == FMT.length:
        assert is_valid(FMT, body + check)


def test_generated_check_column_agrees_with_scalar() -> None:
    rng = np.random.default_rng(7)
    for length in (6, 7, 12, 13, 32):  # both parities of body length
        fmt = CodeFormat(length=length)
        for code in generate(fmt, 300, rng=rng):
            assert code[-1] == reference_check(fmt.alphabet, code[:-1])


@pytest.mark.parametrize("alphabet", [DEFAULT_ALPHABET, "0123456789", "ABCDEFGHJKMNPQRSTVWXYZ0123456789"])
def test_every_single_substitution_is_caught(alphabet: str) -> None:
    fmt = CodeFormat(alphabet=alphabet)
    for code in generate(fmt, 5, rng=np.random.default_rng(1)):
        assert is_valid(fmt, code)
        for i, original in enumerate(code):
            for other in alphabet:
                if other != original:
                    assert not is_valid(fmt, code[:i] + other + code[i + 1 :]), (code, i, other)


def test_adjacent_transpositions_caught_but_first_and_last() -> None:
    """Every swap of two different adjacent characters, the check character included, is caught
    except the first and last characters of the alphabet (Luhn's 09 <-> 90)."""
    alphabet, length = DEFAULT_ALPHABET, FMT.length
    base = "23456789ABCD"
    missed: set[frozenset[str]] = set()
    tried = 0
    for i in range(length):  # swap positions i and i + 1; the last i pairs the body's end with the check
        for a in alphabet:
            for b in alphabet:
                body = base[:i] + a + b + base[i + 2 :] if i < length - 1 else base[: i - 1] + b + a
                code = body + check_char(FMT, body)
                x, y = code[i], code[i + 1]
                if x == y:
                    continue
                tried += 1
                if is_valid(FMT, code[:i] + y + x + code[i + 2 :]):
                    missed.add(frozenset((x, y)))
    assert tried > 10_000
    assert missed == {frozenset((alphabet[0], alphabet[-1]))}


def test_is_valid_and_why_invalid() -> None:
    fmt = CodeFormat(prefix="VIP", length=8, group=4)
    code = generate(fmt, 1, rng=np.random.default_rng(5))[0]
    assert is_valid(fmt, code)
    assert is_valid(fmt, display(fmt, code).lower())
    assert is_valid(fmt, " " + " ".join(code) + " ")
    assert why_invalid(fmt, code) is None
    assert why_invalid(fmt, "XYZ" + code[3:]) == "does not start with VIP"
    assert "expected 9" in (why_invalid(fmt, code[:-1]) or "")
    assert "outside the alphabet: O" in (why_invalid(fmt, code[:-2] + "O" + code[-1]) or "")
    other = next(c for c in fmt.alphabet if c != code[-1])
    assert why_invalid(fmt, code[:-1] + other) == "the check character does not match (a typo?)"
    assert not is_valid(fmt, "")
    assert not is_valid(fmt, "VIP")


def test_normalise_and_display() -> None:
    assert normalise(FMT, " ab－cd\u3000ef-gh—jk ") == "ABCDEFGHJK"
    assert normalise(FMT, "ＡＢＣ２３") == "ABC23"  # full-width input from Chinese IMEs
    fmt = CodeFormat(prefix="VIP", group=4, length=8)
    assert display(fmt, "VIPABCDEFGHJ") == "VIP-ABCD-EFGH-J"
    assert display(fmt, "vip-abcd-efgh-j") == "VIP-ABCD-EFGH-J"
    assert display(CodeFormat(group=5), "ABCDEFGHJKMNP") == "ABCDE-FGHJK-MNP"
    assert display(FMT, "abcd-efgh") == "ABCDEFGH"


# --- generation ------------------------------------------------------------------------------------


def test_generate_many_unique_valid_codes() -> None:
    codes = generate(FMT, 100_000)
    assert len(codes) == 100_000
    assert len(set(codes)) == len(codes)
    shape = re.compile(f"[{DEFAULT_ALPHABET}]{{13}}")
    assert all(shape.fullmatch(c) for c in codes)
    assert all(c[-1] == check_char(FMT, c[:-1]) for c in codes[:2_000])
    # Rejection sampling keeps the characters uniform: with plain "% 30" on bytes the first 16
    # characters would come up 12 % more often than the others. Expected 40,000 each, sd ~200.
    counts = Counter("".join(c[:-1] for c in codes))
    assert set(counts) == set(DEFAULT_ALPHABET)
    assert max(counts.values()) < 41_500
    assert min(counts.values()) > 38_500


def test_generate_with_prefix_and_lengths() -> None:
    fmt = CodeFormat(prefix="S8", length=6, alphabet="0123456789", check=False)
    codes = generate(fmt, 1_000)
    assert all(re.fullmatch(r"S8\d{6}", c) for c in codes)
    assert len(set(codes)) == 1_000
    fmt = CodeFormat(length=32, prefix="LONG")
    assert all(len(c) == 37 and is_valid(fmt, c) for c in generate(fmt, 100))


def test_generate_edges() -> None:
    assert generate(FMT, 0) == []
    with pytest.raises(ValueError, match="cannot generate -1"):
        generate(FMT, -1)


def test_generate_refuses_more_than_a_safe_share() -> None:
    fmt = CodeFormat(alphabet="0123456789", length=6, check=False)
    assert capacity(fmt) == 1_000_000
    assert max_batch(fmt) == 10_000
    codes = generate(fmt, 10_000)  # duplicates among the draws are redrawn
    assert len(set(codes)) == 10_000
    with pytest.raises(ValueError, match=r"10,001 codes are more than 1% of the 1,000,000"):
        generate(fmt, 10_001)


def test_generate_is_reproducible_with_a_seeded_rng() -> None:
    a = generate(FMT, 50, rng=np.random.default_rng(42))
    b = generate(FMT, 50, rng=np.random.default_rng(42))
    assert a == b
    assert a != generate(FMT, 50)


def test_existing_codes_are_dropped_and_redrawn() -> None:
    calls: list[list[str]] = []
    claimed: set[str] = set()

    def existing(candidates: list[str]) -> set[str]:
        calls.append(candidates)
        # Claim every code starting with one of the first ten characters, plus one not asked about.
        taken = {c for c in candidates if c[0] in DEFAULT_ALPHABET[:10]}
        claimed.update(taken)
        return taken | {"NOT-ASKED"}

    codes = generate(FMT, 5_000, existing=existing, existing_batch=1_000)
    assert len(codes) == len(set(codes)) == 5_000
    assert not set(codes) & claimed
    assert all(c[0] not in DEFAULT_ALPHABET[:10] for c in codes)
    assert claimed  # about a third were refused and drawn again
    assert len(calls) > 5
    assert max(len(c) for c in calls) == 1_000
    asked = [c for call in calls for c in call]
    assert len(asked) == len(set(asked))  # a candidate is asked about once


def test_existing_that_claims_everything_gives_up() -> None:
    with pytest.raises(CodeSpaceExhausted, match="rounds found no code"):
        generate(FMT, 10, existing=lambda candidates: set(candidates))


# --- third-party code files ------------------------------------------------------------------------


def test_import_one_code_per_line() -> None:
    result = parse_import("AB12CD\n\n  EF34GH  \r\nAB12CD\nxy\n", None)
    assert result.header is False
    assert result.codes == ["AB12CD", "EF34GH"]
    assert result.duplicates == [{"line": 4, "code": "AB12CD", "first_line": 1}]
    assert result.invalid == [{"line": 5, "code": "xy", "reason": "has 2 characters, expected 4 to 64"}]


def test_import_header_bom_crlf() -> None:
    text = "\ufeffstore,Code,value\r\nS1,code-0001,10\r\n\r\nS2,code-0002,10\r\nS3,,10\r\n,,\r\n"
    result = parse_import(text, None)
    assert result.header is True
    assert result.codes == ["code-0001", "code-0002"]  # case kept when no format is given
    assert result.invalid == [{"line": 5, "code": "", "reason": "no code"}]


def test_import_chinese_header_and_quoting() -> None:
    result = parse_import('券码\n"QUOTED1"\n"WITH,COMMA"\n', None)
    assert result.header is True
    assert result.codes == ["QUOTED1", "WITH,COMMA"]


def test_import_without_format_checks_characters() -> None:
    text = "good-code\nhas space\n券码券码券码\nＦＵＬＬ１２\n" + "x" * 65 + "\n"
    result = parse_import(text, None)
    assert result.codes == ["good-code", "FULL12"]
    assert [(i["line"], i["reason"]) for i in result.invalid] == [
        (2, "holds spaces or characters other than visible ASCII"),
        (3, "holds spaces or characters other than visible ASCII"),
        (5, "has 65 characters, expected 4 to 64"),
    ]


def test_import_several_values_without_header() -> None:
    result = parse_import("AB12CD,5\nEF34GH\n", None)
    assert result.codes == ["EF34GH"]
    assert result.invalid == [
        {"line": 1, "code": "AB12CD,5", "reason": "several values: add a header with a code column"}
    ]


def test_import_with_format() -> None:
    fmt = CodeFormat(prefix="VIP", length=8, group=4)
    good = generate(fmt, 3, rng=np.random.default_rng(9))
    bad_check = good[0][:-1] + next(c for c in fmt.alphabet if c != good[0][-1])
    lines = ["code", display(fmt, good[0]).lower(), good[1], "", bad_check, good[0], "VIP123", good[2]]
    result = parse_import("\r\n".join(lines), fmt)
    assert result.header is True
    assert result.codes == good
    assert result.duplicates == [{"line": 6, "code": good[0], "first_line": 2}]
    assert [(i["line"], i["reason"]) for i in result.invalid] == [
        (5, "the check character does not match (a typo?)"),
        (7, "has 3 characters after the prefix, expected 9"),
    ]


def test_import_empty() -> None:
    for text in ("", "\ufeff", "\n\n  \n", "code\n"):
        result = parse_import(text, None)
        assert (result.codes, result.duplicates, result.invalid) == ([], [], [])
