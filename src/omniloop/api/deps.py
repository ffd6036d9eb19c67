"""Dependencies shared by API routes and pages: the session and the acting API key.

The session commits when the route function returns without error and before the response is
sent (`scope="function"`), so a client never sees success for a change that did not commit.

Routes that are called very often (batch ingestion, identify) are `async def` and run their
whole unit of work with `in_unit_of_work`: one trip to a worker thread (`core.threads`)
instead of the three a sync route with `SessionDep` makes (the session's start, the route,
the session's end), each of which costs tens of microseconds of thread hand-over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from omniloop.core.db import Session, get_database
from omniloop.core.errors import AuthRequired
from omniloop.core.threads import in_thread
from omniloop.tenancy.access import Actor
from omniloop.tenancy.apikeys import authenticate_api_key, cached_actor

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

T = TypeVar("T")


def get_session(request: Request) -> Iterator[Session]:
    """One unit of work per request; GET, HEAD and OPTIONS only read and never block writers."""
    with get_database().unit_of_work(write=request.method not in READ_METHODS) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


async def in_unit_of_work(request: Request, work: Callable[[Session], T], *,
                          write: bool | None = None) -> T:
    """`work(session)` in the request's unit of work, as `SessionDep` gives it (a write
    transaction unless the method only reads), committed before this returns: for async
    routes, in one trip to a worker thread — on SQLite, writes to the database's writer
    thread (`core.writer`), which commits those that queue together at once, and reads to
    its reader thread. `write=False` for a POST that only reads. Errors roll the work back
    and propagate."""
    if write is None:
        write = request.method not in READ_METHODS
    database = get_database()
    if write and database.writer is not None:
        return await database.writer.run(work)
    if not write and database.reader is not None:
        return await database.reader.run(work)

    def run() -> T:
        with database.unit_of_work(write=write) as session:
            return work(session)

    return await in_thread(run)


_bearer = HTTPBearer(auto_error=False, description="An omniloop API key: `olk_…`")


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def _authenticate(secret: str, ip: str | None) -> Actor:
    with get_database().unit_of_work(write=False) as session:
        return authenticate_api_key(session, secret, ip)


async def get_api_actor(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Actor:
    """The key's actor: from memory for a key this process checked a moment ago
    (`apikeys.cached_actor`, no thread, no database), else checked in a short read
    transaction of its own.

    Authentication happens before the request's unit of work begins, so a write request's
    lock is not held while the key is looked up, and the key's use is recorded even when the
    request itself fails. FastAPI solves it before validating the request body, so a request
    without a valid key is answered 401 whatever fields its body holds.
    """
    if credentials is None or not credentials.credentials:
        raise AuthRequired()
    ip = client_ip(request)
    actor = cached_actor(credentials.credentials, ip)
    if actor is not None:
        return actor
    return await in_thread(_authenticate, credentials.credentials, ip)


ApiActor = Annotated[Actor, Depends(get_api_actor)]
