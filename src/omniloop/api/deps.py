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


def get_session() -> Iterator[Session]:
    with get_database().sessionmaker() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="An omniloop API key: `olk_…`")


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def get_api_actor(
    request: Request,
    session: SessionDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    if credentials is None or not credentials.credentials:
        raise AuthRequired()
    return authenticate_api_key(session, credentials.credentials, client_ip(request))


ApiActor = Annotated[Actor, Depends(get_api_actor)]
