"""Coupon codes: patterns, capacity, and fast bulk generation that stays unique per tenant.

A pattern is literal characters plus `#` for a random character from `ALPHABET`, which leaves
out the look-alikes 0/O, 1/I/L (and U, too easily read as V), so a code read aloud or typed
from paper is typed right. A pattern must hold at least 1,000 × the codes asked for: then a
guesser who knows the pattern hits a real code less than once in a thousand tries, and the
rate limit on failed validations does the rest.

Generation draws random bytes in bulk and maps them onto the alphabet with `bytes.translate`
(unbiased: only bytes below a multiple of the alphabet's size are kept), and lays the
pattern's literal characters over them with strided slice assignments, because drawing or
formatting code by code costs more than the database insert of the code. Uniqueness is the
database's job: a chunk of codes goes in as one `INSERT … SELECT` with ON CONFLICT DO
NOTHING, and the shortfall is drawn again.
"""

from __future__ import annotations

import json
import operator
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, DateTime, Table, TextClause, bindparam, text

from omniloop.campaigns.errors import CampaignInvalid
from omniloop.campaigns.models import Coupon, CouponStatus
from omniloop.core.clock import utcnow
from omniloop.core.errors import N_
from omniloop.core.ids import new_ids

ALPHABET = "23456789ABCDEFGHJKMNPQRSTVWXYZ"  # 30 characters: no 0 O 1 I L U
RANDOM = "#"
SAFETY_FACTOR = 1000
MAX_CODE_LENGTH = 40
_LITERAL = re.compile(r"^[A-Z0-9_-]*$")
# Bytes 0..239 map onto the 30 characters 8 times each; 240..255 are dropped, so every
# character is equally likely.
_USABLE = 256 - 256 % len(ALPHABET)
_TABLE = bytes(ord(ALPHABET[b % len(ALPHABET)]) if b < _USABLE else 0 for b in range(256))
_DROP = bytes(range(_USABLE, 256))
# More draws than this many times the codes asked for means the pattern is (nearly) full:
# with 1,000 possible codes per real one, a draw collides less than once in a thousand.
_MAX_DRAWS_FACTOR = 3
# Codes per INSERT. Sorted inserts sweep the whole unique index of codes once per chunk, so
# fewer, larger chunks cost less (a million codes: about 25 % less CPU at 100,000 than at
# 50,000, little less beyond); each chunk holds SQLite's write lock for about half a second.
CHUNK_SIZE = 100_000


class PatternTooSmall(CampaignInvalid):
    """A pattern that would make codes guessable: refused before anything is generated."""

    code = "code_pattern_too_small"


@dataclass(frozen=True)
class Pattern:
    text: str
    random_positions: int

    @property
    def capacity(self) -> int:
        return int(len(ALPHABET) ** self.random_positions)

    def room(self, existing: int = 0) -> int:
        """How many more codes this pattern can take, `existing` ones made already."""
        return max(self.capacity // SAFETY_FACTOR - existing, 0)


def parse_pattern(text: str) -> Pattern:
    pattern = text.strip().upper()
    if not pattern or len(pattern) > MAX_CODE_LENGTH:
        raise CampaignInvalid(N_("A code pattern has 1 to {limit} characters."),
                              field="pattern", limit=MAX_CODE_LENGTH)
    literals = pattern.replace(RANDOM, "")
    if not _LITERAL.match(literals):
        raise CampaignInvalid(N_("A code pattern holds letters, digits, '-', '_' and '#' for "
                                 "a random character."), field="pattern")
    if pattern[0] in "-_":
        # Codes start like shared codes do: a spreadsheet would read "-7KQ2" as a formula.
        raise CampaignInvalid(N_("A code pattern starts with a letter, a digit or '#'."),
                              field="pattern")
    positions = pattern.count(RANDOM)
    if positions < 4:
        raise CampaignInvalid(N_("A code pattern needs at least 4 '#' (random characters)."),
                              field="pattern")
    return Pattern(text=pattern, random_positions=positions)


def pattern_capacity(text: str) -> int:
    return parse_pattern(text).capacity


def require_room(pattern: Pattern, count: int, existing: int = 0) -> None:
    """Refuse up front a batch that would make codes guessable.

    `existing`: codes of this tenant made from the same pattern already; a guesser who knows
    the pattern could hit those too.
    """
    if count <= pattern.room(existing):
        return
    if existing:
        raise PatternTooSmall(
            N_("The pattern {pattern} holds {capacity} codes and {existing} were made from it "
               "already: at most {room} more keep 1,000 possible codes per real one. Add "
               "'#' characters."),
            field="pattern", pattern=pattern.text, capacity=f"{pattern.capacity:,}",
            existing=f"{existing:,}", room=f"{pattern.room(existing):,}")
    raise PatternTooSmall(
        N_("The pattern {pattern} holds {capacity} codes, fewer than 1,000 × the {count} "
           "asked for: add '#' characters."),
        field="pattern", pattern=pattern.text, capacity=f"{pattern.capacity:,}",
        count=f"{count:,}")


def random_chars(count: int) -> str:
    """`count` characters drawn uniformly from ALPHABET with the OS's CSPRNG."""
    out = bytearray()
    while len(out) < count:
        chunk = os.urandom(int((count - len(out)) * 1.07) + 16)
        out += chunk.translate(_TABLE, _DROP)
    return out[:count].decode("ascii")


def draw_codes(pattern: Pattern, count: int) -> list[str]:
    """`count` codes following the pattern (possibly with repeats: storing skips them).

    Every code is as long as the pattern, so the codes are laid out side by side in one
    buffer of random characters and each literal position is then written in one strided
    assignment (`buffer[3::width] = b"E" * count`): no Python work per code but the slice
    that cuts it out.
    """
    if count <= 0:
        return []
    width = len(pattern.text)
    buffer = bytearray(random_chars(count * width).encode("ascii"))
    for position, char in enumerate(pattern.text):
        if char != RANDOM:
            buffer[position::width] = char.encode("ascii") * count
    text = buffer.decode("ascii")
    return [text[i:i + width] for i in range(0, count * width, width)]


def make_code(pattern_text: str) -> str:
    return draw_codes(parse_pattern(pattern_text), 1)[0]


@lru_cache(maxsize=8)
def _bulk_insert(dialect_name: str) -> TextClause:
    """One statement that stores a whole chunk of codes, skipping those already taken.

    The rows' own values (id and code) travel as one parameter: a JSON array on SQLite,
    read back with `json_each`; two arrays on PostgreSQL, read with `unnest`. What every
    row shares (tenant, campaign, batch, status, time) is bound once. Against `executemany`
    this binds 2 values per chunk instead of 7 per row, and the database steps through the
    whole chunk in one call, without Python (or the GIL) between rows.
    """
    table: Table = Coupon.__table__  # type: ignore[assignment]
    columns = "tenant_id, id, campaign_id, code, batch_id, status, created_at"
    shared = ":tenant_id, {id}, :campaign_id, {code}, :batch_id, :status, :created_at"
    if dialect_name == "postgresql":
        source = ("SELECT " + shared.format(id="r.id", code="r.code")
                  + " FROM unnest(CAST(:ids AS TEXT[]), CAST(:codes AS TEXT[])) AS r(id, code)")
    else:
        # Each element is the 26-character id followed by the code. `WHERE true` tells
        # SQLite's parser that ON CONFLICT below belongs to the INSERT, not to a join.
        source = ("SELECT " + shared.format(id="substr(r.value, 1, 26)",
                                            code="substr(r.value, 27)")
                  + " FROM json_each(:rows) AS r WHERE true")
    return text(f"INSERT INTO {table.name} ({columns}) {source} "
                "ON CONFLICT (tenant_id, code) DO NOTHING").bindparams(
        bindparam("created_at", type_=DateTime(timezone=True)))


def store_codes(connection: Connection, *, tenant_id: str, campaign_id: str,
                batch_id: str | None, codes: list[str]) -> int:
    """Insert available coupons for these codes; codes already taken are skipped.

    Returns how many were stored (a code repeated within `codes` is stored once). One
    statement per call with the rows packed into one parameter: at a million codes
    SQLAlchemy's per-row parameter handling, let alone the ORM's, would cost more than the
    database. The rows go in sorted by code (and by id: `new_ids` are sorted), so the
    inserts walk the unique index of codes from one end to the other instead of jumping
    about it: a million codes cost about a fifth less CPU that way.
    """
    if not codes:
        return 0
    dialect = connection.dialect.name
    ordered = sorted(codes)
    ids = new_ids(len(ordered))
    params: dict[str, Any] = {
        "tenant_id": tenant_id, "campaign_id": campaign_id, "batch_id": batch_id,
        "status": CouponStatus.available.value, "created_at": utcnow()}
    if dialect == "postgresql":
        params["ids"], params["codes"] = ids, ordered
    else:
        params["rows"] = _json_strings(list(map(operator.add, ids, ordered)))
    result = connection.execute(_bulk_insert(dialect), params)
    return max(int(result.rowcount), 0)


def _json_strings(values: list[str]) -> str:
    """A JSON array of strings. Ids and codes need no escaping (letters, digits, '-', '_'):
    a join, and one scan to make sure, take 40 % less time than `json.dumps`, which still
    takes anything else."""
    if not values:
        return "[]"
    joined = '","'.join(values)
    plain = (joined.count('"') == 2 * (len(values) - 1) and "\\" not in joined
             and joined.isascii() and joined.isprintable())
    return '["' + joined + '"]' if plain else json.dumps(values)


def fill_codes(store: Callable[[list[str]], int], *, pattern: Pattern, count: int,
               chunk_size: int = CHUNK_SIZE,
               progress: Callable[[int], None] | None = None) -> int:
    """Draw codes and hand them to `store` chunk by chunk until `count` are stored.

    `store(codes)` returns how many of them it stored (collisions are skipped); the
    shortfall is drawn again. Gives up, returning fewer than `count`, only when the draws
    reach a few times `count`: a pattern that full is not worth spinning on.
    """
    stored = 0
    drawn = 0
    while stored < count and drawn < _MAX_DRAWS_FACTOR * count + 1000:
        want = min(chunk_size, count - stored)
        drawn += want
        stored += store(draw_codes(pattern, want))
        if progress is not None:
            progress(stored)
    return stored


def generate_codes(connection: Connection, *, tenant_id: str, campaign_id: str,
                   batch_id: str | None, pattern: Pattern, count: int,
                   chunk_size: int = CHUNK_SIZE,
                   progress: Callable[[int], None] | None = None) -> int:
    """Store `count` new unique codes in the caller's transaction, drawing again for any
    that collided. Returns how many were stored."""
    return fill_codes(
        lambda codes: store_codes(connection, tenant_id=tenant_id, campaign_id=campaign_id,
                                  batch_id=batch_id, codes=codes),
        pattern=pattern, count=count, chunk_size=chunk_size, progress=progress)


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
