"""The CDNOW sample (Fader and Hardie's 2,357 customers) as `customer_id,date,amount` CSV.

The file lives in the project's shared folder beside the repository
(`../shared/data/cdnow/CDNOW_sample.txt`): customer id, sample id, date yyyymmdd, number of
CDs, dollar value, whitespace-separated, no header. A clone checked out elsewhere (CI) has no
shared folder beside it; it reads the same file as the `lifetimes` package (a test
dependency) ships it — the same bytes, which the SHA-256 below makes sure of.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

SHARED_SAMPLE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cdnow" \
    / "CDNOW_sample.txt"
SAMPLE_SHA256 = "6fae10155c0b0ba363c2c386e30f77990d22328220efd862a5edd1443420d94a"


def _sample_path() -> Path:
    if SHARED_SAMPLE.is_file():
        return SHARED_SAMPLE
    import lifetimes

    return Path(lifetimes.__file__).resolve().parent / "datasets" / "CDNOW_sample.txt"


CDNOW_SAMPLE = _sample_path()
# The first 39 weeks of 1997: 1997-01-01 … 1997-09-30, the last day included.
CALIBRATION_END = "1997-09-30"


@cache
def cdnow_csv() -> str:
    assert CDNOW_SAMPLE.is_file(), f"the CDNOW sample is missing: {CDNOW_SAMPLE}"
    assert hashlib.sha256(CDNOW_SAMPLE.read_bytes()).hexdigest() == SAMPLE_SHA256, \
        f"{CDNOW_SAMPLE} is not the CDNOW sample"
    lines = ["customer_id,date,amount"]
    for row in CDNOW_SAMPLE.read_text().split("\n"):
        fields = row.split()
        if fields:
            customer, _sample, day, _cds, dollars = fields
            lines.append(f"{customer},{day[:4]}-{day[4:6]}-{day[6:]},{dollars}")
    return "\n".join(lines) + "\n"
