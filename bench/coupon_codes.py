"""(e) Coupon codes: codes/s of ``huiyuan.coupons.codes.generate`` for a million codes of 12 characters
and a check character, against a plain Python loop of ``secrets.choice`` over the same alphabet and
length that has neither a check character nor a uniqueness check.

``python -m bench.coupon_codes [--quick]`` runs it on its own; no database is involved.
"""

from __future__ import annotations

import argparse
import secrets
import time

from bench.common import emit


def baseline(alphabet: str, length: int, n: int) -> list[str]:
    """What a first version would write: one ``secrets.choice`` per character."""
    return ["".join(secrets.choice(alphabet) for _ in range(length)) for _ in range(n)]


def run(quick: bool) -> None:
    from huiyuan.coupons.codes import CodeFormat, generate

    fmt = CodeFormat()
    n = 200_000 if quick else 1_000_000
    # The loop is slow and its rate does not depend on n, so a smaller run measures it just as well.
    n_baseline = n // 10

    started = time.perf_counter()
    plain = baseline(fmt.alphabet, fmt.length, n_baseline)
    base_elapsed = time.perf_counter() - started
    assert len(plain) == n_baseline
    base_rate = n_baseline / base_elapsed
    emit(
        "coupons.codes_baseline",
        base_rate,
        "codes/s",
        codes=n_baseline,
        length=fmt.length,
        seconds=round(base_elapsed, 3),
        method="secrets.choice loop, no check character, no uniqueness",
    )

    generate(fmt, 1_000)  # the first call pays for NumPy's start-up, which a running server has behind it
    started = time.perf_counter()
    codes = generate(fmt, n)
    elapsed = time.perf_counter() - started
    assert len(codes) == n
    rate = n / elapsed
    emit(
        "coupons.codes_1m",
        rate,
        "codes/s",
        codes=n,
        length=fmt.length,
        check=fmt.check,
        alphabet=len(fmt.alphabet),
        seconds=round(elapsed, 3),
        baseline_codes_per_s=round(base_rate, 1),
        ratio_to_baseline=round(rate / base_rate, 1),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.coupon_codes", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="200,000 codes instead of 1,000,000")
    args = parser.parse_args(argv)
    run(args.quick)


if __name__ == "__main__":
    main()
