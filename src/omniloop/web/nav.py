"""The admin navigation. Each domain module registers its entries from its `pages.py`."""

from __future__ import annotations

from dataclasses import dataclass

from omniloop.tenancy.access import Actor, Permission


@dataclass(frozen=True)
class NavItem:
    key: str
    label: str  # an English msgid, translated when rendered
    path: str
    permission: Permission | None
    order: float  # fractional to slot an entry between two others (5.5)


_items: dict[str, NavItem] = {}


def register(item: NavItem) -> None:
    _items[item.key] = item


def items_for(actor: Actor) -> list[NavItem]:
    return sorted((i for i in _items.values()
                   if i.permission is None or actor.can(i.permission)),
                  key=lambda i: i.order)
