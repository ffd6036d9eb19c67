"""The `import_jobs` table: one upload from the admin, its progress and its outcome.

The import itself runs in one transaction that commits only at its end; the job row is
updated by the worker in short transactions of its own, so its progress shows meanwhile.
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKeyConstraint, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from omniloop.core.clock import utcnow
from omniloop.core.db import Base, created_at_column, id_column, string_enum
from omniloop.tenancy.models import tenant_fk


class ImportStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    done = "done"  # imported (bad rows skipped when asked)
    rejected = "rejected"  # nothing written: a bad row, or a file that cannot be read
    failed = "failed"  # nothing written: an unexpected error (see the server log)


FINISHED = frozenset({ImportStatus.done, ImportStatus.rejected, ImportStatus.failed})


class ImportJob(Base):
    __tablename__ = "import_jobs"
    __table_args__ = (
        ForeignKeyConstraint(["tenant_id", "created_by"],
                             ["staff_users.tenant_id", "staff_users.id"]),
        Index("ix_import_jobs_tenant_id_created_at", "tenant_id", "created_at"),
    )

    tenant_id: Mapped[str] = tenant_fk()
    id: Mapped[str] = id_column()
    kind: Mapped[str] = mapped_column(String(16))  # customers | orders
    file_name: Mapped[str] = mapped_column(String(255))
    skip_bad_rows: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[ImportStatus] = mapped_column(
        string_enum(ImportStatus, 16),
        default=ImportStatus.queued)
    phase: Mapped[str] = mapped_column(String(16), default="")  # checking | importing
    processed: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    # {"rows": n, "created": n, ..., "errors": n} and, for a file refused whole,
    # "problem": {"code", "reason", "params"}; "ignored_columns": [...]
    counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # The first MAX_STORED_ERRORS row errors: [{"row", "column", "reason", "params"}]
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_by: Mapped[str | None] = mapped_column(String(26))
    created_by_label: Mapped[str] = mapped_column(String(160), default="")
    created_at: Mapped[datetime] = created_at_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
