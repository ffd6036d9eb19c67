"""Codes: patterns and their capacity, the alphabet and its uniformity, uniqueness per tenant
with collisions drawn again, CSV import (all or nothing, row errors) and export."""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from omniloop.campaigns import codes
from omniloop.campaigns.batches import CodesNeedUniqueMode, create_batch, generate_inline
from omniloop.campaigns.code_files import (
    ALREADY_USED,
    BAD_CHARACTERS,
    DUPLICATE,
    SEVERAL_VALUES,
    TOO_SHORT_OR_LONG,
    CodeFileEmpty,
    CodeFileRejected,
    export_csv,
    import_codes,
)
from omniloop.campaigns.codes import (
    ALPHABET,
    PatternTooSmall,
    draw_codes,
    generate_codes,
    parse_pattern,
    random_chars,
    require_room,
)
from omniloop.campaigns.errors import CampaignEnded, CampaignInvalid
from omniloop.campaigns.models import (
    BatchStatus,
    Campaign,
    CodeBatch,
    Coupon,
    CouponStatus,
)
from omniloop.campaigns.service import end_campaign
from omniloop.core import i18n
from omniloop.core.clock import utcnow
from omniloop.core.db import Database, Session
from omniloop.imports.errors import ExcelWorkbook
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import AuditEntry, Tenant
from tests.campaigns.factories import claim_for, make_campaign
from tests.tenancy.factories import fresh, make_tenant

# --- patterns, capacity, alphabet -------------------------------------------------------


def test_a_pattern_is_literals_and_random_positions() -> None:
    pattern = parse_pattern("  cafe-####-####_x ")
    assert (pattern.text, pattern.random_positions) == ("CAFE-####-####_X", 8)
    assert pattern.capacity == 30 ** 8
    code = draw_codes(pattern, 1)[0]
    assert re.fullmatch(rf"CAFE-[{ALPHABET}]{{4}}-[{ALPHABET}]{{4}}_X", code)
    assert re.fullmatch(rf"[{ALPHABET}]{{4}}", codes.make_code("####"))


@pytest.mark.parametrize(("text", "why"), [
    ("", "1 to 40"),
    ("#" * 41, "1 to 40"),
    ("CAFE-###", "at least 4"),
    ("CAFÉ-####", "letters, digits"),
    ("CAFE ####", "letters, digits"),
    ("-####", "starts with"),
    ("_####", "starts with"),
])
def test_bad_patterns_are_refused_naming_the_field(text: str, why: str) -> None:
    with pytest.raises(CampaignInvalid) as caught:
        parse_pattern(text)
    assert caught.value.code == "campaign_invalid"
    assert caught.value.field == "pattern"
    assert why in str(caught.value)


def test_a_pattern_must_hold_1000_times_the_codes() -> None:
    pattern = parse_pattern("CAFE-####")
    assert pattern.capacity == 810_000
    require_room(pattern, 810)
    for count in (811, 1000):
        with pytest.raises(PatternTooSmall) as caught:
            require_room(pattern, count)
        assert (caught.value.code, caught.value.status) == ("code_pattern_too_small", 422)
        assert "810,000" in str(caught.value)
    # Codes made from the pattern before count too: a guesser could hit those as well.
    assert pattern.room(existing=800) == 10
    require_room(pattern, 10, existing=800)
    with pytest.raises(PatternTooSmall, match="at most 10 more"):
        require_room(pattern, 11, existing=800)


def test_the_alphabet_leaves_out_look_alikes() -> None:
    assert len(ALPHABET) == len(set(ALPHABET)) == 30
    assert not set("0O1IL") & set(ALPHABET)
    drawn = random_chars(50_000)
    assert len(drawn) == 50_000
    assert set(drawn) == set(ALPHABET)


def chi_square(counts: Counter[str], total: int) -> float:
    expected = total / len(ALPHABET)
    return sum((counts.get(c, 0) - expected) ** 2 / expected for c in ALPHABET)


def test_characters_are_uniform() -> None:
    """Chi-square over 300,000 random characters (29 degrees of freedom): a correct draw
    stays under 100 except with probability about 2e-9; the classic modulo bias (bytes
    0–255 taken modulo 30) scores around 1,000."""
    pattern = parse_pattern("########")
    drawn = draw_codes(pattern, 37_500)
    sample = "".join(drawn)
    assert len(sample) == 300_000
    assert chi_square(Counter(sample), len(sample)) < 100
    for position in range(8):  # and no position favours some characters
        column = Counter(code[position] for code in drawn)
        assert chi_square(column, len(drawn)) < 100
    biased = Counter(ALPHABET[b % 30] for b in bytes(range(256)) * 1200)
    assert chi_square(biased, 256 * 1200) > 100


# --- uniqueness, collisions ---------------------------------------------------------------


def scripted(monkeypatch: pytest.MonkeyPatch, *draws: list[str] | None) -> list[int]:
    """Make `draw_codes` return these codes, call after call (as many as asked, cycling;
    None: random ones), then random ones; returns how many codes each call asked for."""
    queue = list(draws)
    asked: list[int] = []
    real = codes.draw_codes

    def fake(pattern: codes.Pattern, count: int) -> list[str]:
        asked.append(count)
        chosen = queue.pop(0) if queue else None
        if chosen is None:
            return real(pattern, count)
        return [chosen[i % len(chosen)] for i in range(count)]

    monkeypatch.setattr(codes, "draw_codes", fake)
    return asked


def stored(session: Session, tenant: Tenant, campaign: Campaign | None = None) -> list[str]:
    fresh(session)
    query = select(Coupon.code).where(Coupon.tenant_id == tenant.id, Coupon.code.is_not(None))
    if campaign is not None:
        query = query.where(Coupon.campaign_id == campaign.id)
    return sorted(c for c in session.scalars(query) if c is not None)


def test_codes_are_unique_per_tenant_and_may_repeat_across_tenants(
        database: Database, session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = make_tenant(session), make_tenant(session)
    spring = make_campaign(session, first)
    autumn = make_campaign(session, first)
    elsewhere = make_campaign(session, second)
    pattern = parse_pattern("TEA-####")
    same = [f"TEA-{c}{c}{c}{c}" for c in ALPHABET]
    # The same 30 codes drawn first for all three batches; the second batch's collide
    # with the first's entirely and are drawn again (randomly).
    asked = scripted(monkeypatch, same, same, None, same)
    with database.engine.begin() as connection:
        for campaign in (spring, autumn, elsewhere):
            made = generate_codes(connection, tenant_id=campaign.tenant_id,
                                  campaign_id=campaign.id, batch_id=None, pattern=pattern,
                                  count=30)
            assert made == 30
    assert asked == [30, 30, 30, 30]
    ours, theirs = stored(session, first), stored(session, second)
    assert len(ours) == len(set(ours)) == 60
    assert set(stored(session, first, spring)).isdisjoint(stored(session, first, autumn))
    assert theirs == stored(session, first, spring)  # another tenant: the same codes are fine


def test_collisions_are_drawn_again(database: Database, session: Session,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = make_tenant(session)
    campaign = make_campaign(session, tenant)
    # Five draws of one code: one is stored, four are drawn again.
    asked = scripted(monkeypatch, ["AAAA"])
    with database.engine.begin() as connection:
        made = generate_codes(connection, tenant_id=tenant.id, campaign_id=campaign.id,
                              batch_id=None, pattern=parse_pattern("####"), count=5)
    assert made == 5
    assert asked == [5, 4]  # 5 codes, then the 4 that collided
    codes_ = stored(session, tenant)
    assert "AAAA" in codes_
    assert len(set(codes_)) == 5


def test_a_nearly_full_pattern_still_gives_unique_codes(database: Database,
                                                        session: Session) -> None:
    """30,000 codes from 810,000 possible: hundreds of collisions, all drawn again."""
    tenant = make_tenant(session)
    campaign = make_campaign(session, tenant)
    with database.engine.begin() as connection:
        made = generate_codes(connection, tenant_id=tenant.id, campaign_id=campaign.id,
                              batch_id=None, pattern=parse_pattern("####"), count=30_000,
                              chunk_size=10_000)
    assert made == 30_000
    codes_ = stored(session, tenant)
    assert len(codes_) == len(set(codes_)) == 30_000


def test_a_full_pattern_stops_and_the_batch_says_so(
        database: Database, session: Session, monkeypatch: pytest.MonkeyPatch) -> None:
    tenant = make_tenant(session)
    campaign = make_campaign(session, tenant)
    monkeypatch.setattr(codes, "random_chars", lambda count: "B" * count)
    with database.unit_of_work() as s:
        batch = create_batch(s, system_actor(tenant.id), campaign.id, "ZZ-####", 3)
        generate_inline(s, batch)
        assert (batch.status, batch.created_count, batch.error) == (
            BatchStatus.failed, 1, "pattern_full")


def test_capacity_counts_the_tenants_earlier_batches_of_the_pattern(
        database: Database, session: Session) -> None:
    tenant, other = make_tenant(session), make_tenant(session)
    first, second = make_campaign(session, tenant), make_campaign(session, tenant)
    with database.unit_of_work() as s:
        batch = create_batch(s, system_actor(tenant.id), first.id, "cafe-####", 800)
        generate_inline(s, batch)
        assert (batch.status, batch.created_count, batch.pattern) == (
            BatchStatus.done, 800, "CAFE-####")
    with database.unit_of_work() as s, pytest.raises(PatternTooSmall, match="800 were made"):
        create_batch(s, system_actor(tenant.id), second.id, "CAFE-####", 11)
    third = make_campaign(session, other)
    with database.unit_of_work() as s:
        generate_inline(s, create_batch(s, system_actor(tenant.id), second.id, "CAFE-####", 10))
        generate_inline(s, create_batch(s, system_actor(other.id), third.id, "CAFE-####", 810))
    assert len(stored(session, tenant)) == 810
    assert len(stored(session, other)) == 810


def test_queued_batches_reserve_their_codes_and_interrupted_ones_only_what_they_made(
        database: Database, session: Session) -> None:
    tenant = make_tenant(session)
    campaign = make_campaign(session, tenant)
    actor = system_actor(tenant.id)
    with database.unit_of_work() as s:  # 30^5 codes: room for 24,300
        queued = create_batch(s, actor, campaign.id, "TEA-#####", 20_000)
    with database.unit_of_work() as s, pytest.raises(PatternTooSmall, match="20,000 were made"):
        create_batch(s, actor, campaign.id, "TEA-#####", 5_000)
    with database.unit_of_work() as s:  # the server stopped an hour ago, 7,000 codes in
        s.execute(update(CodeBatch).where(CodeBatch.id == queued.id).values(
            status=BatchStatus.running, created_count=7_000,
            created_at=utcnow() - timedelta(hours=1)))
    with database.unit_of_work() as s:
        assert create_batch(s, actor, campaign.id, "TEA-#####", 17_000).requested == 17_000


# --- CSV import ----------------------------------------------------------------------------


def csv_bytes(*lines: str, bom: bool = False, newline: str = "\r\n") -> bytes:
    return (("\ufeff" if bom else "") + newline.join(lines) + newline).encode()


def test_import_stores_every_code_of_a_good_file(database: Database, session: Session) -> None:
    tenant = make_tenant(session)
    campaign = make_campaign(session, tenant)
    data = csv_bytes("優惠碼", "gift-0001", " GIFT-0002 ", "", "ＧＩＦＴ－０００３", bom=True)
    with database.unit_of_work() as s:
        batch = import_codes(s, system_actor(tenant.id, "Amy"), campaign.id, data, "list.csv")
        assert (batch.source, batch.status, batch.requested, batch.created_count) == (
            "imported", BatchStatus.done, 3, 3)
    assert stored(session, tenant, campaign) == ["GIFT-0001", "GIFT-0002", "GIFT-0003"]
    entry = session.scalars(select(AuditEntry).where(
        AuditEntry.action == "campaign.codes_import")).one()
    assert entry.details == {"batch_id": batch.id, "file_name": "list.csv", "count": 3}
    assert entry.actor_label == "Amy"
    # Without a header line, and with other columns when a header names the code column.
    with database.unit_of_work() as s:
        import_codes(s, system_actor(tenant.id), campaign.id, csv_bytes("GIFT-0004", "GIFT-0005",
                                                                        newline="\n"))
        import_codes(s, system_actor(tenant.id), campaign.id,
                     csv_bytes("note;Code", "first;GIFT-0006"))
    assert len(stored(session, tenant, campaign)) == 6


def test_a_file_with_bad_rows_imports_nothing_and_lists_them(
        database: Database, session: Session) -> None:
    tenant = make_tenant(session)
    campaign = make_campaign(session, tenant)
    make_campaign(session, tenant, code_mode="shared", shared_code="SPRING100")
    with database.engine.begin() as connection:
        codes.store_codes(connection, tenant_id=tenant.id, campaign_id=campaign.id,
                          batch_id=None, codes=["TAKEN-0001"])
    data = csv_bytes("GOOD-00001",   # row 1: fine
                     "GOOD-00001",   # row 2: duplicate of row 1
                     "ABC",          # row 3: too short
                     "BAD CODE!",    # row 4: characters
                     "taken-0001",   # row 5: already a coupon's code
                     "spring100",    # row 6: a campaign's shared code
                     "A1,B2",        # row 7: two values, no header
                     "GOOD-00002")   # row 8: fine
    with database.unit_of_work() as s, pytest.raises(CodeFileRejected) as caught:
        import_codes(s, system_actor(tenant.id), campaign.id, data)
    error = caught.value
    assert (error.code, error.status) == ("code_file_invalid", 422)
    assert [(e.row, e.code, e.reason) for e in error.errors] == [
        (2, "GOOD-00001", DUPLICATE), (3, "ABC", TOO_SHORT_OR_LONG),
        (4, "BAD CODE!", BAD_CHARACTERS), (5, "TAKEN-0001", ALREADY_USED),
        (6, "SPRING100", ALREADY_USED), (7, "A1,B2", SEVERAL_VALUES)]
    token = i18n.current_locale.set("en")
    try:
        assert error.errors[0].localized() == "The same code is on row 1."
        details = error.render()["error"]["details"]
        assert details[1] == {"row": 3, "code": "ABC",
                              "reason": "A code has 6 to 40 characters; this one has 3."}
        i18n.current_locale.set("zh_TW")
        assert error.errors[0].localized() == "與第 1 列的代碼重複。"
    finally:
        i18n.current_locale.reset(token)
    assert stored(session, tenant, campaign) == ["TAKEN-0001"]
    assert session.scalar(select(func.count()).select_from(CodeBatch)) == 0


def test_import_refuses_what_is_not_a_code_file(database: Database, session: Session) -> None:
    tenant = make_tenant(session)
    campaign = make_campaign(session, tenant)
    actor = system_actor(tenant.id)
    with database.unit_of_work() as s, pytest.raises(ExcelWorkbook):
        import_codes(s, actor, campaign.id, b"PK\x03\x04 a workbook")
    with database.unit_of_work() as s, pytest.raises(CodeFileEmpty):
        import_codes(s, actor, campaign.id, csv_bytes("code", "", " "))


def test_codes_are_only_for_running_campaigns_with_unique_codes(
        database: Database, session: Session) -> None:
    tenant = make_tenant(session)
    shared = make_campaign(session, tenant, code_mode="shared", shared_code="SPRING100")
    ended = make_campaign(session, tenant)
    with database.unit_of_work() as s:
        end_campaign(s, system_actor(tenant.id), ended.id)
    actor = system_actor(tenant.id)
    with database.unit_of_work() as s, pytest.raises(CodesNeedUniqueMode):
        create_batch(s, actor, shared.id, "CAFE-######", 10)
    with database.unit_of_work() as s, pytest.raises(CodesNeedUniqueMode):
        import_codes(s, actor, shared.id, csv_bytes("GIFT-0001"))
    with database.unit_of_work() as s, pytest.raises(CampaignEnded):
        create_batch(s, actor, ended.id, "CAFE-######", 10)
    with database.unit_of_work() as s, pytest.raises(CampaignEnded):
        import_codes(s, actor, ended.id, csv_bytes("GIFT-0001"))
    draft = make_campaign(session, tenant, launch=False)  # a draft may get codes before launch
    with database.unit_of_work() as s:
        assert generate_inline(s, create_batch(s, actor, draft.id, "CAFE-######", 10)
                               ).created_count == 10


# --- export ---------------------------------------------------------------------------------


def test_export_lists_every_code_with_its_status_holder_and_times(
        database: Database, session: Session) -> None:
    tenant = make_tenant(session)
    campaign = make_campaign(session, tenant)
    with database.unit_of_work() as s:
        import_codes(s, system_actor(tenant.id), campaign.id,
                     csv_bytes("GIFT-0001", "GIFT-0002", "GIFT-0003"))
    coupon = claim_for(session, tenant, campaign)  # takes the oldest code of the pool
    redeemed_at = datetime(2026, 11, 25, 6, 3, 0, tzinfo=utcnow().tzinfo)
    with database.unit_of_work() as s:
        s.execute(update(Coupon).where(Coupon.tenant_id == tenant.id,
                                       Coupon.code == "GIFT-0003")
                  .values(status=CouponStatus.redeemed, redeemed_at=redeemed_at))
    text = b"".join(export_csv(database, tenant.id, campaign.id, "Asia/Taipei")).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["code", "status", "customer_id", "claimed_at", "redeemed_at"]
    by_code = {row[0]: row for row in rows[1:]}
    assert sorted(by_code) == ["GIFT-0001", "GIFT-0002", "GIFT-0003"]
    held = by_code[coupon.code or ""]
    assert held[1:3] == ["claimed", coupon.customer_id]
    assert held[3].endswith("+08:00")
    assert held[4] == ""
    assert abs(datetime.fromisoformat(held[3]) - (coupon.claimed_at or utcnow())) < timedelta(
        seconds=1)
    assert by_code["GIFT-0003"][1:] == ["redeemed", "", "", "2026-11-25T14:03:00+08:00"]
    assert text.endswith("\r\n")
