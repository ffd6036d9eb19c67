"""Problems with an import file as a whole: nothing of it is read or written."""

from __future__ import annotations

from omniloop.core.errors import N_, NotFound, ValidationFailed


class ImportFileError(ValidationFailed):
    """The file cannot be imported at all (as opposed to some of its rows)."""

    code = "import_file_invalid"
    message = N_("The file cannot be imported.")


class NotText(ImportFileError):
    code = "import_not_text"
    message = N_("The file is not text in UTF-8 or Big5: save it as CSV and try again.")


class ExcelWorkbook(ImportFileError):
    code = "import_excel_workbook"
    message = N_("This is an Excel workbook: save it as CSV (UTF-8) and import that file.")


class NoHeader(ImportFileError):
    code = "import_no_header"
    message = N_("The file is empty: the first line must name the columns.")


class MissingColumns(ImportFileError):
    code = "import_missing_columns"
    message = N_("Required columns are missing: {columns}.")


class NoIdentityColumn(ImportFileError):
    code = "import_missing_columns"
    message = N_("The file needs at least one identity column: {columns}.")


class FileTooLarge(ImportFileError):
    code = "import_file_too_large"
    message = N_("The file is larger than {size} MB.")


class TooManyRows(ImportFileError):
    code = "import_too_many_rows"
    message = N_("The file has more than {rows} rows: split it into smaller files.")


class ImportJobNotFound(NotFound):
    code = "import_job_not_found"
    message = N_("Import not found.")
