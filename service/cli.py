"""The `intake` command: run the API or the worker, migrate, load data, manage keys, export the spec."""

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from service.settings import get_settings

app = typer.Typer(help="Citizen-feedback intake service.", no_args_is_help=True, add_completion=False)
catalogue_app = typer.Typer(help="Categories, departments, routing rules and SLA policies.", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys for apps and department systems.", no_args_is_help=True)
jurisdictions_app = typer.Typer(help="Ward and district boundaries.", no_args_is_help=True)
app.add_typer(catalogue_app, name="catalogue")
app.add_typer(apikey_app, name="apikey")
app.add_typer(jurisdictions_app, name="jurisdictions")
user_app = typer.Typer(
    help="Staff users (officers, dispatchers, supervisors, IOC viewers, admins).", no_args_is_help=True
)
app.add_typer(user_app, name="user")

T = TypeVar("T")
WORKER_RESTART_SECONDS = 2
ROOT = Path(__file__).resolve().parent.parent


def _in_session(work: Callable[..., Awaitable[T]]) -> T:
    """Run one unit of work in a committed transaction, for commands that write."""
    from service.db import create_engine, session_factory

    async def runner() -> T:
        from service import privacy

        settings = get_settings()
        privacy.configure(settings.pii_encryption_keys, settings.secret_key)
        engine = create_engine(settings)
        try:
            async with session_factory(engine)() as session:
                result = await work(session)
                await session.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(runner())


@app.command()
def serve(
    host: Annotated[str, typer.Option(envvar="HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="PORT")] = 8000,
    workers: Annotated[int, typer.Option(envvar="WEB_CONCURRENCY", help="API processes")] = 1,
) -> None:
    """Start the API server."""
    import uvicorn

    from service.logs import configure_logging

    settings = get_settings()
    log_config = configure_logging(settings.log_level, settings.log_json)
    uvicorn.run(
        "service.main:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=log_config,
        proxy_headers=True,
    )


@app.command()
def worker() -> None:
    """Start one worker process: the reports' queue (classification, routing, SLA, photos, sweeps) and the
    webhook deliveries' queue, each with its own slots."""
    import logging
    import time

    from redis.exceptions import RedisError

    from service.logs import configure_logging
    from workers.main import run

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    # arq ends its worker when Redis goes away; start it again once Redis answers, rather than leave the
    # queue unserved until something restarts the process (tests/test_faults.py stops Redis for 30 s).
    while True:
        try:
            run(settings)
            return
        except (RedisError, OSError) as exc:
            logging.getLogger("service.worker").warning(
                "worker lost Redis (%s): starting again in %d s", type(exc).__name__, WORKER_RESTART_SECONDS
            )
            time.sleep(WORKER_RESTART_SECONDS)


@app.command()
def migrate(revision: str = "head") -> None:
    """Bring the database schema up to date (Alembic)."""
    from alembic import command
    from alembic.config import Config

    folder = migrations_dir(get_settings().migrations_dir)
    ini = folder.parent / "alembic.ini"
    config = Config(str(ini)) if ini.is_file() else Config()
    config.set_main_option("script_location", str(folder))
    command.upgrade(config, revision)


def migrations_dir(configured: Path | None = None) -> Path:
    """The folder holding Alembic's env.py: MIGRATIONS_DIR, the source checkout's, or the working directory's.

    Installed from a wheel, ROOT is site-packages, where `alembic/` is the Alembic library itself: a folder
    only counts when it holds env.py."""
    candidates = [configured] if configured else [ROOT / "alembic", Path.cwd() / "alembic"]
    for candidate in candidates:
        if (candidate / "env.py").is_file():
            return candidate.resolve()
    typer.echo(
        f"no Alembic migrations (env.py) in {' or '.join(str(c) for c in candidates)}: "
        "run from the folder that holds alembic/ or set MIGRATIONS_DIR",
        err=True,
    )
    raise typer.Exit(2)


@catalogue_app.command("load")
def catalogue_load(
    path: Path,
    check: Annotated[bool, typer.Option("--check", help="Print every problem with its line; load nothing")] = False,
    keep_own: Annotated[
        bool,
        typer.Option(
            "--keep-own",
            help="Leave a catalogue loaded from another file, or one this map rejects, in place (make run)",
        ),
    ] = False,
) -> None:
    """Load (or reload) a catalogue file; the workers use the new version at once.

    Every rule must name a department and category of the file and a jurisdiction of the imported map."""
    from service.catalogue import service
    from service.catalogue.checks import CatalogueError, with_lines

    try:
        catalogue, checksum = service.read_file(path)
    except OSError as exc:
        typer.echo(f"cannot read catalogue {path}: {exc}", err=True)
        raise typer.Exit(2) from exc
    except CatalogueError as exc:
        _print_problems(path, exc.problems)
        raise typer.Exit(2) from exc
    source = str(path.resolve())

    async def work(session) -> tuple[str, bool] | str:
        current = await service.current_source(session)
        if keep_own and current is not None and str(Path(current).resolve()) != source:
            return f"catalogue: the current one was loaded from {current}; {path} is not loaded"
        if problems := with_lines(await service.check(session, catalogue), path.read_bytes()):
            if check or not keep_own:
                raise CatalogueError(problems)
            _print_problems(path, problems, heading="warning: the current catalogue stays")
            return f"catalogue: {path} not loaded"
        if check:
            return f"catalogue {path}: no problems"
        return await service.load(session, catalogue=catalogue, checksum=checksum, source=source)

    try:
        outcome = _in_session(work)
    except CatalogueError as exc:
        _print_problems(path, exc.problems)
        raise typer.Exit(2) from exc
    if isinstance(outcome, str):
        typer.echo(outcome)
    else:
        version, changed = outcome
        typer.echo(f"catalogue {version} {'loaded' if changed else 'already current'}")


def _print_problems(path: Path, problems, heading: str = "not loaded") -> None:
    typer.echo(f"catalogue {path}: {len(problems)} problem(s), {heading}:", err=True)
    for problem in problems:
        typer.echo(f"  {problem}", err=True)


def _password_option(help_text: str):
    return typer.Option(
        prompt=True, hide_input=True, confirmation_prompt=True, envvar="INTAKE_PASSWORD", help=help_text
    )


def _on_user(work: Callable[..., Awaitable[T]], failure: str) -> T:
    """`work` on a user, or the reason it cannot be done (exit 2; 1 for an unknown user)."""
    try:
        return _in_session(work)
    except LookupError as exc:
        typer.echo(f"{failure}: {exc.args[0]}", err=True)
        raise typer.Exit(1) from exc
    except ValueError as exc:
        typer.echo(f"{failure}: {exc}", err=True)
        raise typer.Exit(2) from exc


@user_app.command("create")
def user_create(
    username: Annotated[str, typer.Option()],
    role: Annotated[str, typer.Option(help="officer, dispatcher, supervisor, ioc_viewer or admin")],
    department: Annotated[str | None, typer.Option(help="Department code (officers and supervisors)")] = None,
    full_name: Annotated[str, typer.Option()] = "",
    password: Annotated[str, _password_option("Prompted for when not given (or INTAKE_PASSWORD)")] = "",
) -> None:
    """Create a staff user who signs in at POST /v1/auth/token."""
    from service.auth import users

    user = _on_user(
        lambda session: users.create(
            session, username=username, password=password, role=role, department_code=department, full_name=full_name
        ),
        "cannot create user",
    )
    typer.echo(f"created {user.username} ({user.role}{', ' + user.department_code if user.department_code else ''})")


@user_app.command("list")
def user_list() -> None:
    """List staff users: name, role, department, state, last sign-in."""
    from service.auth import users

    for user in _in_session(users.list_):
        state = "active" if user.active else "deactivated"
        last = f"{user.last_login_at:%Y-%m-%d %H:%M}" if user.last_login_at else "never"
        typer.echo(
            f"{user.username}\t{user.role}\t{user.department_code or '-'}\t{state}\tlast sign-in {last}\t{user.full_name}"
        )


@user_app.command("change")
def user_change(
    username: str,
    role: Annotated[str | None, typer.Option(help="officer, dispatcher, supervisor, ioc_viewer or admin")] = None,
    department: Annotated[str | None, typer.Option(help='Department code ("" for none)')] = None,
    full_name: Annotated[str | None, typer.Option()] = None,
    active: Annotated[
        bool | None,
        typer.Option("--active/--deactivate", help="Let the user sign in, or stop them (keeps their history)"),
    ] = None,
) -> None:
    """Change a user's role, department, name, or whether they may sign in. A new role or department,
    or deactivating, ends every sign-in of the user at once, and gives the open tickets they may no
    longer hold back to their department's queue."""
    from service.auth import users

    changed = _on_user(
        lambda session: users.change_account(
            session, username, role=role, department_code=department, full_name=full_name, active=active
        ),
        "cannot change user",
    )
    user, state = changed.user, "active" if changed.user.active else "deactivated"
    typer.echo(f"{user.username}: {user.role}{', ' + user.department_code if user.department_code else ''}, {state}")
    if changed.tickets_released:
        typer.echo(f"{changed.tickets_released} open ticket(s) they held given back to their department's queue")


@user_app.command("set-password")
def user_set_password(
    username: str,
    password: Annotated[
        str, _password_option("The new password; prompted for when not given (or INTAKE_PASSWORD)")
    ] = "",
) -> None:
    """Set a user's password (they forgot it, or it leaked). Every sign-in of the user ends."""
    from service.auth import users

    user = _on_user(lambda session: users.reset_password(session, username, password), "cannot set password")
    typer.echo(f"password of {user.username} set; their sign-ins are ended")


@user_app.command("sign-out")
def user_sign_out(username: str) -> None:
    """End every sign-in of a user (a lost phone, a shared computer): their tokens stop working at once."""
    from service.auth import users

    async def work(session):
        user = await users.existing(session, username)
        return user.username, await users.end_sign_ins(session, user.id)

    name, ended = _on_user(work, "cannot sign out")
    typer.echo(f"{name}: {ended} refresh token(s) revoked")


@apikey_app.command("create")
def apikey_create(
    name: Annotated[str, typer.Option(help="Who the key is for")],
    role: Annotated[str, typer.Option(help="citizen_app, department_system, officer, …")] = "citizen_app",
    department: Annotated[str | None, typer.Option(help="Department code, for department systems")] = None,
    rate: Annotated[
        str | None,
        typer.Option(help="The key's own intake limit, e.g. 1000/minute (default RATE_LIMIT_INTAKE_PER_KEY)"),
    ] = None,
) -> None:
    """Create an API key. The key is printed once and never stored."""
    from service.auth import api_keys

    try:
        issued = _in_session(
            lambda session: api_keys.create(session, name=name, role=role, department_code=department, rate_limit=rate)
        )
    except ValueError as exc:
        typer.echo(f"cannot create key: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(issued.key)
    typer.echo(
        f"prefix {issued.client.key_prefix} role {issued.client.role}: store this key now, it is not shown again",
        err=True,
    )


@apikey_app.command("revoke")
def apikey_revoke(prefix: str) -> None:
    """Revoke a key by its prefix (the part after `ik_`)."""
    from service.auth import api_keys

    client = _in_session(lambda session: api_keys.revoke(session, prefix=prefix))
    if client is None:
        typer.echo(f"no key with prefix {prefix}", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {prefix} ({client.name})")


@apikey_app.command("list")
def apikey_list() -> None:
    """List keys (prefix, role, name, state); never the keys themselves."""
    from service.auth import api_keys

    for client in _in_session(api_keys.list_):
        state = f"revoked {client.revoked_at:%Y-%m-%d}" if client.revoked_at else "active"
        used = f"{client.last_used_at:%Y-%m-%d %H:%M}" if client.last_used_at else "never"
        rate = client.rate_limit or "default rate"
        typer.echo(f"{client.key_prefix}\t{client.role}\t{state}\tlast used {used}\t{rate}\t{client.name}")


@jurisdictions_app.command("import")
def jurisdictions_import(
    path: Path,
    level: Annotated[str, typer.Option(help="ward, district, city, …")] = "ward",
    code_field: Annotated[str, typer.Option(help="Feature property holding the code")] = "code",
    name_field: Annotated[str, typer.Option(help="Feature property holding the name")] = "name",
    parent_field: Annotated[str | None, typer.Option(help="Feature property holding the parent's code")] = None,
    parent_name_field: Annotated[str | None, typer.Option(help="Feature property holding the parent's name")] = None,
    parent_level: Annotated[
        str, typer.Option(help="Level of the parents the file names (created when new)")
    ] = "district",
    replace: Annotated[
        bool, typer.Option("--replace", help="The file becomes the whole of its level: the others are removed")
    ] = False,
) -> None:
    """Import a GeoJSON FeatureCollection of (Multi)Polygons; existing codes are updated, all in one transaction."""
    from service.jurisdictions import service
    from service.jurisdictions.geo import GeoJSONError, parse_feature_collection

    try:
        shapes = parse_feature_collection(
            json.loads(path.read_text()),
            level=level,
            code_field=code_field,
            name_field=name_field,
            parent_field=parent_field,
            parent_name_field=parent_name_field,
        )
    except (OSError, ValueError, GeoJSONError) as exc:
        typer.echo(f"cannot import {path}: {exc}", err=True)
        raise typer.Exit(2) from exc

    try:
        result = _in_session(
            lambda session: service.import_shapes(session, shapes, replace=replace, parent_level=parent_level)
        )
    except service.JurisdictionError as exc:
        typer.echo(f"cannot import {path}: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(
        f"jurisdictions: {result.created} created, {result.updated} updated ({level})"
        + (f", {len(result.parents_created)} parents created ({parent_level})" if result.parents_created else "")
        + (f", {len(result.removed)} removed: {', '.join(result.removed)}" if result.removed else "")
    )
    _warn_orphaned_rules(result.orphaned_rules)


def _warn_orphaned_rules(rules: list[str]) -> None:
    if rules:
        typer.echo(
            f"warning: {len(rules)} routing rule(s) of the current catalogue name a jurisdiction that does not exist:",
            err=True,
        )
        for rule in rules:
            typer.echo(f"  {rule}", err=True)


@jurisdictions_app.command("demo")
def jurisdictions_demo() -> None:
    """Import the demo city outline and wards, only into a database without any jurisdiction (`make run`)."""
    from service.jurisdictions import service

    result = _in_session(service.import_demo)
    if result is None:
        typer.echo("jurisdictions: the database has its own; the demo wards are not imported")
    else:
        typer.echo(f"jurisdictions: the demo city outline and {result.created} demo wards imported")
        _warn_orphaned_rules(result.orphaned_rules)


@jurisdictions_app.command("list")
def jurisdictions_list() -> None:
    """Every jurisdiction: code, level, parent, whether it has a boundary, how many lie under it, name."""
    from service.jurisdictions import service

    for item in _in_session(service.list_):
        boundary = "boundary" if item.has_boundary else "no boundary"
        typer.echo(
            f"{item.code}\t{item.level}\t{item.parent_code or '-'}\t{boundary}\t{item.children} under\t{item.name}"
        )


@jurisdictions_app.command("delete")
def jurisdictions_delete(code: str) -> None:
    """Remove one jurisdiction (children first); reports keep the code they recorded."""
    from service.jurisdictions import service

    try:
        orphaned = _in_session(lambda session: service.delete_(session, code))
    except service.JurisdictionError as exc:
        typer.echo(f"cannot delete: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"deleted {code}")
    _warn_orphaned_rules(orphaned)


@app.command()
def classify(
    threshold: Annotated[
        float | None, typer.Option(help="Triage below this confidence (default: CLASSIFIER_THRESHOLD)")
    ] = None,
) -> None:
    """Classify JSON Lines {"text": ...} from stdin; one {"service_code", "confidence", "triage"} per line."""
    from service.classify.model import Classifier

    settings = get_settings()
    threshold = settings.classifier_threshold if threshold is None else threshold
    classifier = Classifier.load_or_train(settings.model_cache_dir)
    for number, line in enumerate(sys.stdin, start=1):
        if not line.strip():
            continue
        try:
            text = json.loads(line)["text"]
            if not isinstance(text, str):
                raise TypeError("text must be a string")
        except (ValueError, KeyError, TypeError) as exc:
            typer.echo(f'line {number}: expected {{"text": "..."}} ({exc})', err=True)
            raise typer.Exit(2) from exc
        prediction = classifier.predict(text, threshold)
        out = {
            "service_code": prediction.service_code,
            "confidence": round(prediction.confidence, 4),
            "triage": prediction.triage,
        }
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()


@app.command()
def openapi(out: Path = ROOT / "openapi" / "openapi.json") -> None:
    """Write the OpenAPI spec (kept in the repo, checked by a test)."""
    from service.openapi_export import render

    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render())
    typer.echo(f"wrote {out}")


@app.command("demo-key")
def demo_key(path: Path = Path("var/demo-api-key.txt")) -> None:
    """Print the demo app key, creating it the first time (used by `make run`)."""
    from service.auth import api_keys

    async def ensure(session) -> str:
        if path.exists():
            key = path.read_text().strip()
            if await api_keys.authenticate(session, key):
                return key
        issued = await api_keys.create(session, name="demo app (make run)")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(issued.key + "\n")
        return issued.key

    typer.echo(_in_session(ensure))


@app.command()
def seed(
    tickets: Annotated[int, typer.Option(min=1, help="How many reports to add")] = 10_000,
    days: Annotated[int, typer.Option(min=1, max=3650, help="Spread them over the last N days")] = 365,
    random_seed: Annotated[int, typer.Option(help="The same seed gives the same history")] = 1022,
    batch_size: Annotated[int, typer.Option(min=100, help="Rows per insert batch (COPY on PostgreSQL)")] = 20_000,
) -> None:
    """Fill the database with realistic synthetic history (for demos, the IOC and benchmarks)."""
    import time

    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from service import seed as seeding

    settings = get_settings()
    started = time.perf_counter()
    columns = (
        TextColumn("seeding reports"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, transient=False) as progress:
        task = progress.add_task("seed", total=tickets)
        written = asyncio.run(
            seeding.seed(
                settings,
                tickets=tickets,
                days=days,
                random_seed=random_seed,
                batch_size=batch_size,
                on_progress=lambda count: progress.advance(task, count),
            )
        )
    elapsed = time.perf_counter() - started
    typer.echo(
        f"seeded {written} reports over {days} days in {elapsed:.1f} s ({written / max(elapsed, 1e-9):,.0f} rows/s)"
    )


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":
    sys.exit(app())
