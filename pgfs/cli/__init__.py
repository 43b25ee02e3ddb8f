"""The `pgfs` command line (click), on top of every layer.

- `group`: the click group `cli`, one-line errors without passwords, logging;
- `store_options`: `--dsn`, `--dsn-file`, `--meta-schema`, `--data-schema`;
- `store_commands`: import, export, verify, inspect;
- `mount_options`: `pgfs mount`'s options, derived from `MountOptions`;
- `mount_commands`: mount, unmount, status;
- `app`: the composition root that builds the cluster, stores and databases
  a mount serves (imported only when a mount starts).

The commands import the layers below; nothing below imports the CLI.
"""

from __future__ import annotations

from pgfs.cli import mount_commands, store_commands
from pgfs.cli.group import cli

__all__ = ["cli", "main", "mount_commands", "store_commands"]


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="pgfs")
