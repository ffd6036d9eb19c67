"""What `omniloop analytics clv` computes, apart from reading the file and printing.

Kept out of `cli.py` so the command's numbers come from the same `analytics.clv` functions as
the platform's CLV page, and tests can call it without a subprocess.
"""

from __future__ import annotations

import json
from datetime import date

from omniloop.analytics import clv
from omniloop.analytics.errors import TransactionsInvalid
from omniloop.analytics.transactions import parse_date, read_transactions


def clv_json(text: str, calibration_end: str) -> str:
    """The fitted parameters of the CSV's transactions up to `calibration_end`, as JSON."""
    try:
        end: date = parse_date(calibration_end)
    except ValueError:
        raise TransactionsInvalid(
            reason=f"--calibration-end '{calibration_end}' is not a date like 1997-09-30"
        ) from None
    rows = read_transactions(text)
    _, summary = clv.summarise(rows.customer_index, rows.day, rows.amount, end.toordinal())
    if len(summary) == 0:
        raise TransactionsInvalid(reason=f"no transactions on or before {end.isoformat()}")
    try:
        model = clv.fit(summary)
    except clv.ClvFitError as exc:
        raise TransactionsInvalid(reason=str(exc)) from None
    b, g = model.bgnbd, model.gamma_gamma
    return json.dumps({
        "r": b.r, "alpha": b.alpha, "a": b.a, "b": b.b, "log_likelihood": b.log_likelihood,
        "p": g.p, "q": g.q, "gamma": g.gamma,
        "gamma_gamma_log_likelihood": g.log_likelihood,
        "customers": b.customers, "repeat_customers": g.customers,
        "calibration_end": end.isoformat(), "time_unit": "week",
    }, indent=2)
