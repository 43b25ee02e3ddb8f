"""Render the Helm charts offline and take the pgfs containers apart.

Used by the chart tests here and by the end-to-end test that runs the
sidecar's real command line against a real PostgreSQL and a real FUSE mount
(tests/ is on sys.path, tests/deploy is a package):

    from deploy.chart import EXAMPLES, SidecarCommand, localize, render_chart, run_probe, ...

    manifests = render_chart([EXAMPLES / "existing-postgresql.yaml"], {"pgfs.logJson": False})
    argv, env, probes = sidecar_command(manifests)
    argv, env, probes = localize(
        SidecarCommand(argv, env, probes),
        paths={"/mnt/pgfs": str(mountpoint), "/config": str(config_dir)},
        secrets={"jellyfin-db": {"password": "..."}},
    )
    subprocess.Popen(argv, env={**os.environ, **env})
    assert run_probe(probes["startupProbe"], env=env)

official_chart_pod() builds, without that chart, the pod the official
Jellyfin chart would run with examples/official-jellyfin-chart.yaml.

Rendering uses the Helm SDK (the `helm-python-sdk` package, Helm's Go engine
in a shared library): no helm binary, no cluster.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART_DIR = REPO / "charts" / "jellyfin-pgfs"
EXAMPLES = CHART_DIR / "examples"
OFFICIAL_EXAMPLE = EXAMPLES / "official-jellyfin-chart.yaml"
IMPORT_SCRIPT = REPO / "scripts" / "pgfs-import-existing.py"
SIDECAR_NAME = "pgfs"
IMPORT_NAME = "pgfs-import"
PROBE_KINDS = ("startupProbe", "readinessProbe", "livenessProbe")


class SidecarCommand(NamedTuple):
    """The pgfs sidecar as the container runtime would start it.

    argv: the full command line (image entrypoint `pgfs` + the container's
    args). env: literal values as str; values taken from elsewhere as their
    `valueFrom` mapping (e.g. {"secretKeyRef": {"name": ..., "key": ...}}).
    probes: startupProbe/readinessProbe/livenessProbe as rendered, with a
    named port replaced by its number.
    """

    argv: list[str]
    env: dict[str, str | dict[str, Any]]
    probes: dict[str, dict[str, Any]]


def merge_values(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's mergeMaps: maps merge recursively, anything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_values(dict(out[key]), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _set_path(values: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """{"a.b": 1} style override -> {"a": {"b": 1}} merged into values."""
    nested: Any = value
    for part in reversed(dotted.split(".")):
        nested = {part: nested}
    return merge_values(values, nested)


def user_values(
    values_files: Iterable[str | os.PathLike[str]] = (),
    set_values: Mapping[str, Any] | Sequence[str] | None = None,
) -> dict[str, Any]:
    """The values `helm -f FILE... --set ...` would pass, before chart defaults.

    set_values: a mapping of dotted paths to values ({"pgfs.logJson": False},
    values kept as typed), or `--set` strings parsed by Helm's own parser
    (["pgfs.mount.uid=1000"]).
    """
    import helm_python as helm

    values: dict[str, Any] = {}
    for path in values_files:
        loaded = yaml.safe_load(Path(path).read_text()) or {}
        values = merge_values(values, loaded)
    if isinstance(set_values, Mapping):
        for dotted, value in set_values.items():
            values = _set_path(values, dotted, value)
    elif set_values:
        for expression in set_values:
            values = merge_values(values, helm.parse_set_string(expression))
    return values


def render_chart(
    values_files: Iterable[str | os.PathLike[str]] = (),
    set_values: Mapping[str, Any] | Sequence[str] | None = None,
    *,
    chart: str | os.PathLike[str] = CHART_DIR,
    release: str = "jellyfin",
    namespace: str = "media",
) -> list[dict[str, Any]]:
    """Render a chart offline; every manifest as a dict, in template order.

    The values are validated against the chart's values.schema.json first
    (as `helm install` does); a HelmValuesError says what is wrong.
    """
    import helm_python as helm

    values = user_values(values_files, set_values)
    with helm.Chart.load(os.fspath(chart)) as loaded:
        loaded.validate_schema(loaded.merge_values(values))
        rendered = loaded.render(values, name=release, namespace=namespace, is_install=True)
    manifests: list[dict[str, Any]] = []
    for name in sorted(rendered):
        if not name.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        for document in yaml.safe_load_all(rendered[name]):
            if document:
                manifests.append(document)
    return manifests


def find(manifests: Iterable[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [m for m in manifests if m.get("kind") == kind]


def pod_spec(manifests: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The spec of the one pod: a Deployment's pod template, or a bare Pod."""
    manifests = list(manifests)
    deployments = find(manifests, "Deployment")
    if deployments:
        (deployment,) = deployments
        return deployment["spec"]["template"]["spec"]
    (pod,) = find(manifests, "Pod")
    return pod["spec"]


# The values of the official chart (jellyfin/jellyfin-helm, chart `jellyfin`
# 3.x) that official_chart_pod() places into the pod, and the one it leaves
# to the Deployment around it.
OFFICIAL_CHART_POD_VALUES = ("extraInitContainers", "volumes", "volumeMounts")
OFFICIAL_CHART_DEPLOYMENT_VALUES = ("deploymentStrategy",)


def official_chart_pod(
    values_file: str | os.PathLike[str] = OFFICIAL_EXAMPLE, *, name: str = "jellyfin"
) -> dict[str, Any]:
    """The Pod the official Jellyfin chart would run with these values.

    No copy of that chart is kept here: this builds the pod from the values
    file the way the chart's Deployment template places them (chart
    `jellyfin` 3.x, github.com/jellyfin/jellyfin-helm):

    - `extraInitContainers`: the pod's `initContainers`, as given and in
      order (the deprecated `initContainers` value would come first; the
      examples do not use it);
    - `volumes`: appended to the pod's `volumes`, after the chart's own
      `config`, `media` and `cache` volumes (from `persistence.config`,
      `persistence.media`, `persistence.cache`; stood in for here by a
      claim, a claim and an emptyDir, the chart's defaults);
    - `volumeMounts`: appended to the `volumeMounts` of the chart's one
      container, `jellyfin` (the chart's name), after its own `/config`,
      `/media` (read-only) and `/cache` mounts;
    - `deploymentStrategy` is the Deployment's `spec.strategy`, not part of
      the pod: callers check it in the values.

    Anything else the chart adds to Jellyfin's container (image, probes,
    securityContext, all empty or defaults unless set) is left out or kept
    minimal; any other key in the values file raises ValueError, so an
    example that grows a value this function does not model fails loudly.
    """
    values = yaml.safe_load(Path(values_file).read_text()) or {}
    unknown = set(values) - {*OFFICIAL_CHART_POD_VALUES, *OFFICIAL_CHART_DEPLOYMENT_VALUES}
    if unknown:
        raise ValueError(f"official_chart_pod() does not model the values {sorted(unknown)}")
    jellyfin = {
        "name": "jellyfin",
        "image": "docker.io/jellyfin/jellyfin:latest",
        "ports": [{"name": "http", "containerPort": 8096, "protocol": "TCP"}],
        "volumeMounts": [
            {"name": "config", "mountPath": "/config"},
            {"name": "media", "mountPath": "/media", "readOnly": True},
            {"name": "cache", "mountPath": "/cache"},
            *copy.deepcopy(values.get("volumeMounts") or []),
        ],
    }
    spec: dict[str, Any] = {
        "containers": [jellyfin],
        "volumes": [
            {"name": "config", "persistentVolumeClaim": {"claimName": f"{name}-config"}},
            {"name": "media", "persistentVolumeClaim": {"claimName": f"{name}-media"}},
            {"name": "cache", "emptyDir": {}},
            *copy.deepcopy(values.get("volumes") or []),
        ],
    }
    if values.get("extraInitContainers"):
        spec["initContainers"] = copy.deepcopy(values["extraInitContainers"])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "jellyfin"}},
        "spec": spec,
    }


def container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    for c in [*spec.get("initContainers", []), *spec.get("containers", [])]:
        if c["name"] == name:
            return c
    raise KeyError(f"no container {name!r} in the pod")


def _resolve_port(port: Any, ports: list[dict[str, Any]]) -> Any:
    if isinstance(port, str) and not port.isdigit():
        for p in ports:
            if p.get("name") == port:
                return p["containerPort"]
        raise KeyError(f"probe names port {port!r}, which the container does not declare")
    return int(port)


def _probe(probe: dict[str, Any], ports: list[dict[str, Any]]) -> dict[str, Any]:
    probe = copy.deepcopy(probe)
    for action in ("httpGet", "tcpSocket", "grpc"):
        if action in probe:
            probe[action]["port"] = _resolve_port(probe[action]["port"], ports)
    return probe


def container_command(c: dict[str, Any], entrypoint: Sequence[str] = ("pgfs",)) -> SidecarCommand:
    """argv/env/probes of one container of the pgfs image."""
    argv = list(c["command"]) if "command" in c else [*entrypoint, *c.get("args", [])]
    if "command" in c:
        argv += c.get("args", [])
    env: dict[str, str | dict[str, Any]] = {}
    for item in c.get("env", []):
        env[item["name"]] = item["valueFrom"] if "valueFrom" in item else str(item.get("value", ""))
    ports = c.get("ports", [])
    probes = {kind: _probe(c[kind], ports) for kind in PROBE_KINDS if kind in c}
    return SidecarCommand([str(a) for a in argv], env, probes)


def sidecar_command(manifests: Iterable[dict[str, Any]]) -> SidecarCommand:
    """The pgfs sidecar's command line, environment and probes.

    The image's entrypoint is `pgfs` (behind tini, which only forwards
    signals), and the chart sets only `args`, so argv is `pgfs` + args.
    """
    c = container(pod_spec(manifests), SIDECAR_NAME)
    return container_command(c)


def import_command(manifests: Iterable[dict[str, Any]]) -> SidecarCommand:
    """The one-shot import step's command line and environment."""
    return container_command(container(pod_spec(manifests), IMPORT_NAME))


def _swap_prefix(text: str, paths: Mapping[str, str]) -> str:
    # Longest prefix first, whole path components only.
    for old in sorted(paths, key=len, reverse=True):
        new = paths[old]
        if text == old or text.startswith(old.rstrip("/") + "/"):
            return new + text[len(old) :]
        for sep in ("=", ":"):
            key, found, rest = text.partition(sep)
            if found and (rest == old or rest.startswith(old.rstrip("/") + "/")):
                return key + sep + new + rest[len(old) :]
    return text


def localize(
    command: SidecarCommand,
    *,
    paths: Mapping[str, str] | None = None,
    secrets: Mapping[str, Mapping[str, str]] | None = None,
    executables: Mapping[str, str] | None = None,
) -> SidecarCommand:
    """Make a container's command runnable on this machine.

    paths: container path prefix -> local path (in argv, env values, exec
    probes). secrets: Secret name -> {key: value}, for secretKeyRef entries
    (an entry naming a missing Secret raises KeyError). executables: argv[0]
    (or an exec probe's) -> local program, e.g. {"pgfs": ".venv/bin/pgfs"};
    by default `pgfs` resolves next to the running interpreter, and
    `pgfs-import-existing` to scripts/pgfs-import-existing.py.
    """
    paths = paths or {}
    secrets = secrets or {}
    programs = {
        "pgfs": shutil.which("pgfs") or str(Path(sys.executable).with_name("pgfs")),
        "pgfs-import-existing": str(IMPORT_SCRIPT),
        **(executables or {}),
    }

    def program(argv: list[str]) -> list[str]:
        argv = [_swap_prefix(a, paths) for a in argv]
        if argv and argv[0] in programs:
            target = programs[argv[0]]
            if target.endswith(".py"):
                return [sys.executable, target, *argv[1:]]
            return [target, *argv[1:]]
        return argv

    env: dict[str, str | dict[str, Any]] = {}
    for name, value in command.env.items():
        if isinstance(value, dict):
            ref = value.get("secretKeyRef")
            if ref is None:
                raise KeyError(f"{name}: only secretKeyRef can be localized, got {value}")
            env[name] = secrets[ref["name"]][ref["key"]]
        else:
            env[name] = _swap_prefix(value, paths)
    probes = copy.deepcopy(command.probes)
    for probe in probes.values():
        if "exec" in probe:
            probe["exec"]["command"] = program(list(probe["exec"]["command"]))
    return SidecarCommand(program(command.argv), env, probes)


def run_probe(
    probe: Mapping[str, Any],
    *,
    env: Mapping[str, Any] | None = None,
    host: str = "127.0.0.1",
    timeout: float | None = None,
) -> bool:
    """Run a probe once, as the kubelet would: True on success.

    exec: the command exits 0 (env added to this process's environment).
    httpGet: a status from 200 to 399. tcpSocket: the port accepts.
    """
    seconds = timeout if timeout is not None else float(probe.get("timeoutSeconds", 1))
    if "exec" in probe:
        full_env = {**os.environ, **{k: str(v) for k, v in (env or {}).items()}}
        try:
            done = subprocess.run(
                probe["exec"]["command"],
                env=full_env,
                capture_output=True,
                timeout=seconds,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0
    if "httpGet" in probe:
        get = probe["httpGet"]
        url = f"{get.get('scheme', 'HTTP').lower()}://{host}:{get['port']}{get.get('path', '/')}"
        try:
            with urllib.request.urlopen(url, timeout=seconds) as response:
                return 200 <= response.status < 400
        except (urllib.error.URLError, OSError):
            return False
    if "tcpSocket" in probe:
        import socket

        try:
            with socket.create_connection((host, probe["tcpSocket"]["port"]), timeout=seconds):
                return True
        except OSError:
            return False
    raise ValueError(f"unsupported probe: {probe}")
