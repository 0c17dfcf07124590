"""Predictive CLV reproduces Fader, Hardie and Lee (2005) on the CDNOW sample within 1 %: BG/NBD
r = 0.243, α = 4.414, a = 0.793, b = 2.426; Gamma-Gamma on the 946 repeat buyers p = 6.25,
q = 3.74, v = 15.44; and the CLI prints the same as one JSON object."""

from __future__ import annotations

import itertools
import json
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from huiyuan.analytics import clv
from huiyuan.cli.main import app

SAMPLE = Path(__file__).parent / "data" / "CDNOW_sample.txt"
END = date(1997, 9, 30)
PUBLISHED = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426, "p": 6.25, "q": 3.74, "v": 15.44}


def _rows() -> list[tuple[str, date, float]]:
    rows = []
    for line in SAMPLE.read_text().splitlines():
        _master, customer, day, _quantity, amount = line.split()
        rows.append((str(int(customer)), datetime.strptime(day, "%Y%m%d").date(), float(amount)))
    return rows


@pytest.fixture(scope="module")
def fitted() -> tuple[clv.Summary, clv.BGNBD, clv.GammaGamma]:
    summary = clv.summarise(_rows(), END)
    return summary, clv.fit_bgnbd(summary), clv.fit_gamma_gamma(summary)


def test_calibration_summary(fitted: tuple[clv.Summary, clv.BGNBD, clv.GammaGamma]) -> None:
    summary, _, _ = fitted
    assert len(summary) == 2357 and int((summary.x > 0).sum()) == 946
    # Customer 1 bought on 1997-01-01, 01-18 and 08-02 in the calibration period.
    assert (summary.x[0], round(summary.t_x[0], 2), round(summary.T[0], 2)) == (2, 30.43, 38.86)
    assert summary.monetary[0] == pytest.approx((29.73 + 14.96) / 2)


def test_published_estimates_within_one_percent(
    fitted: tuple[clv.Summary, clv.BGNBD, clv.GammaGamma],
) -> None:
    _, bgnbd, gg = fitted
    ours = {"r": bgnbd.r, "alpha": bgnbd.alpha, "a": bgnbd.a, "b": bgnbd.b, "p": gg.p, "q": gg.q, "v": gg.v}
    for name, value in PUBLISHED.items():
        assert ours[name] == pytest.approx(value, rel=0.01), name
    assert bgnbd.log_likelihood == pytest.approx(-9582.4, abs=0.1)  # the paper's LL


def test_conditional_expectations(fitted: tuple[clv.Summary, clv.BGNBD, clv.GammaGamma]) -> None:
    summary, bgnbd, gg = fitted
    # The paper's worked example: x = 2, t_x = 30.43, T = 38.86 → 1.226 purchases in the next 39 weeks.
    one = bgnbd.expected_purchases(39, np.array([2.0]), np.array([30.43]), np.array([38.86]))
    assert one[0] == pytest.approx(1.226, abs=0.001)
    alive = bgnbd.p_alive(summary.x, summary.t_x, summary.T)
    assert np.all((alive >= 0) & (alive <= 1)) and np.all(alive[summary.x == 0] == 1)
    horizons = [
        bgnbd.expected_purchases(t, summary.x[:50], summary.t_x[:50], summary.T[:50]) for t in (4, 13, 39, 78)
    ]
    assert all(np.all(b > a) for a, b in itertools.pairwise(horizons))
    spend = gg.expected_spend(summary.x, summary.monetary)
    assert spend[summary.x == 0] == pytest.approx(gg.p * gg.v / (gg.q - 1))
    value = clv.clv(bgnbd, gg, summary, days=365)
    discounted = clv.clv(bgnbd, gg, summary, days=365, monthly_discount_rate=0.01)
    assert np.all(value > 0) and np.all(discounted < value)
    # Holdout (1997-10-01 to 1998-06-30, 39 weeks): the customers bought on 1,882 customer-days;
    # the model, fitted on the calibration period only, expects 1,653 (12 % fewer).
    actual = len({(c, d) for c, d, _ in _rows() if d > END})
    predicted = float(np.sum(bgnbd.expected_purchases(39, summary.x, summary.t_x, summary.T)))
    assert actual == 1882 and predicted == pytest.approx(1653.4, abs=0.5)


def test_bad_input_is_refused() -> None:
    with pytest.raises(clv.CLVInputError):
        clv.summarise([], END)
    with pytest.raises(clv.CLVInputError):
        clv.summarise([("1", date(1998, 1, 1), 10.0)], END)
    once = clv.summarise([("1", date(1997, 1, 1), 10.0), ("2", date(1997, 2, 1), 5.0)], END)
    with pytest.raises(clv.CLVInputError, match="repeat buyer"):
        clv.fit_gamma_gamma(once)
    free = clv.summarise([("1", date(1997, 1, 1), 10.0), ("1", date(1997, 2, 1), 0.0)], END)
    with pytest.raises(clv.CLVInputError, match="positive"):
        clv.fit_gamma_gamma(free)


def test_cli_fit_prints_the_parameters(tmp_path: Path) -> None:
    csv_path = tmp_path / "tx.csv"
    lines = ["customer,day,amount"] + [f"{c},{d.isoformat()},{a}" for c, d, a in _rows()]
    csv_path.write_text("\n".join(lines) + "\n")
    args = ["clv", "fit", "--transactions", str(csv_path), "--customer", "customer", "--date", "day"]
    args += ["--amount", "amount", "--calibration-end", "1997-09-30"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    for name, value in PUBLISHED.items():
        assert out[name] == pytest.approx(value, rel=0.01), name
    assert (out["customers"], out["repeat_buyers"]) == (2357, 946)

    bad = CliRunner().invoke(app, [*args[:-1], "1997-13-40"])
    assert bad.exit_code == 2 and "not a date" in bad.output
    wrong = CliRunner().invoke(app, [*args[:6], "--date", "when", *args[8:]])
    assert wrong.exit_code == 2 and "no column when" in wrong.output
