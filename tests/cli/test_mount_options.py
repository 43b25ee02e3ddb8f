"""`MountOptions` declared once: click options, daemon argv and back (no FUSE, no server)."""

from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path

import click
import pytest

from pgfs.cli.mount_commands import daemon_command, mount_command
from pgfs.cli.mount_options import mount_argv, options_from_params
from pgfs.fuse.options import DEFAULT_NAME, ControlError, MountOptions


def parse(argv: list[str], dsn: str | None = None) -> MountOptions:
    """What `pgfs mount ARGV` would serve, parsed the way the command parses it."""
    assert argv[0] == "mount"
    ctx = mount_command.make_context("mount", argv[1:])
    return options_from_params(ctx.params, dsn=dsn)


EVERYTHING = MountOptions(
    mountpoint=Path("/srv/mnt"),
    names=("jellyfin.db", "library.db"),
    meta_schema="meta",
    data_schema="data",
    data_dir=Path("/srv/postgres"),
    backing_dir=Path("/srv/backing"),
    metrics_addr="127.0.0.1:9187",
    cache_dir=Path("/srv/cache"),
    warm_cache=True,
    takeover=True,
    allow_other=True,
    read_only=True,
    uid=1000,
    gid=1001,
    mode=0o600,
    attr_timeout=2.5,
)


@pytest.mark.parametrize(
    "options",
    [EVERYTHING, MountOptions(mountpoint=Path("/srv/mnt"))],
    ids=["every option", "defaults"],
)
def test_options_survive_the_daemon_argv(options: MountOptions) -> None:
    assert parse(mount_argv(options)) == options.absolute()


def test_every_field_is_set_in_the_round_trip() -> None:
    """EVERYTHING leaves no field at its default, so the round trip covers each option."""
    defaults = MountOptions(mountpoint=Path("/"))
    unset = [
        f.name
        for f in fields(MountOptions)
        if f.name != "dsn" and getattr(EVERYTHING, f.name) == getattr(defaults, f.name)
    ]
    assert unset == []


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    options = MountOptions(mountpoint=Path("mnt"), data_dir=Path("pg"), cache_dir=Path("c"))
    parsed = parse(mount_argv(options))
    assert parsed.mountpoint == tmp_path / "mnt"
    assert parsed.data_dir == tmp_path / "pg"
    assert parsed.cache_dir == tmp_path / "c"
    assert parsed == options.absolute()


def test_the_dsn_goes_by_environment_never_argv() -> None:
    secret = "postgresql://u:s3cret@db/x"
    argv, environment = daemon_command(replace(EVERYTHING, dsn=secret), log_level="DEBUG")
    assert not any("s3cret" in part for part in argv)
    assert environment["PGFS_DSN"] == secret
    assert argv[3:5] == ["--log-level", "DEBUG"]
    assert parse(argv[3 + 2 :], dsn=secret) == replace(EVERYTHING, dsn=secret)


def test_command_line_defaults_are_the_dataclass_defaults() -> None:
    assert parse(["mount", "/srv/mnt"]) == MountOptions(mountpoint=Path("/srv/mnt"))
    assert parse(["mount", "/srv/mnt"]).names == (DEFAULT_NAME,)


def test_bad_names_are_refused() -> None:
    with pytest.raises(ControlError, match="collide"):
        parse(["mount", "/m", "--name", "a.db", "--name", "a.db-wal"])
    with pytest.raises(click.BadParameter):
        parse(["mount", "/m", "--mode", "999"])
