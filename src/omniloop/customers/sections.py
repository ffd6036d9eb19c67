"""Sections of the customer 360 page, contributed by the modules that own the data.

The customers module shows identities and merges; events add the timeline, orders the
purchases, and later coupons and points their own. A module registers a loader that returns
the template context of its section for one customer (the survivor and the ids of every
profile merged into it), so the page never queries another module's tables itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from omniloop.core.db import Session
from omniloop.customers.models import Customer
from omniloop.tenancy.access import Actor, Permission

SectionLoader = Callable[[Session, Actor, Customer, set[str]], dict[str, Any]]


@dataclass(frozen=True)
class ProfileSection:
    key: str
    label: str  # English msgid
    template: str  # rendered with the loader's context under the name `section`
    order: int
    load: SectionLoader
    permission: Permission = Permission.customers_read


_sections: dict[str, ProfileSection] = {}


def register_section(section: ProfileSection) -> None:
    _sections[section.key] = section


def sections_for(actor: Actor) -> list[ProfileSection]:
    return sorted((s for s in _sections.values() if actor.can(s.permission)),
                  key=lambda s: s.order)
