"""Reading a CSV of transactions (`customer_id,date,amount`) for the CLV command.

Strict on purpose: a model fitted on half-read data looks as plausible as one fitted on all
of it, so any row that cannot be read stops the command and names its line, instead of being
skipped. Dates are ISO (`1997-01-18`) or compact (`19970118`); amounts are plain decimals.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import date

import numpy as np

from omniloop.analytics.clv import FloatArray, IntArray
from omniloop.analytics.errors import TransactionsInvalid

REQUIRED = ("customer_id", "date", "amount")


@dataclass(frozen=True)
class Transactions:
    customer_ids: list[str]   # distinct ids, index = code
    customer_index: IntArray  # per row, the code of its customer
    day: IntArray             # per row, date.toordinal()
    amount: FloatArray


def parse_date(text: str) -> date:
    text = text.strip()
    if len(text) == 8 and text.isdigit():
        text = f"{text[:4]}-{text[4:6]}-{text[6:]}"
    return date.fromisoformat(text)


def read_transactions(data: str) -> Transactions:
    """The rows of the CSV text; `TransactionsInvalid` names the first problem found."""
    if not data.strip():
        raise TransactionsInvalid(reason="the file is empty")
    reader = csv.reader(io.StringIO(data.lstrip("\ufeff")))
    header = [name.strip().lower() for name in next(reader)]
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise TransactionsInvalid(reason=f"missing column(s) {', '.join(missing)}; the header "
                                         f"must name customer_id, date and amount")
    where = [header.index(name) for name in REQUIRED]
    codes: dict[str, int] = {}
    index: list[int] = []
    days: list[int] = []
    amounts: list[float] = []
    for line, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) < len(header):
            raise TransactionsInvalid(reason=f"line {line} has {len(row)} columns, the header "
                                             f"{len(header)}")
        customer, when, amount = (row[i].strip() for i in where)
        if not customer:
            raise TransactionsInvalid(reason=f"line {line} has no customer_id")
        try:
            day = parse_date(when).toordinal()
        except ValueError:
            raise TransactionsInvalid(reason=f"line {line}: '{when}' is not a date like "
                                             f"1997-01-18") from None
        try:
            value = float(amount)
        except ValueError:
            raise TransactionsInvalid(reason=f"line {line}: '{amount}' is not an amount") from None
        if not np.isfinite(value) or value < 0:
            raise TransactionsInvalid(reason=f"line {line}: the amount {amount} is negative or "
                                             f"not finite")
        index.append(codes.setdefault(customer, len(codes)))
        days.append(day)
        amounts.append(value)
    if not index:
        raise TransactionsInvalid(reason="the file has a header but no transactions")
    return Transactions(customer_ids=list(codes), customer_index=np.asarray(index, np.int64),
                        day=np.asarray(days, np.int64), amount=np.asarray(amounts, np.float64))
