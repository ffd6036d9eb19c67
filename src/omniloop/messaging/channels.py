"""A brand's channel connections (LINE, SMTP, SMS provider) and its sending rules.

Credentials are stored encrypted (crypto.py) and never shown back: the admin form leaves a
secret blank to keep the stored one. The sending rules are quiet hours in the brand's time
zone and a weekly cap of marketing messages per customer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo

from omniloop.core.db import Session
from omniloop.messaging import crypto
from omniloop.messaging.errors import (
    ChannelNotConfigured,
    ChannelSettingsInvalid,
    MessagingSettingsInvalid,
)
from omniloop.messaging.models import ChannelConfig, MessagingSettings, OutboxChannel
from omniloop.tenancy import audit
from omniloop.tenancy.access import Actor, Permission

# What each channel needs: (settings fields, secret fields); all required but noted below.
_FIELDS: dict[OutboxChannel, tuple[tuple[str, ...], tuple[str, ...]]] = {
    OutboxChannel.line: ((), ("channel_access_token", "channel_secret")),
    OutboxChannel.email: (("host", "port", "from_address", "security", "username"),
                          ("password",)),
    OutboxChannel.sms: (("url",), ("token",)),
}
_OPTIONAL = {"username", "password"}
_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


@dataclass(frozen=True)
class Channel:
    channel: OutboxChannel
    enabled: bool
    settings: dict[str, Any]
    secrets: dict[str, Any]


def _check(channel: OutboxChannel, settings: dict[str, Any], secrets: dict[str, Any]) -> None:
    names, secret_names = _FIELDS[channel]
    for name in (*names, *secret_names):
        value = settings.get(name) if name in names else secrets.get(name)
        if name not in _OPTIONAL and (value is None or str(value).strip() == ""):
            raise ChannelSettingsInvalid(problem=f"'{name}' is required.")
    if channel is OutboxChannel.email:
        try:
            port = int(settings["port"])
        except (TypeError, ValueError):
            raise ChannelSettingsInvalid(problem="'port' must be a number.") from None
        if not 1 <= port <= 65535:
            raise ChannelSettingsInvalid(problem="'port' must be between 1 and 65535.")
        settings["port"] = port
        if settings["security"] not in ("none", "starttls", "tls"):
            raise ChannelSettingsInvalid(problem="'security' is none, starttls or tls.")
        if "@" not in str(settings["from_address"]):
            raise ChannelSettingsInvalid(problem="'from_address' must be an e-mail address.")
    if channel is OutboxChannel.sms:
        parsed = urlparse(str(settings["url"]))
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ChannelSettingsInvalid(problem="'url' must be an http(s) address.")


def save_channel(session: Session, actor: Actor, channel: OutboxChannel,
                 settings: dict[str, Any], secrets: dict[str, Any], *,
                 enabled: bool = True) -> ChannelConfig:
    """Store a channel's connection. A blank secret keeps the one stored before."""
    actor.require(Permission.campaigns_manage)
    if channel not in _FIELDS:
        raise ChannelSettingsInvalid(problem=f"'{channel.value}' has no settings here.")
    names, secret_names = _FIELDS[channel]
    row = session.get(ChannelConfig, (actor.tenant_id, channel))
    stored = crypto.decrypt(row.secrets) if row is not None and row.secrets else {}
    clean = {name: (str(settings[name]).strip() if isinstance(settings.get(name), str)
                    else settings.get(name)) for name in names if name in settings}
    merged = {name: (str(secrets[name]).strip() if secrets.get(name) else stored.get(name, ""))
              for name in secret_names}
    _check(channel, clean, merged)
    if row is None:
        row = ChannelConfig(tenant_id=actor.tenant_id, channel=channel)
        session.add(row)
    row.settings = clean
    row.secrets = crypto.encrypt(merged)
    row.enabled = enabled
    session.flush()
    audit.record(session, actor, "messaging.channel", "messaging_channel", None,
                 {"channel": channel.value, "enabled": enabled,
                  "secrets_changed": sorted(n for n in secret_names if secrets.get(n))})
    return row


def load_channel(session: Session, tenant_id: str, channel: OutboxChannel) -> Channel:
    """The decrypted connection, or ChannelNotConfigured when missing or switched off."""
    row = session.get(ChannelConfig, (tenant_id, channel))
    if row is None or not row.enabled:
        raise ChannelNotConfigured(channel=channel.value)
    return Channel(channel=channel, enabled=row.enabled, settings=dict(row.settings),
                   secrets=crypto.decrypt(row.secrets))


def channel_summary(session: Session, actor: Actor) -> dict[OutboxChannel, ChannelConfig]:
    actor.require(Permission.campaigns_read)
    from sqlalchemy import select

    return {row.channel: row for row in session.scalars(select(ChannelConfig).where(
        ChannelConfig.tenant_id == actor.tenant_id))}


# --- sending rules ------------------------------------------------------------------------


def rules_of(session: Session, tenant_id: str) -> MessagingSettings:
    """The brand's rules; defaults (not written) when it never saved any."""
    row = session.get(MessagingSettings, tenant_id)
    if row is None:
        row = MessagingSettings(tenant_id=tenant_id, quiet_start="21:00", quiet_end="09:00",
                                weekly_cap=3, welcome_text="", otp_required=False)
    return row


def save_rules(session: Session, actor: Actor, *, quiet_start: str, quiet_end: str,
               weekly_cap: int, welcome_text: str = "", otp_required: bool = False,
               welcome_campaign_id: str | None = None) -> MessagingSettings:
    actor.require(Permission.campaigns_manage)
    for name, value in (("quiet_start", quiet_start), ("quiet_end", quiet_end)):
        if not _HHMM.match(value):
            raise MessagingSettingsInvalid(problem=f"'{name}' must be a time like 21:00.")
    if not 0 <= weekly_cap <= 100:
        raise MessagingSettingsInvalid(problem="'weekly_cap' must be between 0 and 100.")
    if len(welcome_text) > 1000:
        raise MessagingSettingsInvalid(problem="the welcome text is over 1,000 characters.")
    row = session.get(MessagingSettings, actor.tenant_id)
    if row is None:
        row = MessagingSettings(tenant_id=actor.tenant_id)
        session.add(row)
    row.quiet_start, row.quiet_end, row.weekly_cap = quiet_start, quiet_end, weekly_cap
    row.welcome_text, row.otp_required = welcome_text, otp_required
    row.welcome_campaign_id = welcome_campaign_id or None
    session.flush()
    audit.record(session, actor, "messaging.settings", "messaging_settings", None,
                 {"quiet_start": quiet_start, "quiet_end": quiet_end,
                  "weekly_cap": weekly_cap, "otp_required": otp_required})
    return row


def _parse(hhmm: str) -> time:
    hours, minutes = hhmm.split(":")
    return time(int(hours), int(minutes))


def quiet_until(now: datetime, timezone: str, start: str, end: str) -> datetime | None:
    """When quiet hours that hold at `now` end (UTC), or None outside them.

    The window is in the brand's local time and may cross midnight (21:00–09:00); equal
    start and end mean no quiet hours. Daylight-saving gaps are resolved by ZoneInfo.
    """
    if start == end:
        return None
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    begin, finish = _parse(start), _parse(end)
    clock = local.time()
    inside = (begin <= clock < finish) if begin < finish else (clock >= begin or clock < finish)
    if not inside:
        return None
    day = local.date() if clock < finish else local.date() + timedelta(days=1)
    return datetime.combine(day, finish, tzinfo=zone).astimezone(now.tzinfo)
