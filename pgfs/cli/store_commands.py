"""`pgfs import`, `export`, `verify` and `inspect`: the commands that work on a store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from pgfs.cli.group import cli, fail
from pgfs.cli.store_options import StoreOptions, open_store, store_options


def _mb(n_bytes: float) -> str:
    return f"{n_bytes / 1e6:.1f} MB"


def _rate(amount: float, seconds: float) -> float:
    return amount / seconds if seconds > 0 else float("inf")


@cli.command("import")
@click.argument("sqlite_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--replace", is_flag=True, help="Overwrite a database the store already holds.")
@click.option(
    "--force",
    is_flag=True,
    help="Import a file that fails PRAGMA integrity_check: rows that do not decode are left "
    "out and reported.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@store_options
def import_command(
    sqlite_file: Path, replace: bool, force: bool, no_progress: bool, store: StoreOptions
):
    """Import SQLITE_FILE into PostgreSQL (one transaction)."""
    from pgfs.emulator.importer import import_file

    with open_store(store) as opened:
        report = import_file(
            opened, sqlite_file, replace=replace, progress=not no_progress, force=force
        )
    for problem in report.problems[:10]:
        click.echo(f"integrity_check: {problem}", err=True)
    for table, rowids in sorted(report.dropped_rows.items()):
        shown = ", ".join(str(r) for r in rowids[:10]) + (" ..." if len(rowids) > 10 else "")
        click.echo(f"dropped {len(rowids)} rows of {table} (rowids {shown})", err=True)
    click.echo(
        f"imported {sqlite_file}: {report.pages} pages ({_mb(report.bytes)}), "
        f"{report.total_rows} rows in {len(report.rows)} tables, {report.seconds:.1f} s "
        f"({_rate(report.bytes, report.seconds) / 1e6:.1f} MB/s, "
        f"{_rate(report.total_rows, report.seconds):.0f} rows/s)"
    )


@cli.command("export")
@click.argument("out_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite OUT_FILE if it exists.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@store_options
def export_command(out_file: Path, force: bool, no_progress: bool, store: StoreOptions):
    """Write the stored database to OUT_FILE as a SQLite file."""
    from pgfs.emulator.exporter import export_file

    with open_store(store) as opened:
        report = export_file(opened, out_file, progress=not no_progress, force=force)
    click.echo(
        f"exported {report.pages} pages ({_mb(report.bytes)}) to {out_file} in "
        f"{report.seconds:.1f} s ({_rate(report.bytes, report.seconds) / 1e6:.1f} MB/s)"
    )


@cli.command("verify")
@store_options
def verify_command(store: StoreOptions):
    """Render the whole database, run PRAGMA integrity_check, compare every table's rows."""
    from pgfs.emulator.exporter import verify

    with open_store(store) as opened:
        report = verify(opened)
    rows = sum(report.tables.values())
    if not report.ok:
        for line in report.integrity[:20]:
            if line != "ok":
                click.echo(f"integrity_check: {line}", err=True)
        for line in report.damage:
            click.echo(f"damaged: {line}", err=True)
        for line in report.mismatches:
            click.echo(f"mismatch: {line}", err=True)
        fail(
            f"verify failed: integrity_check {'ok' if report.integrity == ['ok'] else 'failed'}, "
            f"{len(report.mismatches)} row mismatches"
        )
    click.echo(
        f"ok: {report.pages} pages pass integrity_check; {rows} rows in "
        f"{len(report.tables)} tables match PostgreSQL ({report.seconds:.1f} s)"
    )


@cli.command("inspect")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@store_options
def inspect_command(as_json: bool, store: StoreOptions):
    """Show the header, tables, pages by kind, inexact rows and last commits."""
    with open_store(store) as opened:
        report = opened.inspect()
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str, sort_keys=True))
        return
    click.echo(format_inspect(report))


def format_inspect(report: dict[str, Any]) -> str:
    """The human-readable form of `Store.inspect()`."""
    lines = [
        f"server: {report.get('server')}  schemas: meta={report.get('meta_schema')} "
        f"data={report.get('data_schema')}"
    ]
    if not report.get("initialised") or not report.get("page_count"):
        lines.append("the store holds no database")
        return "\n".join(lines)
    header = report.get("header") or {}
    page_size, page_count = report.get("page_size") or 0, report.get("page_count") or 0
    lines.append(
        f"database: {page_count} pages of {page_size} bytes ({_mb(page_size * page_count)}), "
        f"encoding {header.get('text_encoding')}, schema format {header.get('schema_format')}, "
        f"{'WAL' if header.get('write_version') == 2 else 'rollback journal'}, "
        f"user_version {header.get('user_version')}, "
        f"freelist {header.get('freelist_count')} pages"
    )
    lines.append("tables:")
    for table in report.get("tables", []):
        pages = table.get("pages", {})
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(pages.items()))
        extra = " (WITHOUT ROWID mirror)" if table.get("without_rowid") else ""
        lines.append(
            f"  {table['name']}{extra}: {table['rows']} rows, "
            f"{table.get('inexact_rows', 0)} rows whose typed columns cannot hold every value, "
            f"{table.get('short_records', 0)} short records; pages: {kinds or 'none'}"
        )
    others = report.get("other_objects") or {}
    if others:
        lines.append("other objects (raw pages):")
        for owner, kinds in others.items():
            listed = ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
            lines.append(f"  {owner or '(none)'}: {listed}")
    by_kind = report.get("pages_by_kind") or {}
    lines.append("pages by kind: " + ", ".join(f"{k} {v}" for k, v in by_kind.items()))
    lines.append(
        "rows whose typed columns cannot hold every value (their records keep it): "
        f"{report.get('inexact_rows', 0)}"
    )
    commits = report.get("last_commits") or []
    if commits:
        lines.append("last commits:")
        for commit in commits:
            lines.append(
                f"  #{commit['id']} {commit['committed_at']} {commit['source']}: "
                f"+{commit['inserted']} ~{commit['updated']} -{commit['deleted']} rows, "
                f"{commit['pages']} pages, {commit['ms']} ms"
            )
    return "\n".join(lines)
