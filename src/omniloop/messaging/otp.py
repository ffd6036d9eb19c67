"""Phone verification: a one-time code by SMS, so nobody claims in another person's name.

* Sending a code is rate-limited per phone (5 an hour) and per IP (20 an hour), through
  core.ratelimit (Redis when configured), before anything is written.
* The code is 6 random digits, valid 5 minutes, stored only as an HMAC-SHA256 keyed by a
  key derived from the instance's secret key (a database dump does not reveal live codes,
  and 10^6 codes cannot be brute-forced offline without the key).
* At most 5 checks per code: each check is counted by a conditional UPDATE that commits even
  when the code is wrong (the caller commits before reporting the failure), so parallel
  guesses cannot exceed the limit.
* A correct code answers a signed token (15 minutes) that the claim and touchpoint pages
  take as proof that the person holds the phone.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import update

from omniloop.core.clock import as_utc, utcnow
from omniloop.core.db import Session
from omniloop.core.ratelimit import RateLimiter, enforce
from omniloop.core.settings import get_settings
from omniloop.customers.identities import normalize_phone
from omniloop.messaging.errors import VerificationInvalid, VerificationRequired
from omniloop.messaging.models import OutboxChannel, PhoneVerification, Purpose
from omniloop.messaging.outbox import Draft, enqueue
from omniloop.tenancy.access import system_actor
from omniloop.tenancy.models import Tenant

CODE_DIGITS = 6
TTL = timedelta(minutes=5)
MAX_CHECKS = 5
PER_PHONE = (5, 3600)   # codes per phone per hour
PER_IP = (20, 3600)     # codes per IP per hour
TOKEN_MAX_AGE = 15 * 60
_SALT = "omniloop.phone-verified"


def _digest(tenant_id: str, verification_id: str, code: str) -> str:
    secret = get_settings().resolved_secret_key().encode()
    key = hmac.new(secret, b"omniloop.otp", hashlib.sha256).digest()
    return hmac.new(key, f"{tenant_id}:{verification_id}:{code}".encode(),
                    hashlib.sha256).hexdigest()


def code_text(tenant: Tenant, code: str) -> str:
    return f"【{tenant.name[:20]}】您的驗證碼是 {code}，5 分鐘內有效。請勿提供給他人。"


def start(session: Session, tenant: Tenant, phone: str, ip: str | None, *,
          now: datetime | None = None, limiter: RateLimiter | None = None) -> PhoneVerification:
    """Send a code to `phone` (any common format; E.164 after normalising)."""
    number = normalize_phone(phone)
    enforce(f"otp:phone:{tenant.id}:{number}", limit=PER_PHONE[0],
            window_seconds=PER_PHONE[1], limiter=limiter)
    if ip:
        enforce(f"otp:ip:{ip}", limit=PER_IP[0], window_seconds=PER_IP[1], limiter=limiter)
    now = now or utcnow()
    code = f"{secrets.randbelow(10 ** CODE_DIGITS):0{CODE_DIGITS}d}"
    row = PhoneVerification(tenant_id=tenant.id, phone=number, code_hash="", attempts=0,
                            expires_at=now + TTL, created_at=now)
    session.add(row)
    session.flush()
    row.code_hash = _digest(tenant.id, row.id, code)
    enqueue(session, system_actor(tenant.id, "phone verification"), Draft(
        channel=OutboxChannel.sms, purpose=Purpose.transactional, recipient=number,
        dedup_key=f"otp:{row.id}", payload={"text": code_text(tenant, code)}))
    return row


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    phone: str | None = None
    token: str | None = None


def check(session: Session, tenant_id: str, verification_id: str, code: str, *,
          now: datetime | None = None, phone: str | None = None) -> CheckResult:
    """Count one check and compare. Never raises for a wrong code: the caller must commit
    the counted attempt first and then report `VerificationInvalid`. With `phone`, a code
    sent to another number counts as wrong (and is not used up)."""
    now = now or utcnow()
    row = session.get(PhoneVerification, (tenant_id, verification_id))
    if row is None or row.verified_at is not None or as_utc(row.expires_at) <= now:
        return CheckResult(ok=False)
    counted = session.execute(
        update(PhoneVerification)
        .where(PhoneVerification.tenant_id == tenant_id,
               PhoneVerification.id == verification_id,
               PhoneVerification.attempts < MAX_CHECKS,
               PhoneVerification.verified_at.is_(None))
        .values(attempts=PhoneVerification.attempts + 1)
        .execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    clean = code.strip()
    if phone is not None and phone != row.phone:
        return CheckResult(ok=False)
    if not counted or not hmac.compare_digest(
            _digest(tenant_id, verification_id, clean), row.code_hash):
        return CheckResult(ok=False)
    used = session.execute(
        update(PhoneVerification)
        .where(PhoneVerification.tenant_id == tenant_id,
               PhoneVerification.id == verification_id,
               PhoneVerification.verified_at.is_(None))
        .values(verified_at=now).execution_options(synchronize_session=False)).rowcount  # type: ignore[attr-defined]
    if not used:
        return CheckResult(ok=False)
    return CheckResult(ok=True, phone=row.phone, token=_serializer().dumps([tenant_id, row.phone]))


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(get_settings().resolved_secret_key(), salt=_SALT)


def verified_phone(token: str | None, tenant_id: str) -> str:
    """The phone a verification token proves, or VerificationRequired."""
    if not token:
        raise VerificationRequired()
    try:
        value = _serializer().loads(token, max_age=TOKEN_MAX_AGE)
    except (BadSignature, SignatureExpired):
        raise VerificationRequired() from None
    if not isinstance(value, list) or len(value) != 2 or value[0] != tenant_id:
        raise VerificationRequired()
    return str(value[1])


def raise_if_failed(result: CheckResult) -> CheckResult:
    if not result.ok:
        raise VerificationInvalid()
    return result


# --- the gate claim and touchpoint pages put in front of a phone number --------------------


@dataclass(frozen=True)
class Gate:
    """What a page should do with a phone number when the brand asks for a code.

    `passed`: go on (the brand does not ask, or the code was right: the person holds the
    phone). Otherwise show the code field for `verification_id`, with `error` when a code was
    wrong or codes could not be sent (`status` is then the page's HTTP status).
    """

    passed: bool
    verification_id: str | None = None
    error: str | None = None
    status: int = 200


def required(session: Session, tenant_id: str) -> bool:
    from omniloop.messaging.channels import rules_of

    return bool(rules_of(session, tenant_id).otp_required)


def gate(session: Session, tenant: Tenant, phone_e164: str, ip: str | None,
         verification_id: str, code: str) -> Gate:
    """Send a code (first visit), or check the one typed, in the page's transaction: the
    page answers a wrong code with a normal response (the form again), so its transaction,
    and with it the counted attempt, commits."""
    from omniloop.core.ratelimit import RateLimited

    if not required(session, tenant.id):
        return Gate(passed=True)
    if verification_id and code.strip():
        result = check(session, tenant.id, verification_id, code, phone=phone_e164)
        if result.ok:
            return Gate(passed=True, verification_id=verification_id)
        return Gate(passed=False, verification_id=verification_id,
                    error=VerificationInvalid.message, status=422)
    try:
        row = start(session, tenant, phone_e164, ip)
    except RateLimited as exc:
        return Gate(passed=False, verification_id=verification_id or None,
                    error=exc.localized(), status=429)
    return Gate(passed=False, verification_id=row.id)
