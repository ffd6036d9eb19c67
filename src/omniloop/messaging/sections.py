"""What messaging adds to the customer 360 page: the person's open staff tasks (from
journeys), each with its *Done* button (posting to messaging/pages.py)."""

from __future__ import annotations

from typing import Any

from omniloop.core.db import Session
from omniloop.core.errors import N_
from omniloop.customers.models import Customer
from omniloop.customers.sections import ProfileSection, register_section
from omniloop.messaging.tasks import tasks_of
from omniloop.tenancy.access import Actor, Permission
from omniloop.tenancy.stores import list_stores


def _tasks_section(session: Session, actor: Actor, customer: Customer,
                   ids: set[str]) -> dict[str, Any]:
    return {"tasks": tasks_of(session, actor, ids),
            "store_names": {s.id: s.name for s in list_stores(session, actor)},
            "can_mark": actor.can(Permission.customers_write),
            "back": f"/admin/customers/{customer.id}"}


register_section(ProfileSection("staff_tasks", N_("Staff tasks"),
                                "admin/sections/staff_tasks.html", 25, _tasks_section))
