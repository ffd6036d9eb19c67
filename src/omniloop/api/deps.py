"""Dependencies shared by API routes and pages: the session and the acting API key.

The session commits when the route function returns without error and before the response is
sent (`scope="function"`), so a client never sees success for a change that did not commit.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from omniloop.core.db import Session, get_database
from omniloop.core.errors import AuthRequired
from omniloop.tenancy.access import Actor
from omniloop.tenancy.apikeys import authenticate_api_key

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def get_session(request: Request) -> Iterator[Session]:
    """One unit of work per request; GET, HEAD and OPTIONS only read and never block writers."""
    with get_database().unit_of_work(write=request.method not in READ_METHODS) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="An omniloop API key: `olk_…`")


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def get_api_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """The key's actor, checked in a short read transaction of its own.

    Authentication happens before the request's unit of work begins, so a write request's
    lock is not held while the key is looked up, and the key's use is recorded even when the
    request itself fails.
    """
    if credentials is None or not credentials.credentials:
        raise AuthRequired()
    with get_database().unit_of_work(write=False) as session:
        return authenticate_api_key(session, credentials.credentials, client_ip(request))


ApiActor = Annotated[Actor, Depends(get_api_actor)]
