"""Coupon codes: patterns, capacity, and fast bulk generation that stays unique per tenant.

A pattern is literal characters plus `#` for a random character from `ALPHABET`, which leaves
out the look-alikes 0/O, 1/I/L (and U, too easily read as V), so a code read aloud or typed
from paper is typed right. A pattern must hold at least 1,000 × the codes asked for: then a
guesser who knows the pattern hits a real code less than once in a thousand tries, and the
rate limit on failed validations does the rest.

Generation draws random bytes in bulk and maps them onto the alphabet with `bytes.translate`
(unbiased: only bytes below a multiple of the alphabet's size are kept), because drawing
character by character from `secrets` costs more than the database insert of the code.
Uniqueness is the database's job: codes go in with ON CONFLICT DO NOTHING and the shortfall
is drawn again.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

from omniloop.campaigns.errors import CampaignInvalid
from omniloop.campaigns.models import Coupon, CouponStatus
from omniloop.core.clock import utcnow
from omniloop.core.errors import N_
from omniloop.core.ids import new_id

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


@dataclass(frozen=True)
class Pattern:
    text: str
    random_positions: int

    @property
    def capacity(self) -> int:
        return int(len(ALPHABET) ** self.random_positions)


def parse_pattern(text: str) -> Pattern:
    pattern = text.strip().upper()
    if not pattern or len(pattern) > MAX_CODE_LENGTH:
        raise CampaignInvalid(N_("A code pattern has 1 to {limit} characters."),
                              field="pattern", limit=MAX_CODE_LENGTH)
    literals = pattern.replace(RANDOM, "")
    if not _LITERAL.match(literals):
        raise CampaignInvalid(N_("A code pattern holds letters, digits, '-', '_' and '#' for "
                                 "a random character."), field="pattern")
    positions = pattern.count(RANDOM)
    if positions < 4:
        raise CampaignInvalid(N_("A code pattern needs at least 4 '#' (random characters)."),
                              field="pattern")
    return Pattern(text=pattern, random_positions=positions)


def pattern_capacity(text: str) -> int:
    return parse_pattern(text).capacity


def require_room(pattern: Pattern, count: int, existing: int = 0) -> None:
    """Refuse up front a batch that would make codes guessable."""
    needed = (count + existing) * SAFETY_FACTOR
    if pattern.capacity < needed:
        raise CampaignInvalid(
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
    """`count` codes following the pattern (possibly with repeats; the caller dedups)."""
    pieces = pattern.text.split(RANDOM)
    if count <= 0:
        return []
    stream = random_chars(count * pattern.random_positions)
    step = pattern.random_positions
    if pieces == [""] * (step + 1):
        return [stream[i:i + step] for i in range(0, len(stream), step)]
    template = "%s".join(piece.replace("%", "%%") for piece in pieces)
    return [template % tuple(stream[i:i + step]) for i in range(0, len(stream), step)]


def make_code(pattern_text: str) -> str:
    return draw_codes(parse_pattern(pattern_text), 1)[0]


def _insert_ignoring_duplicates(dialect: str, table: Table) -> Any:
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(
            index_elements=["tenant_id", "code"])
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=["tenant_id", "code"])


def store_codes(connection: Connection, *, tenant_id: str, campaign_id: str,
                batch_id: str | None, codes: list[str]) -> int:
    """Insert available coupons for these codes; codes already taken are skipped.

    Returns how many were stored. Runs on a Core connection with executemany: at a million
    codes the ORM's per-object work would cost more than the database.
    """
    table: Table = Coupon.__table__  # type: ignore[assignment]
    now = utcnow()
    rows = [{"tenant_id": tenant_id, "id": new_id(), "campaign_id": campaign_id, "code": code,
             "batch_id": batch_id, "status": CouponStatus.available.value, "created_at": now}
            for code in codes]
    if not rows:
        return 0
    statement = _insert_ignoring_duplicates(connection.dialect.name, table)
    if connection.dialect.name == "postgresql":
        # psycopg reports no row count for batched inserts; RETURNING lists the rows stored.
        return len(connection.execute(statement.returning(table.c.id), rows).all())
    return max(int(connection.execute(statement, rows).rowcount), 0)


def generate_codes(connection: Connection, *, tenant_id: str, campaign_id: str,
                   batch_id: str | None, pattern: Pattern, count: int,
                   chunk_size: int = 50_000,
                   progress: Callable[[int], None] | None = None) -> int:
    """Store `count` new unique codes in chunks, drawing again for any that collided."""
    stored = 0
    attempts = 0
    while stored < count:
        want = min(chunk_size, count - stored)
        codes = list(dict.fromkeys(draw_codes(pattern, want)))
        added = store_codes(connection, tenant_id=tenant_id, campaign_id=campaign_id,
                            batch_id=batch_id, codes=codes)
        stored += added
        attempts = attempts + 1 if added < want else 0
        if attempts > 20:  # the pattern is nearly full after all: stop rather than spin
            break
        if progress is not None:
            progress(stored)
    return stored


def chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
