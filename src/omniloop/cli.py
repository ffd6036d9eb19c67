"""The `omniloop` command: set up the database, serve, load the demo, manage brands.

Each command that changes data runs in one unit of work and commits at the end, so a failed
command writes nothing. Bad input ends with `error: <code>: <message>` on stderr and exit
status 2 — the same stable codes the API returns — never a traceback. Output is English.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError, ProgrammingError

from omniloop.core.db import Database, Session, get_database, set_database
from omniloop.core.errors import OmniloopError, ValidationFailed
from omniloop.core.migrate import upgrade
from omniloop.core.settings import get_settings
from omniloop.tenancy import apikeys, staff, stores, tenants
from omniloop.tenancy.access import Actor, system_actor
from omniloop.tenancy.models import ApiScope, Role
from omniloop.tenancy.schemas import ApiKeyCreate, StaffCreate, StoreCreate

CLI_ACTOR = "omniloop CLI"
EXIT_BAD_INPUT = 2
EXIT_DATABASE = 1

app = typer.Typer(
    help="omniloop: one customer across online and in-store; coupons, loyalty and the "
         "measured marketing loop.",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
db_app = typer.Typer(no_args_is_help=True)
tenant_app = typer.Typer(no_args_is_help=True)
store_app = typer.Typer(no_args_is_help=True)
staff_app = typer.Typer(no_args_is_help=True)
apikey_app = typer.Typer(no_args_is_help=True)
import_app = typer.Typer(no_args_is_help=True)
loyalty_app = typer.Typer(no_args_is_help=True)
analytics_app = typer.Typer(no_args_is_help=True)
loops_app = typer.Typer(no_args_is_help=True)
journeys_app = typer.Typer(no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(tenant_app, name="tenant")
app.add_typer(store_app, name="store")
app.add_typer(staff_app, name="staff")
app.add_typer(apikey_app, name="apikey")
app.add_typer(import_app, name="import")
app.add_typer(loyalty_app, name="loyalty")
app.add_typer(analytics_app, name="analytics")
app.add_typer(loops_app, name="loops")
app.add_typer(journeys_app, name="journeys")


@app.callback()
def main(database_url: Annotated[str | None, typer.Option(
        "--database-url", metavar="URL",
        help="SQLAlchemy URL of the database to use instead of the configured one "
             "(OMNILOOP_DATABASE_URL, else the SQLite file in the data directory).")] = None,
         ) -> None:
    if database_url:
        set_database(Database(database_url))


@db_app.callback()
def db_group() -> None:
    """The database schema."""


@tenant_app.callback()
def tenant_group() -> None:
    """Brands (tenants)."""


@store_app.callback()
def store_group() -> None:
    """Stores of a brand."""


@staff_app.callback()
def staff_group() -> None:
    """Staff accounts of a brand (admin and POS sign-in)."""


@apikey_app.callback()
def apikey_group() -> None:
    """API keys of a brand."""


@import_app.callback()
def import_group() -> None:
    """Import customers or orders from CSV files exported by a POS, a shop or Excel."""


@loyalty_app.callback()
def loyalty_group() -> None:
    """Loyalty points and tiers."""


# --- errors and units of work -------------------------------------------------------------


def _fail(code: str, message: str, status: int = EXIT_BAD_INPUT) -> NoReturn:
    typer.echo(f"error: {code}: {message}", err=True)
    raise typer.Exit(status)


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error.get("loc", ()))
        message = str(error.get("msg", "invalid"))
        problems.append(f"invalid value for '{field}': {message}" if field else message)
    return "; ".join(problems)


@contextmanager
def _errors() -> Iterator[None]:
    """Turn domain, validation and database-setup errors into one line on stderr."""
    try:
        yield
    except OmniloopError as exc:
        _fail(exc.code, str(exc))
    except ValidationError as exc:
        _fail(ValidationFailed.code, _describe(exc))
    except (OperationalError, ProgrammingError) as exc:
        reason = str(exc.orig if exc.orig is not None else exc).strip().splitlines()[0]
        _fail("database_error", f"{reason} (is the database reachable and set up? "
                                f"run 'omniloop init' or 'omniloop db upgrade')",
              EXIT_DATABASE)


@contextmanager
def _unit_of_work() -> Iterator[Session]:
    """One transaction for the whole command: committed at the end, rolled back on error."""
    with _errors(), get_database().unit_of_work() as session:
        yield session


def _actor(session: Session, slug: str) -> Actor:
    return system_actor(tenants.get_tenant_by_slug(session, slug).id, CLI_ACTOR)


def _choice(kind: str, value: str, choices: type[Role] | type[ApiScope]) -> str:
    normalized = value.strip().lower().replace("-", "_")
    allowed = [choice.value for choice in choices]
    if normalized not in allowed:
        raise ValidationFailed(f"Unknown {kind} '{value}': use one of {', '.join(allowed)}.")
    return normalized


def _database_location(database: Database) -> str:
    url = database.engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return str(Path(url.database or "").resolve())
    return url.render_as_string(hide_password=True)


def _migrate() -> Database:
    database = get_database()
    with _errors():
        upgrade(database.engine)
    return database


def _serve(host: str, port: int) -> None:
    import uvicorn

    typer.echo(f"Serving on http://{host}:{port}/admin (Ctrl+C stops)")
    uvicorn.run("omniloop.app:create_app", factory=True, host=host, port=port)


def _admin_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/admin"


HostOption = Annotated[str, typer.Option(help="Address to listen on.")]
PortOption = Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")]
TenantOption = Annotated[str, typer.Option("--tenant", metavar="SLUG",
                                           help="Brand code (slug) of the brand.")]


# --- set-up and serving ----------------------------------------------------------------------


@app.command()
def init() -> None:
    """Create the data directory, bring the database schema up to date, ensure a secret key."""
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database = _migrate()
    settings.resolved_secret_key()
    key_source = ("OMNILOOP_SECRET_KEY" if settings.secret_key
                  else str((settings.data_dir / "secret_key").resolve()))
    typer.echo(f"Data directory: {settings.data_dir.resolve()}")
    typer.echo(f"Database:       {_database_location(database)} (schema up to date)")
    typer.echo(f"Secret key:     {key_source}")
    typer.echo("Next: 'omniloop demo --serve' for a demo brand, or 'omniloop tenant create'.")


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending schema migration."""
    database = _migrate()
    typer.echo(f"Database schema up to date: {_database_location(database)}")


@app.command()
def serve(host: HostOption = "127.0.0.1", port: PortOption = 8000,
          with_worker: Annotated[bool, typer.Option(
              "--with-worker", help="Also run the message worker (a child process), for "
                                    "the embedded install.")] = False) -> None:
    """Bring the schema up to date, then serve the admin, pages and API."""
    database = _migrate()
    if not with_worker:
        _serve(host, port)
        return
    from omniloop.messaging.worker_process import worker_alongside

    with worker_alongside(database.url):
        _serve(host, port)


@app.command()
def worker(threads: Annotated[int, typer.Option(
        min=1, max=16, help="Huey worker threads.")] = 2) -> None:
    """Send messages: LINE, e-mail, SMS and webhooks from the outbox (Ctrl+C stops)."""
    import logging

    from omniloop.messaging.worker import run_consumer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    _migrate()
    typer.echo("Message worker running (Ctrl+C stops)")
    run_consumer(workers=threads)


@app.command()
def demo(serve: Annotated[bool, typer.Option("--serve", help="Serve afterwards.")] = False,
         host: HostOption = "127.0.0.1", port: PortOption = 8000,
         customers: Annotated[int, typer.Option(
             min=0, max=20000, help="Demo members with 18 months of history (0: none).")]
         = 1500) -> None:
    """Load the demo brand (a Taipei café chain) and print its admin sign-ins.

    Safe to run again: what exists is kept, nothing is duplicated.
    """
    from omniloop.demo import load_demo

    _migrate()
    with _ImportProgress() as progress, _unit_of_work() as session:
        progress.on_phase("demo customers")
        result = load_demo(session, customers=customers, on_progress=progress.on_progress)
    counts = ", ".join(f"{n} {kind}" for kind, n in result.counts.items())
    added = ", ".join(f"{result.created[kind]} {kind}" for kind in result.counts
                      if result.created.get(kind))
    new = " (created now)" if result.created.get("brand") else ""
    typer.echo(f"Demo brand: {result.name} (brand code: {result.slug}){new}")
    typer.echo(f"  {counts}; " + (f"added now: {added}" if added else "nothing new to add"))
    typer.echo("")
    typer.echo(f"Admin: {_admin_url(host, port)}")
    typer.echo(f"  brand code: {result.slug}")
    typer.echo(f"  password:   {result.password}   (every demo account; a demo, not a secret)")
    shown: set[Role] = set()
    for login in result.logins:
        if login.role in shown:
            continue
        shown.add(login.role)
        where = f"  ({', '.join(login.store_codes)})" if login.store_codes else ""
        typer.echo(f"  {login.role.value:<14} {login.email}{where}")
    if serve:
        typer.echo("")
        _serve(host, port)


# --- brands, stores, staff, API keys ---------------------------------------------------------


@tenant_app.command("create")
def tenant_create(
        slug: Annotated[str, typer.Option(help="Brand code: 2–40 lowercase letters, digits "
                                               "or '-'.")],
        name: Annotated[str, typer.Option(help="Brand name, as customers see it.")],
        currency: Annotated[str | None, typer.Option(help="ISO 4217 code [default: TWD].")
                            ] = None,
        timezone: Annotated[str | None, typer.Option(help="IANA time zone "
                                                          "[default: Asia/Taipei].")] = None,
        locale: Annotated[str | None, typer.Option(help="zh_TW or en [default: zh_TW].")
                          ] = None) -> None:
    """Create a brand. Prints its id on the last line."""
    with _unit_of_work() as session:
        tenant = tenants.create_tenant(session, slug=slug, name=name, currency=currency,
                                       timezone=timezone, locale=locale)
        summary = (f"Created brand {tenant.slug} ({tenant.name}): {tenant.currency}, "
                   f"{tenant.timezone}, {tenant.locale}")
        tenant_id = tenant.id
    typer.echo(summary)
    typer.echo(tenant_id)


@store_app.command("create")
def store_create(
        tenant: TenantOption,
        code: Annotated[str, typer.Option(help="Store code, unique in the brand "
                                               "(e.g. TPE-XINYI).")],
        name: Annotated[str, typer.Option(help="Store name.")],
        address: Annotated[str, typer.Option(help="Postal address.")] = "",
        lat: Annotated[float | None, typer.Option(help="Latitude (-90…90).")] = None,
        lng: Annotated[float | None, typer.Option(help="Longitude (-180…180).")] = None,
        phone: Annotated[str, typer.Option(help="Phone number, e.g. 02-2345-6789.")] = "",
) -> None:
    """Create a store. Prints its id on the last line."""
    with _unit_of_work() as session:
        actor = _actor(session, tenant)
        store = stores.create_store(session, actor, StoreCreate.model_validate({
            "code": code, "name": name, "address": address, "latitude": lat, "longitude": lng,
            "phone": phone}))
        summary = f"Created store {store.code} ({store.name}) in brand {tenant}"
        store_id = store.id
    typer.echo(summary)
    typer.echo(store_id)


def _read_password(password: str | None, from_stdin: bool) -> str:
    if password is not None:
        return password
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))


@staff_app.command("create")
def staff_create(
        tenant: TenantOption,
        email: Annotated[str, typer.Option(help="Sign-in e-mail.")],
        name: Annotated[str, typer.Option(help="Full name.")],
        role: Annotated[str, typer.Option(help="owner, marketer, store_manager or cashier.")],
        store: Annotated[list[str] | None, typer.Option(
            "--store", metavar="CODE",
            help="A store they work in (repeatable); required for store managers and "
                 "cashiers.")] = None,
        password: Annotated[str | None, typer.Option(
            help="Password (10+ characters). Visible in the shell history: prefer the "
                 "prompt or --password-stdin.")] = None,
        password_stdin: Annotated[bool, typer.Option(
            "--password-stdin", help="Read the password from the first line of stdin.")
                                  ] = False,
) -> None:
    """Create a staff account. Asks for the password unless given. Prints its id last."""
    with _errors():
        chosen = Role(_choice("role", role, Role))
    secret = _read_password(password, password_stdin)
    with _unit_of_work() as session:
        actor = _actor(session, tenant)
        store_ids = [stores.get_store_by_code(session, actor, code).id for code in store or []]
        member = staff.create_staff(session, actor, StaffCreate(
            email=email, name=name, password=secret, role=chosen, store_ids=store_ids))
        summary = (f"Created {member.role.value} {member.email} in brand {tenant}"
                   + (f" for stores {', '.join(c.upper() for c in store or [])}"
                      if store_ids else ""))
        staff_id = member.id
    typer.echo(summary)
    typer.echo(staff_id)


@apikey_app.command("create")
def apikey_create(
        tenant: TenantOption,
        name: Annotated[str, typer.Option(help="What the key is for, e.g. 'POS 信義店'.")],
        scope: Annotated[list[str], typer.Option(
            "--scope", metavar="SCOPE", help="pos, ingest or admin (repeatable).")],
        store: Annotated[str | None, typer.Option(
            "--store", metavar="CODE", help="Bind the key to this one store.")] = None,
) -> None:
    """Create an API key. The key is printed once, alone on the last line."""
    with _unit_of_work() as session:
        scopes = [ApiScope(_choice("scope", s, ApiScope)) for s in scope]
        actor = _actor(session, tenant)
        store_id = stores.get_store_by_code(session, actor, store).id if store else None
        key, secret = apikeys.create_api_key(session, actor, ApiKeyCreate(
            name=name, scopes=scopes, store_id=store_id))
        summary = (f"Created API key {key.name} ({key.key_prefix}…) in brand {tenant}, "
                   f"scopes {', '.join(key.scopes)}"
                   + (f", store {store.upper()}" if store else ""))
    typer.echo(summary)
    typer.echo("The key is shown only now; store it safely:")
    typer.echo(secret)



# --- imports ---------------------------------------------------------------------------------

SkipBadRowsOption = Annotated[bool, typer.Option(
    "--skip-bad-rows", help="Import the good rows and report the bad ones. Without it, a "
                            "file with any bad row imports nothing.")]
ReportOption = Annotated[Path | None, typer.Option(
    "--report", metavar="FILE", help="Write every row error to this CSV file "
                                     "(row,column,reason).", dir_okay=False)]
FileArgument = Annotated[Path, typer.Argument(
    metavar="FILE", help="The CSV file: UTF-8 or Big5; comma, semicolon or tab separated.")]
_SHOWN_ERRORS = 20


class _ImportProgress:
    """A progress bar on stderr in a terminal; a line per tenth otherwise (logs, CI)."""

    def __init__(self) -> None:
        self.interactive = sys.stderr.isatty()
        self.phase = ""
        self._step = -1
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _ImportProgress:
        if self.interactive:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(TextColumn("{task.description:<9}"), BarColumn(),
                                      MofNCompleteColumn(), TimeRemainingColumn(),
                                      console=Console(stderr=True), transient=False)
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    def on_phase(self, phase: str) -> None:
        self.phase = phase
        self._step = -1
        if self._progress is not None:
            self._task = self._progress.add_task(phase, total=None)

    def on_progress(self, done: int, total: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, completed=done, total=total)
            return
        step = 10 if total <= 0 else done * 10 // total
        if step > self._step:
            self._step = step
            typer.echo(f"{self.phase or 'reading'}: {done}/{total} rows", err=True)


def _run_import(kind: str, file: Path, tenant: str, skip_bad_rows: bool,
                report_path: Path | None) -> None:
    from omniloop.imports.customers import import_customers
    from omniloop.imports.orders import import_orders
    from omniloop.imports.report import errors_csv_bytes

    try:
        data = file.read_bytes()
    except OSError as exc:
        _fail("file_not_readable", f"cannot read {file}: {exc.strerror or exc}")
    importer = import_customers if kind == "customers" else import_orders
    with _ImportProgress() as progress, _unit_of_work() as session:
        actor = _actor(session, tenant)
        report = importer(session, actor, data, file.name, skip_bad_rows=skip_bad_rows,
                          on_progress=progress.on_progress, on_phase=progress.on_phase)
    if report_path is not None:
        try:
            report_path.write_bytes(errors_csv_bytes(report.errors, localized=False))
        except OSError as exc:
            _fail("report_not_writable", f"cannot write {report_path}: {exc.strerror or exc}")
    for error in report.errors[:_SHOWN_ERRORS]:
        where = f"row {error.row}" + (f", {error.column}" if error.column else "")
        typer.echo(f"{where}: {error.text()}", err=True)
    if len(report.errors) > _SHOWN_ERRORS:
        more = len(report.errors) - _SHOWN_ERRORS
        typer.echo(f"… and {more} more" + (f" (all in {report_path})" if report_path else
                                            " (--report FILE writes them all)"), err=True)
    separated = {",": "comma", ";": "semicolon", "\t": "tab"}.get(report.delimiter, "comma")
    if report.ignored_columns:
        typer.echo(f"Ignored columns: {', '.join(report.ignored_columns)}")
    if report.rejected:
        _fail("import_rejected", f"nothing imported: {report.bad_rows} of {report.rows} rows "
                                 f"have errors; correct them, or run again with "
                                 f"--skip-bad-rows to import the others")
    counts = ", ".join(f"{name} {value}" for name, value in report.summary().items())
    typer.echo(f"Imported {kind} from {file.name} ({report.encoding}, {separated}-separated) "
               f"into brand {tenant}: {counts}")


@import_app.command("customers")
def import_customers_command(file: FileArgument, tenant: TenantOption,
                             skip_bad_rows: SkipBadRowsOption = False,
                             report: ReportOption = None) -> None:
    """Import customers: one row per person; each row needs a phone, e-mail, LINE id,
    member card or online shop id. Rows of one person land on one profile."""
    _run_import("customers", file, tenant, skip_bad_rows, report)


@import_app.command("orders")
def import_orders_command(file: FileArgument, tenant: TenantOption,
                          skip_bad_rows: SkipBadRowsOption = False,
                          report: ReportOption = None) -> None:
    """Import orders: one row per order line, grouped by order number. Importing the same
    file again changes nothing."""
    _run_import("orders", file, tenant, skip_bad_rows, report)


@loyalty_app.command("daily")
def loyalty_daily(tenant: Annotated[str | None, typer.Option(
        "--tenant", metavar="SLUG", help="Only this brand (default: every brand).")] = None,
                  ) -> None:
    """The daily loyalty job: expire due points, re-evaluate tiers on rolling 12-month
    spend, give birthday coupons. Safe to run again; schedule it once a day."""
    from omniloop.loyalty.jobs import run_daily

    with _unit_of_work() as session:
        chosen = ([tenants.get_tenant_by_slug(session, tenant)] if tenant
                  else tenants.list_tenants(session))
        for brand in chosen:
            run = run_daily(session, system_actor(brand.id, "loyalty daily job"))
            typer.echo(f"{brand.slug}: expired {run.expired_lots} lots; tiers: "
                       f"{run.tiers.upgraded} up, {run.tiers.downgraded} down of "
                       f"{run.tiers.evaluated}; birthday coupons: {run.birthdays.issued}"
                       + (f" ({len(run.birthdays.refused)} refused by their campaign)"
                          if run.birthdays.refused else ""))


@loops_app.callback()
def loops_group() -> None:
    """The in-store loop: touchpoints, feedback, referrals."""


@loops_app.command("expire-referrals")
def loops_expire_referrals(tenant: Annotated[str | None, typer.Option(
        "--tenant", metavar="SLUG", help="Only this brand (default: every brand).")] = None,
                           ) -> None:
    """Mark referrals whose window passed without a store purchase as expired. Safe to run
    again (the worker runs it hourly)."""
    from omniloop.loops.jobs import expire_referrals

    with _unit_of_work() as session:
        chosen = ([tenants.get_tenant_by_slug(session, tenant)] if tenant
                  else tenants.list_tenants(session))
        for brand in chosen:
            typer.echo(f"{brand.slug}: {expire_referrals(session, brand.id)} referrals expired")


@journeys_app.callback()
def journeys_group() -> None:
    """Automated journeys."""


@journeys_app.command("scan")
def journeys_scan(tenant: Annotated[str | None, typer.Option(
        "--tenant", metavar="SLUG", help="Only this brand (default: every brand).")] = None,
                  ) -> None:
    """Enter customers into journeys whose trigger comes with time: birthdays, coupons
    expiring within 3 days, points expiring within 30 days, no visit for 60 days. Safe to
    run again (nobody enters twice); the worker runs it daily at 04:00 per brand."""
    from omniloop.messaging.journey_scan import JOB_ACTOR, scan_due_triggers

    with _unit_of_work() as session:
        chosen = ([tenants.get_tenant_by_slug(session, tenant)] if tenant
                  else tenants.list_tenants(session))
        for brand in chosen:
            entered = scan_due_triggers(session, system_actor(brand.id, JOB_ACTOR))
            typer.echo(f"{brand.slug}: entered " + ", ".join(
                f"{trigger} {count}" for trigger, count in entered.items()))


@analytics_app.callback()
def analytics_group() -> None:
    """Customer analytics: lifetime value models."""


@analytics_app.command("clv")
def analytics_clv(
        transactions: Annotated[Path, typer.Option(
            "--transactions", metavar="FILE.csv",
            help="CSV with a header naming customer_id, date (YYYY-MM-DD) and amount.")],
        calibration_end: Annotated[str, typer.Option(
            "--calibration-end", metavar="YYYY-MM-DD",
            help="Last day of the calibration period (included); later rows are left out.")],
        ) -> None:
    """Fit BG/NBD and Gamma-Gamma to a CSV of transactions and print the parameters as JSON
    (time in weeks; purchases counted per customer and day)."""
    from omniloop.analytics.cli import clv_json

    try:
        text = transactions.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        _fail("file_not_readable", f"cannot read {transactions}: "
                                   f"{getattr(exc, 'strerror', None) or exc}")
    with _errors():
        typer.echo(clv_json(text, calibration_end))


if __name__ == "__main__":
    app()
