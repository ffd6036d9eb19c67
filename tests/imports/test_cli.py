"""`omniloop import customers|orders FILE`: progress on stderr, a summary, a CSV report."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from omniloop.cli import app
from omniloop.core.db import Database, Session, set_database
from omniloop.tenancy.models import Tenant
from tests.imports.factories import DATA, csv_file, live_customers, table_counts
from tests.tenancy.factories import make_store, make_tenant

Invoke = Callable[..., Result]

BAD = csv_file("姓名,手機,生日", "林小美,0912-345-678,80/03/08", "壞手機,12345,",
               "王大明,0922333444,1990/13/01")


@pytest.fixture
def cli(database: Database) -> Iterator[Invoke]:
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, ["--database-url", database.url, *args])

    yield invoke
    set_database(database)


@pytest.fixture
def tenant(session: Session) -> Tenant:
    tenant = make_tenant(session, slug="beanhouse")
    make_store(session, tenant, code="TPE01", name="信義店")
    return tenant


def read_report(path: Path) -> list[list[str]]:
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "Excel needs the BOM to show Chinese"
    return list(csv.reader(raw.decode("utf-8-sig").splitlines()))


def test_a_bad_file_is_rejected_with_exit_2_and_a_report(
        cli: Invoke, tenant: Tenant, session: Session, tmp_path: Path) -> None:
    source = tmp_path / "members.csv"
    source.write_bytes(BAD)
    report = tmp_path / "errors.csv"
    before = table_counts(session)
    result = cli("import", "customers", str(source), "--tenant", "beanhouse",
                 "--report", str(report))
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1] == (
        "error: import_rejected: nothing imported: 2 of 3 rows have errors; correct them, or "
        "run again with --skip-bad-rows to import the others")
    assert "row 3, 手機: '12345' is not a valid phone identity." in result.stderr
    assert "checking: 3/3 rows" in result.stderr
    assert read_report(report) == [
        ["row", "column", "reason"],
        ["3", "手機", "'12345' is not a valid phone identity."],
        ["4", "生日", "'1990/13/01' is not a date: use YYYY-MM-DD, YYYY/MM/DD or a ROC date "
                      "like 80/03/08."]]
    assert table_counts(session) == before


def test_skip_bad_rows_imports_the_others_and_prints_a_summary(
        cli: Invoke, tenant: Tenant, session: Session, tmp_path: Path) -> None:
    source = tmp_path / "members.csv"
    source.write_bytes(BAD)
    report = tmp_path / "errors.csv"
    result = cli("import", "customers", str(source), "--tenant", "beanhouse",
                 "--skip-bad-rows", "--report", str(report))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == (
        "Imported customers from members.csv (UTF-8, comma-separated) into brand beanhouse: "
        "rows 3, created 1, updated 0, merged 0, skipped 2, errors 2")
    assert "importing: 3/3 rows" in result.stderr
    assert len(read_report(report)) == 3
    assert [c.name for c in live_customers(session)] == ["林小美"]


def test_big5_customers_then_orders_twice(cli: Invoke, tenant: Tenant, session: Session
                                         ) -> None:
    made = cli("import", "customers", str(DATA / "customers_big5.csv"), "--tenant", "beanhouse",
               "--skip-bad-rows")
    assert made.exit_code == 0, made.output
    assert "(Big5 (CP950), comma-separated)" in made.stdout
    assert "Ignored columns: 地址" in made.stdout
    assert "skipped 1" in made.stdout  # 張家豪's store TPE02 does not exist here
    assert "row 5, 開卡門市: No store has the code or name 'TPE02'." in made.stderr
    first = cli("import", "orders", str(DATA / "orders_utf8_bom.csv"), "--tenant", "beanhouse")
    assert first.exit_code == 0, first.output
    assert first.stdout.splitlines()[-1].endswith(
        "rows 5, orders 4, created 4, unchanged 0, skipped 0, errors 0")
    counts = table_counts(session)
    again = cli("import", "orders", str(DATA / "orders_utf8_bom.csv"), "--tenant", "beanhouse")
    assert again.exit_code == 0, again.output
    assert again.stdout.splitlines()[-1].endswith(
        "rows 5, orders 4, created 0, unchanged 4, skipped 0, errors 0")
    assert table_counts(session) == {**counts, "audit": counts["audit"] + 1}


@pytest.mark.parametrize(("args", "content", "code"), [
    (["customers", "--tenant", "nobody"], b"\xef\xbb\xbfphone\n0912345678\n",
     "tenant_not_found"),
    (["customers", "--tenant", "beanhouse"], "姓名\n林小美\n".encode(), "import_missing_columns"),
    (["orders", "--tenant", "beanhouse"], "訂單編號,品名\nA1,拿鐵\n".encode(),
     "import_missing_columns"),
    (["customers", "--tenant", "beanhouse"], b"PK\x03\x04 an xlsx", "import_excel_workbook"),
    (["customers", "--tenant", "beanhouse"], None, "file_not_readable"),
])
def test_file_level_problems_are_one_line_and_exit_2(
        cli: Invoke, tenant: Tenant, tmp_path: Path, args: list[str], content: bytes | None,
        code: str) -> None:
    source = tmp_path / "file.csv"
    if content is not None:
        source.write_bytes(content)
    result = cli("import", args[0], str(source), *args[1:])
    assert result.exit_code == 2, result.output
    assert result.stderr.splitlines()[-1].startswith(f"error: {code}: "), result.stderr
