"""``huiyuan clv fit``: fit BG/NBD and Gamma-Gamma to any transaction file and print the parameters
as one JSON object (``huiyuan.analytics.clv``)."""

from __future__ import annotations

import csv
import json
from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer

from huiyuan.analytics import clv

app = typer.Typer(help="Predictive customer lifetime value (BG/NBD + Gamma-Gamma)", no_args_is_help=True)


def _day(text: str) -> date:
    text = text.strip()
    for candidate in (text, text[:10]):  # a date, or the date of an ISO timestamp
        for form in ("%Y-%m-%d", "%Y%m%d", "%Y/%m/%d"):
            try:
                return datetime.strptime(candidate, form).date()
            except ValueError:
                continue
    raise ValueError(f"not a date: {text!r} (use YYYY-MM-DD or YYYYMMDD)")


def read_transactions(
    path: Path, *, customer: str, day: str, amount: str, delimiter: str = ","
) -> list[tuple[str, date, float]]:
    """(customer, day, amount) rows of a CSV file with a header; a bad row names its line."""
    rows: list[tuple[str, date, float]] = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        missing = [c for c in (customer, day, amount) if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"no column {', '.join(missing)} in {path} (columns: {', '.join(reader.fieldnames or [])})"
            )
        for line, row in enumerate(reader, start=2):
            try:
                rows.append((row[customer].strip(), _day(row[day]), float(row[amount])))
            except (ValueError, AttributeError) as exc:
                raise ValueError(f"line {line}: {exc}") from None
    return rows


@app.command("fit")
def fit(
    transactions: Annotated[
        Path, typer.Option(help="CSV file with a header row", exists=True, dir_okay=False)
    ],
    customer: Annotated[str, typer.Option(help="Column of the customer id")],
    date_column: Annotated[str, typer.Option("--date", help="Column of the purchase date")],
    amount: Annotated[str, typer.Option(help="Column of the purchase amount")],
    calibration_end: Annotated[str, typer.Option(help="Last day of the calibration period, YYYY-MM-DD")],
    delimiter: Annotated[str, typer.Option(help="Field separator")] = ",",
) -> None:
    """Fit BG/NBD on every customer and Gamma-Gamma on the repeat buyers; print one JSON object."""
    try:
        end = _day(calibration_end)
        rows = read_transactions(
            transactions, customer=customer, day=date_column, amount=amount, delimiter=delimiter
        )
        summary = clv.summarise(rows, end)
        bgnbd = clv.fit_bgnbd(summary)
        gamma_gamma = clv.fit_gamma_gamma(summary)
    except (ValueError, clv.CLVInputError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    out = {
        "r": round(bgnbd.r, 6),
        "alpha": round(bgnbd.alpha, 6),
        "a": round(bgnbd.a, 6),
        "b": round(bgnbd.b, 6),
        "p": round(gamma_gamma.p, 6),
        "q": round(gamma_gamma.q, 6),
        "v": round(gamma_gamma.v, 6),
        "customers": bgnbd.customers,
        "repeat_buyers": gamma_gamma.customers,
        "log_likelihood_bgnbd": round(bgnbd.log_likelihood, 4),
        "log_likelihood_gg": round(gamma_gamma.log_likelihood, 4),
        "calibration_end": end.isoformat(),
        "expected_purchases_new_customer_52w": round(bgnbd.expected_purchases_new(52), 6),
    }
    typer.echo(json.dumps(out))
