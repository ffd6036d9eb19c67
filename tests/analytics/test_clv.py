"""CLV models: BG/NBD and Gamma-Gamma against the `lifetimes` package on the CDNOW sample,
the summary on hand-made data, and the `omniloop analytics clv` command."""

from __future__ import annotations

import io
import json
import math
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from lifetimes import BetaGeoFitter, GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data
from typer.testing import CliRunner

from omniloop.analytics import clv
from omniloop.analytics.cli import clv_json
from omniloop.analytics.errors import TransactionsInvalid
from omniloop.analytics.transactions import read_transactions
from omniloop.cli import app
from tests.analytics.cdnow import CALIBRATION_END, cdnow_csv


def same_3_sig(ours: float, theirs: float) -> bool:
    """Equal when both are rounded to 3 significant figures."""
    return f"{ours:.3g}" == f"{theirs:.3g}" or math.isclose(ours, theirs, rel_tol=5e-4)


@pytest.fixture(scope="module")
def ours() -> clv.ClvFit:
    rows = read_transactions(cdnow_csv())
    _, summary = clv.summarise(rows.customer_index, rows.day, rows.amount,
                               date.fromisoformat(CALIBRATION_END).toordinal())
    return clv.fit(summary)


@pytest.fixture(scope="module")
def peer_summary() -> pd.DataFrame:
    """lifetimes' own summary of the same transactions: per day, weeks as days ÷ 7."""
    frame = pd.read_csv(io.StringIO(cdnow_csv()), dtype={"customer_id": str})
    frame["date"] = pd.to_datetime(frame["date"])
    return summary_data_from_transaction_data(
        frame, "customer_id", "date", monetary_value_col="amount",
        observation_period_end=CALIBRATION_END, freq="D", freq_multiplier=7)


def test_summary_matches_the_peer(ours: clv.ClvFit, peer_summary: pd.DataFrame) -> None:
    rows = read_transactions(cdnow_csv())
    s = ours.summary
    ids = [rows.customer_ids[i] for i in s.customer_ids]
    peer = peer_summary.loc[ids]
    assert len(s) == len(peer_summary) == 2357
    np.testing.assert_allclose(s.frequency, peer["frequency"])
    np.testing.assert_allclose(s.recency, peer["recency"])
    np.testing.assert_allclose(s.T, peer["T"])
    np.testing.assert_allclose(s.monetary, peer["monetary_value"])


def test_bgnbd_agrees_with_lifetimes_to_3_significant_figures(
        ours: clv.ClvFit, peer_summary: pd.DataFrame) -> None:
    peer = BetaGeoFitter().fit(peer_summary["frequency"], peer_summary["recency"],
                               peer_summary["T"])
    for name in ("r", "alpha", "a", "b"):
        assert same_3_sig(getattr(ours.bgnbd, name), float(peer.params_[name])), name
    # The published optimum (Fader, Hardie and Lee 2005): r 0.243, α 4.414, a 0.793,
    # b 2.426, log-likelihood −9582.4.
    assert round(ours.bgnbd.log_likelihood, 1) == -9582.4


def test_gamma_gamma_agrees_with_lifetimes(ours: clv.ClvFit,
                                           peer_summary: pd.DataFrame) -> None:
    repeat = peer_summary[peer_summary["frequency"] > 0]
    peer = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    assert ours.gamma_gamma.customers == len(repeat) == 946
    for name, theirs in (("p", "p"), ("q", "q"), ("gamma", "v")):
        assert same_3_sig(getattr(ours.gamma_gamma, name), float(peer.params_[theirs])), name


def test_predictions_agree_with_lifetimes(ours: clv.ClvFit,
                                          peer_summary: pd.DataFrame) -> None:
    bg = BetaGeoFitter().fit(peer_summary["frequency"], peer_summary["recency"],
                             peer_summary["T"])
    repeat = peer_summary[peer_summary["frequency"] > 0]
    gg = GammaGammaFitter().fit(repeat["frequency"], repeat["monetary_value"])
    rows = read_transactions(cdnow_csv())
    s = ours.summary
    peer = peer_summary.loc[[rows.customer_ids[i] for i in s.customer_ids]]
    predicted = clv.predict(ours)
    np.testing.assert_allclose(predicted.p_alive, bg.conditional_probability_alive(
        peer["frequency"], peer["recency"], peer["T"]), rtol=2e-3)
    np.testing.assert_allclose(
        predicted.purchases_365, bg.conditional_expected_number_of_purchases_up_to_time(
            365 / 7, peer["frequency"], peer["recency"], peer["T"]), rtol=2e-3)
    np.testing.assert_allclose(predicted.spend, gg.conditional_expected_average_profit(
        peer["frequency"], peer["monetary_value"]), rtol=2e-3)
    assert np.all(predicted.purchases_90 <= predicted.purchases_365)
    assert np.all((predicted.p_alive > 0) & (predicted.p_alive <= 1))


def test_summary_counts_days_not_rows() -> None:
    """Two rows on one day are one purchase of their sum; the first day's spend is not in the
    mean; rows after the calibration end are left out."""
    d = date(2026, 1, 1).toordinal()
    customer = np.array([0, 0, 0, 0, 1, 2], dtype=np.int64)
    day = np.array([d, d + 7, d + 7, d + 14, d + 3, d + 40], dtype=np.int64)
    amount = np.array([100.0, 30.0, 20.0, 70.0, 10.0, 99.0])
    ids, s = clv.summarise(customer, day, amount, d + 21)
    assert ids.tolist() == [0, 1]
    assert s.frequency.tolist() == [2.0, 0.0]
    assert s.recency.tolist() == [2.0, 0.0]
    assert s.T.tolist() == [3.0, 18 / 7]
    assert s.monetary.tolist() == [60.0, 0.0]


def test_too_little_data_is_refused() -> None:
    d = date(2026, 1, 1).toordinal()
    _, s = clv.summarise(np.array([0, 1], dtype=np.int64), np.array([d, d], dtype=np.int64),
                         np.array([1.0, 2.0]), d + 10)
    with pytest.raises(clv.ClvFitError):
        clv.fit(s)


def test_command_prints_the_parameters(tmp_path: Path) -> None:
    path = tmp_path / "cdnow.csv"
    path.write_text(cdnow_csv())
    result = CliRunner().invoke(app, ["analytics", "clv", "--transactions", str(path),
                                      "--calibration-end", CALIBRATION_END])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {"r", "alpha", "a", "b", "log_likelihood", "p", "q", "gamma"} <= set(out)
    assert f"{out['r']:.3g}" == "0.243"
    assert f"{out['b']:.3g}" == "2.43"
    assert f"{out['p']:.3g}" == "6.25"
    assert f"{out['gamma']:.3g}" == "15.4"


@pytest.mark.parametrize(("content", "calibration_end", "expected"), [
    ("", "1997-09-30", "the file is empty"),
    ("customer_id,amount\n1,3\n", "1997-09-30", "missing column(s) date"),
    ("customer_id,date,amount\n", "1997-09-30", "no transactions"),
    ("customer_id,date,amount\n1,1997-01-01,3\n1,31/02/1997,4\n", "1997-09-30",
     "line 3: '31/02/1997' is not a date"),
    ("customer_id,date,amount\n1,1997-01-01,three\n", "1997-09-30", "'three' is not an amount"),
    ("customer_id,date,amount\n1,1997-01-01,3\n", "30.9.1997", "--calibration-end"),
    ("customer_id,date,amount\n1,1998-01-01,3\n", "1997-09-30", "no transactions on or before"),
    ("customer_id,date,amount\n1,1997-01-01,3\n2,1997-01-02,3\n", "1997-09-30",
     "repeat purchases"),
])
def test_bad_files_get_a_clear_message_and_exit_2(tmp_path: Path, content: str,
                                                  calibration_end: str, expected: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(content)
    result = CliRunner().invoke(app, ["analytics", "clv", "--transactions", str(path),
                                      "--calibration-end", calibration_end])
    assert result.exit_code == 2
    assert "error: transactions_invalid:" in result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.output
    with pytest.raises(TransactionsInvalid):
        clv_json(content, calibration_end)


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["analytics", "clv", "--transactions",
                                      str(tmp_path / "nope.csv"), "--calibration-end",
                                      "1997-09-30"])
    assert result.exit_code == 2
    assert "error: file_not_readable:" in result.stderr
