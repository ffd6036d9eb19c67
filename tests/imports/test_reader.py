"""Reading files as exports come: encodings, delimiters, headers, rows; parsing cells."""

from __future__ import annotations

import csv
from datetime import date, datetime, time, timedelta, timezone

import pytest

from omniloop.customers.models import Gender
from omniloop.imports.customers import CUSTOMER_FIELDS
from omniloop.imports.errors import ExcelWorkbook, NoHeader, NotText
from omniloop.imports.orders import ORDER_FIELDS
from omniloop.imports.reader import normalize_header, read_table
from omniloop.imports.report import RowError, errors_csv_bytes
from omniloop.imports.values import (
    CellError,
    parse_amount,
    parse_channel,
    parse_date,
    parse_datetime,
    parse_gender,
    parse_quantity,
    parse_time_of_day,
    split_tags,
)
from tests.imports.factories import DATA, csv_file

HEADER = "姓名,手機,生日"
ROW = "林小美,0912-345-678,80/03/08"


@pytest.mark.parametrize(("data", "encoding"), [
    (csv_file(HEADER, ROW), "UTF-8"),
    (csv_file(HEADER, ROW, bom=True), "UTF-8 (BOM)"),
    (csv_file(HEADER, ROW, encoding="cp950"), "Big5 (CP950)"),
    (csv_file(HEADER, ROW, encoding="utf-16"), "UTF-16"),  # Excel's "Unicode text"
])
def test_encodings(data: bytes, encoding: str) -> None:
    table = read_table(data, CUSTOMER_FIELDS)
    assert table.encoding == encoding
    assert table.columns == {"name": "姓名", "phone": "手機", "birthday": "生日"}
    assert [(row.number, row.cells) for row in table.rows] == [
        (2, {"name": "林小美", "phone": "0912-345-678", "birthday": "80/03/08"})]


def test_a_real_big5_export_reads_as_chinese() -> None:
    raw = (DATA / "customers_big5.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    table = read_table(raw, CUSTOMER_FIELDS)
    assert table.encoding == "Big5 (CP950)"
    assert table.ignored == ["地址"]
    assert [row.cells["name"] for row in table.rows] == ["林小美", "陳大文", "王美玲", "張家豪"]
    assert table.rows[0].cells["tags"] == "VIP、拿鐵"


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_delimiter_is_sniffed(delimiter: str) -> None:
    data = csv_file(HEADER.replace(",", delimiter),
                    "\"林, 小美\"" + delimiter + "0912345678" + delimiter + "1991-03-08")
    table = read_table(data, CUSTOMER_FIELDS)
    assert table.delimiter == delimiter
    assert table.rows[0].cells["name"] == "林, 小美"


def test_excel_sep_line_and_row_numbers_count_blank_lines() -> None:
    data = csv_file("sep=;", "姓名;手機", "甲;0912345678", "", "乙;0922333444",
                    "\"丙\n(two lines)\";0933111222", "丁;0955111222")
    table = read_table(data, CUSTOMER_FIELDS)
    assert table.delimiter == ";"
    assert [(row.number, row.cells["name"]) for row in table.rows] == [
        (2, "甲"), (4, "乙"), (5, "丙\n(two lines)"), (6, "丁")]


def test_header_aliases_in_chinese_and_english_any_case_and_width() -> None:
    data = csv_file("Name, Mobile ,Ｅ－ｍａｉｌ,LINE ID,Card No.,ecommerce_id,Birthday,SEX,"
                    "Tags,Home Store,備註", "a,b,c,d,e,f,g,h,i,j,k")
    table = read_table(data, CUSTOMER_FIELDS)
    assert set(table.columns) == {"name", "phone", "email", "line", "pos_card", "ecommerce",
                                  "birthday", "gender", "tags", "home_store"}
    assert table.columns["email"] == "Ｅ－ｍａｉｌ"
    assert table.ignored == ["備註"]
    assert normalize_header("單價（元）") == "單價"
    assert normalize_header(" Unit_Price ") == "unitprice"


def test_the_better_alias_wins_when_two_columns_mean_one_field() -> None:
    table = read_table(csv_file("電話,姓名,手機", "02-2345-6789,林小美,0912345678"),
                       CUSTOMER_FIELDS)
    assert table.columns["phone"] == "手機"
    assert table.rows[0].cells["phone"] == "0912345678"
    assert table.ignored == ["電話"]


def test_order_headers_differ_from_customer_headers() -> None:
    table = read_table(csv_file("訂單編號,門市,日期,時間,品號,品名,數量,單價,折扣",
                                "A1,TPE01,113/11/20,14:30,SKU,拿鐵,1,120,0"), ORDER_FIELDS)
    assert table.columns["product"] == "品名"
    assert table.columns["store"] == "門市"
    assert "name" not in table.columns


def test_extra_cells_are_counted_and_short_rows_padded() -> None:
    table = read_table(csv_file("姓名,手機", "甲,0912345678,台北市,信義區", "乙"),
                       CUSTOMER_FIELDS)
    assert [(row.extra, row.cells) for row in table.rows] == [
        (2, {"name": "甲", "phone": "0912345678"}), (0, {"name": "乙", "phone": ""})]


@pytest.mark.parametrize(("data", "error"), [
    (b"", NoHeader),
    (b"\r\n \r\n", NoHeader),
    (b"PK\x03\x04\x14\x00\x06\x00", ExcelWorkbook),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", ExcelWorkbook),
    (b"name\x00,phone\n", NotText),
    (b"\xff\xfe\xfd\x81\x30", NotText),
])
def test_files_that_cannot_be_read(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        read_table(data, CUSTOMER_FIELDS)


@pytest.mark.parametrize(("text", "expected"), [
    ("1991-03-08", date(1991, 3, 8)),
    ("1991/3/8", date(1991, 3, 8)),
    ("80/03/08", date(1991, 3, 8)),  # ROC (民國) 80 = 1991
    ("113/11/25", date(2024, 11, 25)),
    ("80.3.8", date(1991, 3, 8)),
    ("0800308", date(1991, 3, 8)),
    ("1131125", date(2024, 11, 25)),
    ("19910308", date(1991, 3, 8)),
    ("民國80年3月8日", date(1991, 3, 8)),
    ("1991年3月8日", date(1991, 3, 8)),
    ("１９９１／０３／０８", date(1991, 3, 8)),
    ("1991-03-08 00:00:00", date(1991, 3, 8)),
])
def test_dates(text: str, expected: date) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["3/8/1991", "1991-02-30", "113/13/01", "abc", "123456789",
                                  "1991-03-08 14:30"])
def test_bad_dates(text: str) -> None:
    with pytest.raises(CellError) as caught:
        parse_date(text)
    assert caught.value.params == {"value": text}


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-11-25 14:30", datetime(2024, 11, 25, 14, 30)),
    ("2024/11/25 14:30:15", datetime(2024, 11, 25, 14, 30, 15)),
    ("113/11/25 14:30", datetime(2024, 11, 25, 14, 30)),
    ("2024/11/25 下午 02:30:00", datetime(2024, 11, 25, 14, 30)),
    ("2024/11/25 上午 12:05:00", datetime(2024, 11, 25, 0, 5)),
    ("2024/11/25 2:30 PM", datetime(2024, 11, 25, 14, 30)),
    ("113/11/25", datetime(2024, 11, 25)),
    ("2024-11-25T14:30:00+08:00",
     datetime(2024, 11, 25, 14, 30, tzinfo=timezone(timedelta(hours=8)))),
])
def test_datetimes(text: str, expected: datetime) -> None:
    assert parse_datetime(text) == expected


@pytest.mark.parametrize("text", ["2024-11-25 25:00", "2024/11/25 下午 14:00", "tomorrow",
                                  "2024-11-25 2pm"])
def test_bad_datetimes(text: str) -> None:
    with pytest.raises(CellError):
        parse_datetime(text)


def test_time_of_day() -> None:
    assert parse_time_of_day("下午 02:30:00") == time(14, 30)
    assert parse_time_of_day("09:05") == time(9, 5)
    with pytest.raises(CellError):
        parse_time_of_day("2024-11-25")


@pytest.mark.parametrize(("text", "minor"), [
    ("120", 12000), ("1,200", 120000), ("NT$120", 12000), ("NT$ 1,200.50", 120050),
    ("$99", 9900), ("120元", 12000), ("０", 0), ("１２０", 12000),
])
def test_amounts_in_twd(text: str, minor: int) -> None:
    assert parse_amount(text, "TWD") == minor


@pytest.mark.parametrize("text", ["-5", "1.234", "abc", "NaN", "Infinity", ""])
def test_bad_amounts(text: str) -> None:
    with pytest.raises(CellError):
        parse_amount(text, "TWD")


def test_quantities_genders_tags_channels() -> None:
    assert [parse_quantity(t) for t in ("2", "2.0", "1,000", "３")] == [2, 2, 1000, 3]
    for bad in ("0", "-1", "1.5", "two"):
        with pytest.raises(CellError):
            parse_quantity(bad)
    assert [parse_gender(t) for t in ("男", "女", "M", "f", "Male", "female", "小姐")] == [
        Gender.male, Gender.female, Gender.male, Gender.female, Gender.male, Gender.female,
        Gender.female]
    with pytest.raises(CellError):
        parse_gender("?")
    assert split_tags("VIP、拿鐵, 外帶，VIP") == ["VIP", "拿鐵", "外帶"]
    assert [parse_channel(t) for t in ("門市", "網路", "POS", "Online", "線上")] == [
        "store", "online", "store", "online", "online"]
    with pytest.raises(CellError):
        parse_channel("phone")


def test_the_error_report_is_csv_a_spreadsheet_will_not_run() -> None:
    errors = [RowError(3, "手機", "'{value}' is not a valid {kind} identity.",
                       {"value": "12345", "kind": "phone"}),
              RowError(4, "=HYPERLINK(\"http://x\")", "This cell is required.")]
    raw = errors_csv_bytes(errors, localized=False)
    assert raw.startswith(b"\xef\xbb\xbf")
    assert list(csv.reader(raw.decode("utf-8-sig").splitlines())) == [
        ["row", "column", "reason"],
        ["3", "手機", "'12345' is not a valid phone identity."],
        ["4", "'=HYPERLINK(\"http://x\")", "This cell is required."]]
