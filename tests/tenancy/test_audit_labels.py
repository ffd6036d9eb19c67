"""Every action the code writes to the audit log has a label for the audit page."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi import FastAPI

import omniloop
from omniloop.tenancy.audit import action_label

_RECORD = re.compile(r'audit\.record\(\s*\w+,\s*[^,]+,\s*"([a-z_]+\.[a-z_]+)"', re.MULTILINE)


def test_every_written_action_has_a_label(app: FastAPI) -> None:  # app: all modules loaded
    source = Path(omniloop.__file__).parent
    actions = {match for path in source.rglob("*.py")
               for match in _RECORD.findall(path.read_text(encoding="utf-8"))}
    assert len(actions) >= 10, actions
    assert sorted(a for a in actions if action_label(a) is None) == []
