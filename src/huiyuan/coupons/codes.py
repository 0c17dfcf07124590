"""Coupon codes: their format, the check character, bulk generation and third-party code files.

Owns ``CodeFormat`` (alphabet, length, check character, prefix, display grouping), the Luhn mod N
check character, ``generate`` (n unique unguessable codes, vectorised with NumPy) and
``parse_import`` (reading a CSV of third-party codes). Pure: it must not touch the database — the
service passes in ``existing``, the callable that says which candidates are already stored.

Why hand-written: the maintained libraries compute a check character one code at a time in Python
(python-stdnum's ``luhn`` module takes an alphabet; baluhn, unmaintained, does the same), and the
coupon-code generators (voucher-code-generator for JavaScript, Perl's Algorithm::CouponCode) draw
one character at a time and have no vectorised path. A million codes with a check character in
well under a second needs the whole batch as one NumPy matrix, which takes under a hundred lines here.

Codes are stored in canonical form (``normalise``: uppercase, no spaces or dashes); ``display``
adds the dashes of ``CodeFormat.group`` for print and screens.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
import string
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TypedDict

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# 8 digits and 22 letters: no 0/O, 1/I/L (misread on receipts and screens) and no U (as Crockford's
# base 32, which drops it against accidental words). 30 is even, which Luhn mod N needs (see below).
DEFAULT_ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"
ALPHABET_CHARS = frozenset(string.ascii_uppercase + string.digits)
# The most codes one batch may take of a format's space; see ``generate``.
MAX_SHARE = 0.01
# How many candidates one call of ``existing`` gets: an IN list this long fits every backend's
# bind-parameter limit (SQLite's 32,766, PostgreSQL's 65,535).
EXISTING_BATCH = 10_000
# Rounds in a row that add no new code before ``generate`` gives up instead of looping forever.
MAX_IDLE_ROUNDS = 8
# Column names that mark a header row in an imported file (English and Chinese exports).
CODE_HEADERS = frozenset(
    {"code", "codes", "coupon_code", "coupon code", "券码", "优惠码", "优惠券码", "券号"}
)
IMPORT_MIN, IMPORT_MAX = 4, 64
_DASHES = "-‐‑‒–—―−"
_SEPARATORS = re.compile("[\\s" + re.escape(_DASHES) + "]+")


class CodeSpaceExhausted(RuntimeError):
    """``generate`` drew round after round without finding a code that is not already stored."""


class CodeFormat(BaseModel):
    """How a template's generated codes look: ``prefix`` + ``length`` random characters + check."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    alphabet: str = DEFAULT_ALPHABET
    length: int = Field(default=12, ge=6, le=32)
    check: bool = True
    prefix: str | None = Field(default=None, max_length=8)
    group: int | None = Field(default=None, ge=2, le=16)

    @field_validator("alphabet")
    @classmethod
    def _alphabet_is_usable(cls, value: str) -> str:
        # Codes are read back uppercased with dashes and spaces removed, so only uppercase ASCII
        # letters and digits survive the round trip; that also rules out separators.
        stray = sorted(set(value) - ALPHABET_CHARS)
        if stray:
            raise ValueError(f"the alphabet may hold only uppercase letters A-Z and digits, not {stray}")
        repeated = sorted(c for c in set(value) if value.count(c) > 1)
        if repeated:
            raise ValueError(f"the alphabet repeats {repeated}")
        if len(value) < 10:
            raise ValueError(f"the alphabet needs at least 10 distinct characters, it has {len(value)}")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix_is_alphanumeric(cls, value: str | None) -> str | None:
        if not value:
            return None
        value = value.upper()
        if not set(value) <= ALPHABET_CHARS:
            raise ValueError("the prefix may hold only letters A-Z and digits")
        return value

    @model_validator(mode="after")
    def _check_needs_even_alphabet(self) -> CodeFormat:
        if self.check and len(self.alphabet) % 2:
            raise ValueError(
                f"a check character needs an alphabet of even size (this one has {len(self.alphabet)}): "
                "with an odd size Luhn mod N maps two characters to the same doubled value and misses "
                "some typos; add or drop one character, or set check to false"
            )
        return self


class DuplicateCode(TypedDict):
    line: int
    code: str
    first_line: int


class InvalidCode(TypedDict):
    line: int
    code: str
    reason: str


@dataclass
class ImportResult:
    """A parsed third-party code file: the codes to import (unique, in file order) and the rest."""

    codes: list[str] = field(default_factory=list)
    duplicates: list[DuplicateCode] = field(default_factory=list)
    invalid: list[InvalidCode] = field(default_factory=list)
    header: bool = False


# --- the check character --------------------------------------------------------------------------
#
# Luhn mod N (https://en.wikipedia.org/wiki/Luhn_mod_N_algorithm), the Luhn algorithm (ISO/IEC
# 7812-1, Annex B) carried to any base N: reading the body from the right, every other character's
# index is doubled starting with the rightmost, a doubled value is reduced to the sum of its two
# base-N digits (2v // N + 2v % N), and the check character is the one whose index brings the sum to
# a multiple of N. The check character itself sits in an undoubled position.
#
# What it catches, for even N: every single-character substitution (doubling-and-reducing is then a
# permutation of 0..N-1), and every swap of two adjacent characters except the first and last
# characters of the alphabet (the base-N counterpart of Luhn's 09 <-> 90). For odd N the doubling is
# not a permutation — in base 9 both 1 and 5 double to 2 — so CodeFormat refuses an odd alphabet
# when ``check`` is on. The check character is for typos only: the algorithm is public, anyone who
# guesses a body can compute its check character.


@dataclass(frozen=True)
class _Tables:
    chars: np.ndarray  # index -> ASCII byte
    doubled: np.ndarray  # index -> reduced doubled index
    index: dict[str, int]  # character -> index


@lru_cache(maxsize=32)
def _tables(alphabet: str) -> _Tables:
    n = len(alphabet)
    doubled = np.array([2 * v // n + 2 * v % n for v in range(n)], dtype=np.uint16)
    return _Tables(
        chars=np.frombuffer(alphabet.encode("ascii"), dtype=np.uint8).copy(),
        doubled=doubled,
        index={c: i for i, c in enumerate(alphabet)},
    )


def _check_index(values: Sequence[int], n: int) -> int:
    total = 0
    for distance, value in enumerate(reversed(values)):
        if distance % 2 == 0:
            total += 2 * value // n + 2 * value % n
        else:
            total += value
    return (n - total % n) % n


def check_char(fmt: CodeFormat, body: str) -> str:
    """The Luhn mod N check character of ``body`` (the random part, without prefix) in ``fmt``'s alphabet."""
    index = _tables(fmt.alphabet).index
    try:
        values = [index[c] for c in body]
    except KeyError as exc:
        raise ValueError(f"{exc.args[0]!r} is not in the alphabet") from None
    return fmt.alphabet[_check_index(values, len(fmt.alphabet))]


def normalise(fmt: CodeFormat, raw: str) -> str:
    """``raw`` as stored: full-width forms folded (NFKC), uppercase, spaces and dashes removed."""
    # ``fmt`` is not needed today; it stays in the signature so a format may add its own rules.
    return _SEPARATORS.sub("", unicodedata.normalize("NFKC", raw)).upper()


def display(fmt: CodeFormat, code: str) -> str:
    """``code`` for print: the prefix, then the rest in dash-separated groups of ``fmt.group``."""
    code = normalise(fmt, code)
    if not fmt.group:
        return code
    head = fmt.prefix if fmt.prefix and code.startswith(fmt.prefix) else ""
    rest = code[len(head) :]
    groups = [rest[i : i + fmt.group] for i in range(0, len(rest), fmt.group)]
    return "-".join([head, *groups] if head else groups)


def why_invalid(fmt: CodeFormat, code: str) -> str | None:
    """Why the normalised ``code`` is not a code of ``fmt``, or None when it is."""
    prefix = fmt.prefix or ""
    if not code.startswith(prefix):
        return f"does not start with {prefix}"
    rest = code[len(prefix) :]
    expected = fmt.length + (1 if fmt.check else 0)
    if len(rest) != expected:
        return f"has {len(rest)} characters after the prefix, expected {expected}"
    stray = sorted(set(rest) - set(fmt.alphabet))
    if stray:
        return f"holds characters outside the alphabet: {''.join(stray)}"
    if fmt.check and check_char(fmt, rest[:-1]) != rest[-1]:
        return "the check character does not match (a typo?)"
    return None


def is_valid(fmt: CodeFormat, code: str) -> bool:
    """Whether ``code`` (as typed: any case, with spaces or dashes) is a well-formed code of ``fmt``."""
    return why_invalid(fmt, normalise(fmt, code)) is None


# --- generation ------------------------------------------------------------------------------------


def capacity(fmt: CodeFormat) -> int:
    """How many different codes ``fmt`` can make: alphabet size ** length (the check adds none)."""
    return len(fmt.alphabet) ** fmt.length


def max_batch(fmt: CodeFormat) -> int:
    """The most codes one ``generate`` call may make in ``fmt``: ``MAX_SHARE`` of its capacity."""
    return int(capacity(fmt) * MAX_SHARE)


def generate(
    fmt: CodeFormat,
    n: int,
    *,
    existing: Callable[[list[str]], set[str]] | None = None,
    rng: np.random.Generator | None = None,
    existing_batch: int = EXISTING_BATCH,
) -> list[str]:
    """``n`` unique codes of ``fmt`` in canonical form, none of them in ``existing``.

    Randomness comes from the kernel's CSPRNG (``secrets.token_bytes``) by rejection sampling, so
    every character is uniform and no code can be predicted from others. ``rng`` replaces that source
    with a NumPy generator, for reproducible tests only: PCG64 is not a cryptographic generator.

    ``existing`` is called with lists of at most ``existing_batch`` candidates and returns those
    already stored; they are dropped and drawn again until ``n`` codes are found
    (``CodeSpaceExhausted`` if ``MAX_IDLE_ROUNDS`` rounds in a row find none).

    A batch may take at most ``MAX_SHARE`` (1 %) of the format's capacity, else ValueError. Beyond
    that a guesser who computes the public check character hits a live code more often than once per
    hundred tries, which only a longer code fixes, and draws start colliding often enough to need
    many rounds. The service should also weigh the codes already stored against the capacity.
    """
    if n < 0:
        raise ValueError(f"cannot generate {n} codes")
    if n > max_batch(fmt):
        raise ValueError(
            f"{n:,} codes are more than {MAX_SHARE:.0%} of the {capacity(fmt):,} this format can make, "
            f"so they would be easy to guess; allow at most {max_batch(fmt):,} or lengthen the code"
        )
    # Dicts keep the draw order (a set would not) and drop repeats at C speed; the first round,
    # nearly always the only one, becomes the result without a copy.
    accepted: dict[str, None] = {}
    idle = 0
    while len(accepted) < n:
        fresh = dict.fromkeys(_draw(fmt, n - len(accepted), rng))
        if accepted:
            for code in [c for c in fresh if c in accepted]:
                del fresh[code]
        if existing is not None and fresh:
            candidates = list(fresh)
            for start in range(0, len(candidates), existing_batch):
                for code in existing(candidates[start : start + existing_batch]):
                    fresh.pop(code, None)
        idle = 0 if fresh else idle + 1
        if idle >= MAX_IDLE_ROUNDS:
            raise CodeSpaceExhausted(
                f"{MAX_IDLE_ROUNDS} rounds found no code that is not stored yet; lengthen the code"
            )
        if accepted:
            accepted.update(fresh)
        else:
            accepted = fresh
    return list(accepted)


def _draw(fmt: CodeFormat, count: int, rng: np.random.Generator | None) -> list[str]:
    """``count`` random codes of ``fmt`` (possibly repeating), built as one matrix."""
    tables = _tables(fmt.alphabet)
    n, length = len(fmt.alphabet), fmt.length
    body = _uniform_indices(count * length, n, rng).reshape(count, length)
    prefix = np.frombuffer((fmt.prefix or "").encode("ascii"), dtype=np.uint8)
    start = len(prefix)
    width = start + length + (1 if fmt.check else 0) + 1  # + the newline that separates codes
    out = np.empty((count, width), dtype=np.uint8)
    out[:, :start] = prefix
    out[:, start : start + length] = tables.chars[body]
    if fmt.check:
        # Doubled columns are those an even distance from the body's right end.
        values = body.astype(np.uint16)
        first = (length - 1) % 2
        values[:, first::2] = tables.doubled[body[:, first::2]]
        total = values.sum(axis=1, dtype=np.uint32)
        out[:, start + length] = tables.chars[(n - total % n) % n]
    out[:, -1] = ord("\n")
    return out.tobytes().decode("ascii").split("\n")[:-1]


def _uniform_indices(size: int, n: int, rng: np.random.Generator | None) -> np.ndarray:
    """``size`` uniform indices in 0..n-1 as uint8, from random bytes by rejection sampling.

    Bytes at or above the largest multiple of n below 256 are thrown away: keeping them (``% n`` on
    every byte) would make the first 256 % n characters more frequent.
    """
    limit = 256 - 256 % n
    out = np.empty(size, dtype=np.uint8)
    filled = 0
    while filled < size:
        wanted = size - filled
        # A little more than the expected need, so one draw nearly always suffices.
        k = wanted * 256 // limit + 64
        drawn = np.frombuffer(rng.bytes(k) if rng is not None else secrets.token_bytes(k), dtype=np.uint8)
        kept = drawn[drawn < limit][:wanted]
        out[filled : filled + len(kept)] = kept
        filled += len(kept)
    out %= n
    return out


# --- third-party code files -----------------------------------------------------------------------


def parse_import(text: str, fmt: CodeFormat | None) -> ImportResult:
    """Third-party codes from CSV ``text``: one code per line, or a ``code`` column under a header.

    The header is optional and recognised by a column name in ``CODE_HEADERS``; a BOM, CRLF line
    ends, surrounding spaces and blank lines are fine. Codes are checked against ``fmt`` (normalised
    first), or with ``fmt`` None taken as they are (case kept) if they are 4–64 visible ASCII
    characters once full-width forms are folded. Repeats and invalid codes are reported with their
    line numbers, never silently dropped.
    """
    result = ImportResult()
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    column: int | None = None
    seen: dict[str, int] = {}
    first = True
    for row in reader:
        line = reader.line_num
        cells = [cell.strip() for cell in row]
        filled = [cell for cell in cells if cell]
        if not filled:
            continue
        if first:
            first = False
            column = next((i for i, cell in enumerate(cells) if cell.lower() in CODE_HEADERS), None)
            if column is not None:
                result.header = True
                continue
        if column is not None:
            value = cells[column] if column < len(cells) else ""
        elif len(filled) == 1:
            value = filled[0]
        else:
            result.invalid.append(
                {
                    "line": line,
                    "code": ",".join(cells),
                    "reason": "several values: add a header with a code column",
                }
            )
            continue
        code, reason = _import_code(value, fmt)
        if reason is not None:
            result.invalid.append({"line": line, "code": value, "reason": reason})
        elif code in seen:
            result.duplicates.append({"line": line, "code": code, "first_line": seen[code]})
        else:
            seen[code] = line
            result.codes.append(code)
    return result


def _import_code(value: str, fmt: CodeFormat | None) -> tuple[str, str | None]:
    if not value:
        return value, "no code"
    if fmt is not None:
        code = normalise(fmt, value)
        return code, why_invalid(fmt, code)
    code = unicodedata.normalize("NFKC", value)
    if not IMPORT_MIN <= len(code) <= IMPORT_MAX:
        return code, f"has {len(code)} characters, expected {IMPORT_MIN} to {IMPORT_MAX}"
    if not all("!" <= c <= "~" for c in code):
        return code, "holds spaces or characters other than visible ASCII"
    return code, None
