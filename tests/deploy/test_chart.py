"""The Helm chart charts/jellyfin-pgfs, rendered offline with Helm's own engine.

Every scenario (default values, an existing PostgreSQL, CloudNativePG) is
linted, rendered, validated against the Kubernetes schemas of the oldest
supported (1.29) and the newest known Kubernetes, and checked for what makes
pgfs work in a pod: the import step runs before the native sidecar, which is
up before Jellyfin; the mount propagates from the privileged sidecar to
Jellyfin; probes; credentials only from Secrets.

pgfs added to the official Jellyfin chart (examples/official-jellyfin-chart.yaml)
is checked the same way on the Pod that chart would run with those values,
built by chart.official_chart_pod() (no copy of that chart is kept here).
The CloudNativePG Cluster, a custom resource without a schema here, is
checked field by field.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart import (
    CHART_DIR,
    EXAMPLES,
    IMPORT_NAME,
    OFFICIAL_EXAMPLE,
    SIDECAR_NAME,
    container,
    container_command,
    find,
    import_command,
    localize,
    official_chart_pod,
    pod_spec,
    render_chart,
    run_probe,
    sidecar_command,
    user_values,
)

helm = pytest.importorskip(
    "helm_python", reason="helm-python-sdk (the Helm SDK from PyPI) is not installed"
)
kubernetes_validate = pytest.importorskip(
    "kubernetes_validate", reason="kubernetes-validate is not installed"
)

KUBE_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())

SCENARIOS: dict[str, list[Path]] = {
    "default": [],
    "existing-postgresql": [EXAMPLES / "existing-postgresql.yaml"],
    "cloudnativepg": [EXAMPLES / "cloudnativepg.yaml"],
}


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render_chart(SCENARIOS[request.param])


@pytest.fixture(scope="module")
def official() -> list[dict[str, Any]]:
    """The pod the official chart would run with the example's values."""
    return [official_chart_pod(OFFICIAL_EXAMPLE)]


def all_renderings(official: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out = {name: render_chart(files) for name, files in SCENARIOS.items()}
    out["official-chart"] = official
    return out


# --- helm lint; the official chart's values ----------------------------------


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_helm_lint_is_clean(name: str) -> None:
    report = helm.lint(CHART_DIR, user_values(SCENARIOS[name]), strict=True, kube_version="v1.29.0")
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert problems == [], problems


def test_official_chart_example_sets_only_the_values_modelled() -> None:
    """official_chart_pod() knows where each of the example's values goes."""
    values = yaml.safe_load(OFFICIAL_EXAMPLE.read_text())
    assert set(values) == {"deploymentStrategy", "extraInitContainers", "volumes", "volumeMounts"}
    for key in ("extraInitContainers", "volumes", "volumeMounts"):
        assert isinstance(values[key], list) and values[key], key
        assert all(isinstance(item, dict) and item.get("name") for item in values[key]), key


def test_official_chart_pod_refuses_values_it_does_not_model(tmp_path: Path) -> None:
    values = yaml.safe_load(OFFICIAL_EXAMPLE.read_text())
    values["extraContainers"] = [{"name": "other", "image": "busybox"}]
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    with pytest.raises(ValueError, match="extraContainers"):
        official_chart_pod(path)


# --- Kubernetes schemas ---------------------------------------------------------


# Kubernetes naming rules (apimachinery's validation): object names are DNS-1123
# subdomains, Service names DNS-1035 labels; label and annotation keys are
# qualified names, label values are empty or a name segment.
DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = re.compile(rf"{DNS1123_LABEL}(\.{DNS1123_LABEL})*")
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
NAME_SEGMENT = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


def is_subdomain(name: str) -> bool:
    return len(name) <= 253 and DNS1123_SUBDOMAIN.fullmatch(name) is not None


def is_dns1035_label(name: str) -> bool:
    return len(name) <= 63 and DNS1035_LABEL.fullmatch(name) is not None


def is_qualified_name(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and not is_subdomain(prefix):
        return False
    return len(name) <= 63 and NAME_SEGMENT.fullmatch(name) is not None


def check_object_meta(manifest: dict[str, Any]) -> None:
    """apiVersion/kind/metadata as the API server accepts them, for any kind.

    metadata is validated against the Kubernetes ObjectMeta schema (carried
    by a ConfigMap, whose schema is known for every version), then for the
    naming rules the schema leaves to the API server.
    """
    group, _, version = manifest["apiVersion"].rpartition("/")
    assert not group or is_subdomain(group), manifest["apiVersion"]
    assert re.fullmatch(r"v[1-9][0-9]*((alpha|beta)[1-9][0-9]*)?", version), manifest["apiVersion"]
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]*", manifest["kind"]), manifest["kind"]
    meta = manifest["metadata"]
    carrier = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta}
    for kube in KUBE_VERSIONS:
        kubernetes_validate.validate(carrier, kube, strict=True)
    assert is_subdomain(meta["name"]), meta["name"]
    assert "namespace" not in meta or is_subdomain(meta["namespace"])
    for key, value in meta.get("labels", {}).items():
        assert is_qualified_name(key), key
        assert isinstance(value, str), (key, value)
        assert value == "" or (len(value) <= 63 and NAME_SEGMENT.fullmatch(value)), (key, value)
    for key, value in meta.get("annotations", {}).items():
        assert is_qualified_name(key), key
        assert isinstance(value, str), (key, value)


# The Cluster spec fields this chart may set, spelt as in CloudNativePG's
# ClusterSpec (postgresql.cnpg.io/v1). The operator drops unknown fields
# silently, so a misspelt one would be lost without this list.
CNPG_SPEC_FIELDS = {
    "instances",
    "imageName",
    "enableSuperuserAccess",
    "bootstrap",
    "storage",
    "resources",
    "postgresql",
}
CNPG_STORAGE_FIELDS = {"size", "storageClass"}
QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?([KMGTPE]i|[kMGTPE]|m)?")


def check_cnpg_cluster(cluster: dict[str, Any], values: dict[str, Any]) -> None:
    """The Cluster the chart creates for CloudNativePG, field by field.

    values: the chart's merged values it was rendered with.
    """
    cnpg, pg = values["cloudnativepg"], values["postgresql"]
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["kind"] == "Cluster"
    check_object_meta(cluster)
    name = cluster["metadata"]["name"]
    # The operator names Services <cluster>-rw/-ro/-r and Secrets
    # <cluster>-app/-ca after the cluster; Service names are DNS-1035 labels.
    for service in (f"{name}-rw", f"{name}-ro", f"{name}-r"):
        assert is_dns1035_label(service), service
    spec = cluster["spec"]
    assert set(spec) <= CNPG_SPEC_FIELDS, set(spec) - CNPG_SPEC_FIELDS
    assert type(spec["instances"]) is int and spec["instances"] >= 1
    assert spec["instances"] == cnpg["instances"]
    assert spec["bootstrap"] == {"initdb": {"database": pg["database"], "owner": pg["user"]}}
    assert spec["enableSuperuserAccess"] is False
    storage = spec["storage"]
    assert set(storage) <= CNPG_STORAGE_FIELDS, set(storage) - CNPG_STORAGE_FIELDS
    assert storage["size"] == cnpg["storage"]["size"]
    assert isinstance(storage["size"], str) and QUANTITY.fullmatch(storage["size"])
    if cnpg["storage"].get("storageClass"):
        assert storage["storageClass"] == cnpg["storage"]["storageClass"]
    else:
        assert "storageClass" not in storage
    if cnpg.get("imageName"):
        assert spec["imageName"] == cnpg["imageName"]
    else:
        assert "imageName" not in spec
    if "postgresql" in spec:
        assert set(spec["postgresql"]) == {"parameters"}
        parameters = spec["postgresql"]["parameters"]
        assert parameters == {k: str(v) for k, v in cnpg["parameters"].items()}
        assert all(isinstance(v, str) for v in parameters.values())  # map[string]string
    if "resources" in spec:
        # A core ResourceRequirements: validated as a container's.
        assert spec["resources"] == cnpg["resources"]
        carrier = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "resources"},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": spec["resources"]}]},
        }
        for kube in KUBE_VERSIONS:
            kubernetes_validate.validate(carrier, kube, strict=True)


def merged_values(values_files: list[Path], set_values: dict[str, Any] | None = None) -> Any:
    with helm.Chart.load(CHART_DIR) as chart:
        return chart.merge_values(user_values(values_files, set_values))


def check_pod_references(spec: dict[str, Any]) -> None:
    """What the API server checks across a pod and a schema cannot: unique
    names, and every mount naming one of the pod's volumes."""
    containers = [*spec.get("initContainers", []), *spec["containers"]]
    names = [c["name"] for c in containers]
    assert len(names) == len(set(names)), names
    assert all(is_dns1035_label(n) for n in names), names
    volumes = [v["name"] for v in spec.get("volumes", [])]
    assert len(volumes) == len(set(volumes)), volumes
    for c in containers:
        mounts = c.get("volumeMounts", [])
        assert {m["name"] for m in mounts} <= set(volumes), (c["name"], mounts)
        paths = [m["mountPath"] for m in mounts]
        assert len(paths) == len(set(paths)), (c["name"], paths)
        ports = [p["name"] for p in c.get("ports", []) if "name" in p]
        assert len(ports) == len(set(ports)), (c["name"], ports)


def validate_manifest(manifest: dict[str, Any]) -> None:
    if manifest["apiVersion"] == "postgresql.cnpg.io/v1":
        # No schema for the custom resource here: test_cloudnativepg_cluster_fields
        # checks its fields; here, that it is a well-formed object.
        assert manifest["kind"] == "Cluster"
        check_object_meta(manifest)
        return
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(manifest, version, strict=True)
    check_object_meta(manifest)


def test_every_manifest_is_valid_kubernetes(official: list[dict[str, Any]]) -> None:
    for name, manifests in all_renderings(official).items():
        assert manifests, name
        for manifest in manifests:
            try:
                validate_manifest(manifest)
            except Exception as exc:  # name the scenario and object in the failure
                raise AssertionError(
                    f"{name}: {manifest['kind']}/{manifest['metadata']['name']}: {exc}"
                ) from exc
        check_pod_references(pod_spec(manifests))


def test_strict_validation_catches_a_misspelt_field(official: list[dict[str, Any]]) -> None:
    manifests = render_chart()
    broken = copy.deepcopy(find(manifests, "Deployment")[0])
    broken["spec"]["template"]["spec"]["initContainers"][1]["restartPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.29.0", strict=True)
    pod = copy.deepcopy(official[0])
    pod["spec"]["containers"][0]["volumeMounts"][-1]["mountPropogation"] = "HostToContainer"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_manifest(pod)
    values = merged_values(SCENARIOS["cloudnativepg"])
    cluster = find(render_chart(SCENARIOS["cloudnativepg"]), "Cluster")[0]
    check_cnpg_cluster(cluster, values)
    misspelt = copy.deepcopy(cluster)
    misspelt["spec"]["storage"]["storageClassName"] = "fast"
    with pytest.raises(AssertionError):
        check_cnpg_cluster(misspelt, values)
    bad_label = copy.deepcopy(cluster)
    bad_label["metadata"]["labels"]["app.kubernetes.io/version"] = "10.11.11 beta"
    with pytest.raises(AssertionError):
        validate_manifest(bad_label)
    bad_meta = copy.deepcopy(cluster)
    bad_meta["metadata"]["lables"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_manifest(bad_meta)


def test_pod_references_are_checked(official: list[dict[str, Any]]) -> None:
    spec = copy.deepcopy(pod_spec(official))
    spec["volumes"].append({"name": "config", "emptyDir": {}})  # the chart's own name
    with pytest.raises(AssertionError):
        check_pod_references(spec)
    spec = copy.deepcopy(pod_spec(official))
    spec["initContainers"][0]["volumeMounts"].append({"name": "nowhere", "mountPath": "/x"})
    with pytest.raises(AssertionError):
        check_pod_references(spec)


# --- the pod: ordering, propagation, privileges, probes -------------------------


def check_pgfs_pod(spec: dict[str, Any]) -> None:
    """What any pod running Jellyfin on pgfs must look like (both charts)."""
    init = spec["initContainers"]
    names = [c["name"] for c in init]
    # The import step, then the sidecar, then Jellyfin.
    assert names.index(IMPORT_NAME) < names.index(SIDECAR_NAME), names
    importer = container(spec, IMPORT_NAME)
    sidecar = container(spec, SIDECAR_NAME)
    assert "restartPolicy" not in importer  # one-shot: must finish first
    assert not any(k.endswith("Probe") for k in importer)  # not allowed on a plain init container
    assert sidecar["restartPolicy"] == "Always"  # native sidecar (Kubernetes 1.29+)
    assert spec["containers"][0]["name"] == "jellyfin"
    jellyfin = container(spec, "jellyfin")

    argv, env, probes = container_command(sidecar)
    assert argv[:1] == ["pgfs"]
    mount_index = argv.index("mount")
    mountpoint = argv[mount_index + 1]
    option = {a: argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith("--")}
    backing_dir = option["--backing-dir"]
    assert "--foreground" in argv and "--daemon" not in argv
    assert "--allow-other" in argv  # Jellyfin's process is not the mounting one

    # Propagation: the sidecar mounts into a shared emptyDir (Bidirectional),
    # Jellyfin sees that volume at its data folder (HostToContainer).
    volumes = {v["name"]: v for v in spec["volumes"]}
    (side_mount,) = [m for m in sidecar["volumeMounts"] if m["mountPath"] == mountpoint]
    assert side_mount["mountPropagation"] == "Bidirectional"
    assert "emptyDir" in volumes[side_mount["name"]]
    (jf_mount,) = [m for m in jellyfin["volumeMounts"] if m["name"] == side_mount["name"]]
    assert jf_mount["mountPropagation"] == "HostToContainer"
    assert jf_mount["mountPath"] == "/config/data" == backing_dir
    # The backing folder is on the config volume, the same one Jellyfin has at
    # /config, mounted before the data folder on top of it.
    jf_paths = [m["mountPath"] for m in jellyfin["volumeMounts"]]
    assert jf_paths.index("/config") < jf_paths.index("/config/data")
    config_volume = next(m["name"] for m in jellyfin["volumeMounts"] if m["mountPath"] == "/config")
    assert {"name": config_volume, "mountPath": "/config"}.items() <= next(
        m for m in sidecar["volumeMounts"] if m["name"] == config_volume
    ).items()
    assert not any(m.get("mountPropagation") for m in importer["volumeMounts"])

    # Privileges: only the sidecar (Bidirectional needs privileged).
    assert sidecar["securityContext"]["privileged"] is True
    assert not importer.get("securityContext", {}).get("privileged", False)
    assert importer["securityContext"]["allowPrivilegeEscalation"] is False
    assert not jellyfin.get("securityContext", {}).get("privileged", False)

    # Probes: startup gates Jellyfin; readiness and liveness keep watching.
    assert set(probes) == {"startupProbe", "readinessProbe", "livenessProbe"}
    metrics_port = int(option["--metrics-addr"].rsplit(":", 1)[1])
    for kind in ("startupProbe", "readinessProbe"):
        assert probes[kind]["httpGet"] == {"path": "/healthz", "port": metrics_port}
    assert probes["livenessProbe"]["exec"]["command"] == ["pgfs", "status", mountpoint]

    # Both pgfs containers reach the same store.
    imp_argv, imp_env, _ = container_command(importer)
    imp_option = {a: imp_argv[i + 1] for i, a in enumerate(imp_argv[:-1]) if a.startswith("--")}
    assert imp_option["--data-dir"] == backing_dir
    assert imp_option["--name"] == option.get("--name", "jellyfin.db")
    assert imp_option.get("--meta-schema", "pgfs") == option.get("--meta-schema", "pgfs")
    assert imp_option.get("--data-schema", "jellyfin") == option.get("--data-schema", "jellyfin")
    strip = {"PGAPPNAME", "PGFS_MOUNTPOINT", "SQLITE_TMPDIR"}
    assert {k: v for k, v in imp_env.items() if k not in strip} == {
        k: v for k, v in env.items() if k not in strip
    }
    check_credentials(env)


def check_credentials(env: dict[str, Any]) -> None:
    """A DSN in a file or without a password; a password only by secretKeyRef."""
    assert ("PGFS_DSN" in env) != ("PGFS_DSN_FILE" in env)
    if "PGFS_DSN" in env:
        dsn = env["PGFS_DSN"]
        assert isinstance(dsn, str) and "password" not in dsn.lower()
        assert env["PGPASSWORD"]["secretKeyRef"]["name"]
    for name, value in env.items():
        if "PASSWORD" in name or "PASS" in name:
            assert isinstance(value, dict) and "secretKeyRef" in value, name
    assert "PGSSLMODE" in env


def test_pod_layout(scenario: tuple[str, list[dict[str, Any]]]) -> None:
    _, manifests = scenario
    spec = pod_spec(manifests)
    check_pgfs_pod(spec)
    # Jellyfin's own probes (the official chart's are its own business).
    assert {"startupProbe", "readinessProbe", "livenessProbe"} <= set(container(spec, "jellyfin"))


def test_official_chart_example_pod_layout(official: list[dict[str, Any]]) -> None:
    check_pgfs_pod(pod_spec(official))
    # The chart's deploymentStrategy value is the Deployment's spec.strategy.
    values = yaml.safe_load(OFFICIAL_EXAMPLE.read_text())
    assert values["deploymentStrategy"] == {"type": "Recreate"}


def test_recreate_strategy_and_one_replica(scenario: tuple[str, list[dict[str, Any]]]) -> None:
    _, manifests = scenario
    (deployment,) = find(manifests, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["replicas"] == 1


def test_official_chart_example_runs_the_same_pgfs(official: list[dict[str, Any]]) -> None:
    """The documented official-chart values start pgfs as this chart does."""

    def essentials(argv: list[str]) -> dict[str, str | None]:
        keep = ("mount", "--backing-dir", "--metrics-addr", "--name")
        out: dict[str, str | None] = {a: argv[i + 1] for i, a in enumerate(argv) if a in keep}
        out.update({a: None for a in argv if a in ("--foreground", "--allow-other", "--log-json")})
        return out

    ours = sidecar_command(render_chart(SCENARIOS["existing-postgresql"]))
    theirs = sidecar_command(official)
    assert essentials(theirs.argv) == essentials(ours.argv)
    assert theirs.probes == ours.probes
    assert import_command(official).argv[0] == import_command(render_chart()).argv[0]


# --- credentials --------------------------------------------------------------------


def test_default_reads_a_whole_dsn_from_a_secret_file() -> None:
    manifests = render_chart()
    spec = pod_spec(manifests)
    _, env, _ = sidecar_command(manifests)
    assert env["PGFS_DSN_FILE"] == "/etc/pgfs/dsn/dsn"
    volumes = {v["name"]: v for v in spec["volumes"]}
    secret = volumes["pgfs-dsn"]["secret"]
    assert secret["secretName"] == "jellyfin-jellyfin-pgfs-postgresql"
    assert secret["items"] == [{"key": "dsn", "path": "dsn"}]
    assert secret["defaultMode"] == 0o400
    for name in (IMPORT_NAME, SIDECAR_NAME):
        mounts = {m["name"]: m for m in container(spec, name)["volumeMounts"]}
        assert mounts["pgfs-dsn"] == {
            "name": "pgfs-dsn",
            "mountPath": "/etc/pgfs/dsn",
            "readOnly": True,
        }
    assert "pgfs-dsn" not in {m["name"] for m in container(spec, "jellyfin")["volumeMounts"]}


def test_existing_postgresql_password_from_secret_key_ref() -> None:
    manifests = render_chart(SCENARIOS["existing-postgresql"])
    _, env, _ = sidecar_command(manifests)
    assert env["PGFS_DSN"] == (
        "host='postgres.databases.svc.cluster.local' port='5432' dbname='jellyfin' user='jellyfin'"
    )
    assert env["PGPASSWORD"] == {"secretKeyRef": {"name": "jellyfin-postgresql", "key": "password"}}
    assert env["PGSSLMODE"] == "verify-full"
    assert env["PGSSLROOTCERT"] == "/etc/pgfs/ca/ca.crt"
    volumes = {v["name"]: v for v in pod_spec(manifests)["volumes"]}
    assert volumes["pgfs-ca"]["secret"]["secretName"] == "postgres-ca"


CNPG_VARIANTS: dict[str, dict[str, Any]] = {
    "example": {},
    "storage class and image": {
        "cloudnativepg.storage.storageClass": "fast-ssd",
        "cloudnativepg.imageName": "ghcr.io/cloudnative-pg/postgresql:16.4",
        "cloudnativepg.storage.size": "20Gi",
    },
    "own database and role": {
        "postgresql.database": "media",
        "postgresql.user": "jf",
        "cloudnativepg.instances": 3,
        "cloudnativepg.clusterName": "jf-db",
    },
}


@pytest.mark.parametrize("variant", sorted(CNPG_VARIANTS))
def test_cloudnativepg_cluster_fields(variant: str) -> None:
    files, overrides = SCENARIOS["cloudnativepg"], CNPG_VARIANTS[variant]
    manifests = render_chart(files, overrides)
    values = merged_values(files, overrides)
    (cluster,) = find(manifests, "Cluster")
    check_cnpg_cluster(cluster, values)
    name = cluster["metadata"]["name"]
    pg = values["postgresql"]
    for c in (SIDECAR_NAME, IMPORT_NAME):
        _, env, _ = container_command(container(pod_spec(manifests), c))
        assert env["PGFS_DSN"] == (
            f"host='{name}-rw' port='5432' dbname='{pg['database']}' user='{pg['user']}'"
        )
        assert env["PGPASSWORD"] == {"secretKeyRef": {"name": f"{name}-app", "key": "password"}}
    if values["cloudnativepg"]["clusterName"]:
        assert name == values["cloudnativepg"]["clusterName"]


def test_cloudnativepg_cluster_and_its_generated_secret() -> None:
    manifests = render_chart(SCENARIOS["cloudnativepg"])
    (cluster,) = find(manifests, "Cluster")
    name = cluster["metadata"]["name"]
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["kind"] == "Cluster"
    assert cluster["spec"]["bootstrap"]["initdb"] == {"database": "jellyfin", "owner": "jellyfin"}
    assert cluster["spec"]["instances"] == 2
    assert cluster["spec"]["storage"] == {"size": "10Gi"}
    # Uninstalling the release keeps the database.
    assert cluster["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    _, env, _ = sidecar_command(manifests)
    assert env["PGFS_DSN"] == f"host='{name}-rw' port='5432' dbname='jellyfin' user='jellyfin'"
    assert env["PGPASSWORD"] == {"secretKeyRef": {"name": f"{name}-app", "key": "password"}}
    assert env["PGSSLMODE"] == "verify-full"
    volumes = {v["name"]: v for v in pod_spec(manifests)["volumes"]}
    assert volumes["pgfs-ca"]["secret"]["secretName"] == f"{name}-ca"
    assert volumes["pgfs-ca"]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    assert len(name) <= 50


def test_no_cloudnativepg_cluster_unless_asked() -> None:
    assert find(render_chart(), "Cluster") == []
    assert find(render_chart(SCENARIOS["existing-postgresql"]), "Cluster") == []


@pytest.mark.parametrize("sslmode", ["disable", "require", "verify-ca"])
def test_sslmode_is_settable(sslmode: str) -> None:
    manifests = render_chart(SCENARIOS["existing-postgresql"], {"postgresql.sslmode": sslmode})
    spec = pod_spec(manifests)
    for name in (IMPORT_NAME, SIDECAR_NAME):
        env = {e["name"]: e.get("value") for e in container(spec, name)["env"]}
        assert env["PGSSLMODE"] == sslmode


def test_dsn_values_are_quoted_for_libpq() -> None:
    manifests = render_chart(
        [],
        {"postgresql.host": "db", "postgresql.existingSecret": "s", "postgresql.user": "o'b\\x"},
    )
    _, env, _ = sidecar_command(manifests)
    assert env["PGFS_DSN"] == "host='db' port='5432' dbname='jellyfin' user='o\\'b\\\\x'"


SECRETISH = re.compile(r"(?i)(password\s*=|://[^/\s:@]+:[^/\s@]+@)")


def test_no_password_in_any_rendered_manifest(official: list[dict[str, Any]]) -> None:
    for name, manifests in all_renderings(official).items():
        assert find(manifests, "Secret") == [], name  # the chart never holds credentials
        text = json.dumps(manifests)
        assert not SECRETISH.search(text), (name, SECRETISH.search(text))
        spec = pod_spec(manifests)
        for c in [*spec["initContainers"], *spec["containers"]]:
            for item in c.get("env", []):
                if "value" in item:
                    assert "password" not in item["value"].lower(), (name, c["name"], item)
            assert not any("password" in a.lower() for a in c.get("args", [])), (name, c["name"])


# --- values.schema.json ---------------------------------------------------------------

# case -> (values, the path the error must name)
BAD_VALUES: dict[str, tuple[dict[str, Any], str]] = {
    "a password in values": ({"postgresql.password": "hunter2"}, "'password' not allowed"),
    "a DSN in values": ({"postgresql.dsn": "postgresql://u:p@h/db"}, "'dsn' not allowed"),
    "sidecar not privileged": (
        {"pgfs.securityContext.privileged": False},
        "/pgfs/securityContext/privileged",
    ),
    "two replicas": ({"replicaCount": 2}, "/replicaCount"),
    "unknown sslmode": ({"postgresql.sslmode": "sometimes"}, "/postgresql/sslmode"),
    "host without a Secret": ({"postgresql.host": "db.example"}, "/postgresql/existingSecret"),
    "CloudNativePG and a host": (
        {
            "cloudnativepg.enabled": True,
            "postgresql.host": "db.example",
            "postgresql.existingSecret": "s",
        },
        "/postgresql/host",
    ),
    "data folder outside /config": ({"pgfs.dataPath": "/data"}, "/pgfs/dataPath"),
    "bad mode": ({"pgfs.mount.mode": "999"}, "/pgfs/mount/mode"),
    "negative uid": ({"pgfs.mount.uid": -1}, "/pgfs/mount/uid"),
    "unknown log level": ({"pgfs.logLevel": "LOUD"}, "/pgfs/logLevel"),
    "unknown top-level key": ({"jelyfin": {}}, "'jelyfin' not allowed"),
    "bad secret name": ({"postgresql.existingSecret": "Not_A_Name"}, "/postgresql/existingSecret"),
    "media without a claim": ({"persistence.media.enabled": True}, "/persistence/media"),
    "port out of range": ({"pgfs.metrics.port": 70000}, "/pgfs/metrics/port"),
}


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_schema_rejects_bad_values(case: str) -> None:
    values, where = BAD_VALUES[case]
    with pytest.raises(helm.HelmValuesError) as caught:
        render_chart([], values)
    assert where in str(caught.value)


def test_schema_accepts_every_example() -> None:
    with helm.Chart.load(CHART_DIR) as chart:
        for files in SCENARIOS.values():
            chart.validate_schema(chart.merge_values(user_values(files)))


# --- options -------------------------------------------------------------------------


def test_mount_options_reach_the_command_line() -> None:
    manifests = render_chart(
        [],
        [
            "pgfs.mount.uid=1000",
            "pgfs.mount.gid=1001",
            "pgfs.mount.readOnly=true",
            "pgfs.mount.warmCache=false",
            "pgfs.logJson=false",
            "pgfs.metrics.bindAddress=::",
            "importExisting.replace=true",
        ],
    )
    argv = sidecar_command(manifests).argv
    assert argv[argv.index("--uid") + 1] == "1000"
    assert argv[argv.index("--gid") + 1] == "1001"
    assert "--read-only" in argv and "--log-json" not in argv
    assert "--warm-cache" not in argv and "--warm-cache" in sidecar_command(render_chart([])).argv
    assert argv[argv.index("--metrics-addr") + 1] == "[::]:9180"
    imp = import_command(manifests).argv
    assert imp[imp.index("--owner") + 1] == "1000:1001"
    assert "--replace" in imp


def test_import_disabled_still_prepares_the_backing_folder() -> None:
    imp = import_command(render_chart([], {"importExisting.enabled": False})).argv
    assert "--create-only" in imp


def test_probes_follow_the_mount_path() -> None:
    manifests = render_chart([], {"pgfs.mountPath": "/var/lib/pgfs/mnt"})
    argv, _, probes = sidecar_command(manifests)
    assert argv[argv.index("mount") + 1] == "/var/lib/pgfs/mnt"
    assert probes["livenessProbe"]["exec"]["command"] == ["pgfs", "status", "/var/lib/pgfs/mnt"]


def test_ingress_optional() -> None:
    assert find(render_chart(), "Ingress") == []
    (ingress,) = find(render_chart(SCENARIOS["existing-postgresql"]), "Ingress")
    rule = ingress["spec"]["rules"][0]
    assert rule["host"] == "jellyfin.example.com"
    assert rule["http"]["paths"][0]["backend"]["service"]["port"] == {"name": "http"}


def test_volumes_for_config_and_cache() -> None:
    manifests = render_chart([], {"persistence.cache.enabled": True})
    claims = {c["metadata"]["name"] for c in find(manifests, "PersistentVolumeClaim")}
    assert claims == {"jellyfin-jellyfin-pgfs-config", "jellyfin-jellyfin-pgfs-cache"}
    jellyfin = container(pod_spec(manifests), "jellyfin")
    mounted = {m["mountPath"] for m in jellyfin["volumeMounts"]}
    assert {"/config", "/cache", "/config/data"} <= mounted
    existing = render_chart([], {"persistence.config.existingClaim": "old-jellyfin-config"})
    assert find(existing, "PersistentVolumeClaim") == []
    volumes = {v["name"]: v for v in pod_spec(existing)["volumes"]}
    assert volumes["config"]["persistentVolumeClaim"]["claimName"] == "old-jellyfin-config"


# --- chart.py helpers for the end-to-end test -------------------------------------


def test_localize_makes_the_sidecar_runnable_here(tmp_path: Path) -> None:
    command = sidecar_command(render_chart(SCENARIOS["existing-postgresql"]))
    local = localize(
        command,
        paths={"/mnt/pgfs": str(tmp_path / "mnt"), "/config": str(tmp_path / "config")},
        secrets={"jellyfin-postgresql": {"password": "s3cret"}},
        executables={"pgfs": "/opt/bin/pgfs"},
    )
    assert local.argv[0] == "/opt/bin/pgfs"
    assert local.argv[local.argv.index("mount") + 1] == str(tmp_path / "mnt")
    assert local.argv[local.argv.index("--backing-dir") + 1] == str(tmp_path / "config/data")
    assert local.env["PGPASSWORD"] == "s3cret"
    assert local.env["PGFS_MOUNTPOINT"] == str(tmp_path / "mnt")
    assert local.probes["livenessProbe"]["exec"]["command"] == [
        "/opt/bin/pgfs",
        "status",
        str(tmp_path / "mnt"),
    ]
    with pytest.raises(KeyError):
        localize(command, secrets={})


def test_run_probe_runs_each_kind_of_probe() -> None:
    import http.server
    import socket
    import sys
    import threading

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        assert run_probe({"httpGet": {"path": "/healthz", "port": port}})
        assert not run_probe({"httpGet": {"path": "/other", "port": port}})
        assert run_probe({"tcpSocket": {"port": port}})
    finally:
        server.shutdown()
        server.server_close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    assert not run_probe({"httpGet": {"path": "/healthz", "port": closed}})
    ok = [sys.executable, "-c", "import os, sys; sys.exit(os.environ['X'] != 'y')"]
    assert run_probe({"exec": {"command": ok}}, env={"X": "y"})
    assert not run_probe({"exec": {"command": ok}}, env={"X": "n"})
    slow = {"exec": {"command": [sys.executable, "-c", "import time; time.sleep(5)"]}}
    assert not run_probe(slow, timeout=0.5)
