"""The Helm chart renders offline and every object it renders is valid Kubernetes.

Rendering uses helm-python-sdk, which binds Helm's own Go library (no helm binary, no
cluster): the chart is rendered with its default values and with ``ci/nondefault-values.yaml``
(every optional object on, an existing Secret, fixed replica counts). Each rendered object
is validated strictly (no unknown fields) by kubernetes-validate against the oldest
Kubernetes the chart allows and the newest schema it ships. Then the wiring that a schema
cannot see is checked: probes, selectors, settings, the Secret, the optional monitoring.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
import yaml

from tests.deploy.support import (
    CHART,
    KNOWN_METRICS,
    assert_settings_load,
    promql_metric_names,
    require,
    scc_variables,
)

RELEASE, NAMESPACE = "scc", "ingestion"
NONDEFAULT = CHART / "ci" / "nondefault-values.yaml"
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
#: Oldest Kubernetes the chart allows (Chart.yaml kubeVersion) and the newest schema shipped.
KUBE_VERSIONS = ("1.25.0", "1.37.0")
Manifests = list[dict[str, Any]]


def _values(name: str) -> dict[str, Any] | None:
    if name == "default":
        return None
    loaded = yaml.safe_load(NONDEFAULT.read_text())
    assert isinstance(loaded, dict)
    return loaded


@cache
def _render_cached(name: str, overrides: str) -> tuple[str, ...]:
    helm = require("helm_python", "helm-python-sdk")
    values = _values(name) or {}
    values = _merge(values, json.loads(overrides))
    with helm.Chart.load(str(CHART)) as chart:
        rendered: dict[str, str] = chart.render(
            values=values or None, name=RELEASE, namespace=NAMESPACE
        )
    return tuple(text for path, text in sorted(rendered.items()) if path.endswith(".yaml"))


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def render(name: str = "default", **overrides: Any) -> Manifests:
    """Objects the chart renders with the named values set (``default``/``nondefault``)."""
    docs: Manifests = []
    for text in _render_cached(name, json.dumps(overrides, sort_keys=True)):
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def one(docs: Manifests, kind: str, name: str | None = None) -> dict[str, Any]:
    """The single object of ``kind`` (and ``name``, when given)."""
    found = [
        d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def deployment(docs: Manifests, component: str) -> dict[str, Any]:
    """The Deployment of ``component`` (``watcher`` or ``service``)."""
    found = [
        d
        for d in docs
        if d["kind"] == "Deployment"
        and d["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]
    assert len(found) == 1
    return found[0]


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """Whether a matchLabels-style selector selects ``labels``."""
    return all(labels.get(k) == v for k, v in selector.items())


@pytest.fixture(params=["default", "nondefault"])
def docs(request: pytest.FixtureRequest) -> Manifests:
    """Rendered objects for each values set."""
    return render(str(request.param))


def test_chart_lints_clean_in_strict_mode() -> None:
    """helm lint --strict (Helm's library) reports no warning or error for either values set."""
    helm = require("helm_python", "helm-python-sdk")
    for values in (None, _values("nondefault")):
        report = helm.lint(str(CHART), values, strict=True, kube_version="v1.37.0")
        problems = [m for m in report["messages"] if m["severity"] >= 2]
        assert not report["errors"] and not problems, report


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_object_validates_against_kubernetes_schemas(
    docs: Manifests, kube_version: str
) -> None:
    """Every built-in-kind object passes kubernetes-validate's strict schema."""
    validator = require("kubernetes_validate", "kubernetes-validate")
    checked = 0
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            validator.validate(doc, kube_version, strict=True)
        except validator.ValidationError as e:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']}: {e.message} at {list(e.path)}")
        checked += 1
    assert checked >= 8
    # The validator is strict: the same Deployment with a misspelt field is refused.
    broken = json.loads(json.dumps(deployment(docs, "service")))
    broken["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(validator.ValidationError):
        validator.validate(broken, kube_version, strict=True)


def test_prometheus_operator_objects_validate_against_their_crds() -> None:
    """ServiceMonitor and PrometheusRule would need the Prometheus Operator CRD schemas."""
    pytest.skip(
        "kubernetes-validate ships schemas for built-in Kubernetes kinds only and nothing "
        "offline provides the monitoring.coreos.com/v1 CRD schemas; ServiceMonitor and "
        "PrometheusRule are checked field by field in the tests below instead"
    )


def test_default_values_render_the_core_objects_only() -> None:
    """Defaults: both Deployments, two Services, PDBs, HPA, settings; no optional extras."""
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in render())
    assert kinds == [
        "ConfigMap/scc-source-config-cache-config",
        "Deployment/scc-source-config-cache-service",
        "Deployment/scc-source-config-cache-watcher",
        "HorizontalPodAutoscaler/scc-source-config-cache-service",
        "PodDisruptionBudget/scc-source-config-cache-service",
        "PodDisruptionBudget/scc-source-config-cache-watcher",
        "Secret/scc-source-config-cache-secrets",
        "Service/scc-source-config-cache",
        "Service/scc-source-config-cache-watcher",
        "ServiceAccount/scc-source-config-cache",
    ]
    assert all(d["metadata"].get("namespace") == NAMESPACE for d in render())


def test_watchers_probe_with_check_and_know_their_pod_name(docs: Manifests) -> None:
    """Watcher pods run ``python -m watcher``, probe with ``--check``, get SCC_INSTANCE_ID."""
    spec = deployment(docs, "watcher")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["command"] == ["python", "-m", "watcher"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["exec"]["command"] == ["python", "-m", "watcher", "--check"]
        assert container[probe]["timeoutSeconds"] >= 3, "a Python start-up needs time"
    env = {e["name"]: e for e in container["env"]}
    assert env["SCC_INSTANCE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_watcher_replicas_and_disruption_budget() -> None:
    """Two watchers by default (three in the values file) and a PDB keeping one up."""
    for name, replicas, min_available in (("default", 2, 1), ("nondefault", 3, 2)):
        docs = render(name)
        watcher = deployment(docs, "watcher")
        assert watcher["spec"]["replicas"] == replicas
        strategy = watcher["spec"]["strategy"]["rollingUpdate"]
        assert strategy["maxUnavailable"] == 0, "a rollout must never drop every watcher"
        pdb = [
            d
            for d in docs
            if d["kind"] == "PodDisruptionBudget"
            and matches(
                d["spec"]["selector"]["matchLabels"],
                watcher["spec"]["template"]["metadata"]["labels"],
            )
        ]
        assert len(pdb) == 1 and pdb[0]["spec"]["minAvailable"] == min_available


def test_replicas_probe_ready_live_and_startup(docs: Manifests) -> None:
    """Replicas: readiness on /health/ready, liveness and startup on /health/live, resources."""
    spec = deployment(docs, "service")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["command"] == ["python", "-m", "service"]
    port_names = {p["name"] for p in container["ports"]}
    expected = {
        "readinessProbe": "/health/ready",
        "livenessProbe": "/health/live",
        "startupProbe": "/health/live",
    }
    for probe, path in expected.items():
        assert container[probe]["httpGet"]["path"] == path
        assert container[probe]["httpGet"]["port"] in port_names
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 60
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]
    env = {e["name"]: e for e in container["env"]}
    assert env["SCC_INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_container_port_is_the_configured_http_port() -> None:
    """The containerPort follows config.httpPort, which also sets SCC_HTTP_PORT."""
    for name, port in (("default", 8080), ("nondefault", 9000)):
        docs = render(name)
        settings = one(docs, "ConfigMap", next(_configmap_names(docs)))["data"]
        assert settings["SCC_HTTP_PORT"] == str(port)
        for component in ("watcher", "service"):
            spec = deployment(docs, component)["spec"]["template"]["spec"]
            assert spec["containers"][0]["ports"][0]["containerPort"] == port


def _configmap_names(docs: Manifests) -> Any:
    return (
        d["metadata"]["name"]
        for d in docs
        if d["kind"] == "ConfigMap" and "-config" in d["metadata"]["name"]
    )


def test_autoscaler_owns_the_replica_count_when_enabled() -> None:
    """With the HPA on, the Deployment leaves replicas to it; off, the count is fixed."""
    default = render()
    service = deployment(default, "service")
    assert "replicas" not in service["spec"]
    hpa = one(default, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": service["metadata"]["name"],
    }
    assert hpa["spec"]["minReplicas"] >= 2
    fixed = render("nondefault")
    assert deployment(fixed, "service")["spec"]["replicas"] == 5
    assert not [d for d in fixed if d["kind"] == "HorizontalPodAutoscaler"]


def test_every_selector_picks_exactly_its_own_pods(docs: Manifests) -> None:
    """Deployments, Services and PDBs select their own component's pods and no others."""
    pods = {
        c: deployment(docs, c)["spec"]["template"]["metadata"]["labels"]
        for c in ("watcher", "service")
    }
    for d in docs:
        if d["kind"] == "StatefulSet":
            pods["redis"] = d["spec"]["template"]["metadata"]["labels"]
    for d in docs:
        if d["kind"] in {"Deployment", "StatefulSet"}:
            selector = d["spec"]["selector"]["matchLabels"]
        elif d["kind"] == "PodDisruptionBudget":
            selector = d["spec"]["selector"]["matchLabels"]
        elif d["kind"] == "Service":
            selector = d["spec"]["selector"]
        else:
            continue
        selected = [c for c, labels in pods.items() if matches(selector, labels)]
        component = d["metadata"]["labels"]["app.kubernetes.io/component"]
        assert selected == [component], f"{d['kind']}/{d['metadata']['name']} selects {selected}"


def test_services_expose_the_named_http_port(docs: Manifests) -> None:
    """Both Services target the containers' ``http`` port; the watchers' one is headless."""
    services = {
        d["metadata"]["labels"]["app.kubernetes.io/component"]: d
        for d in docs
        if d["kind"] == "Service"
    }
    assert set(services) - {"redis"} == {"watcher", "service"}
    for component, service in services.items():
        if component == "redis":
            continue
        assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
        assert service["spec"]["ports"][0]["name"] == "http"
    assert services["watcher"]["spec"]["clusterIP"] == "None"


def test_pods_run_non_root_on_a_read_only_root_filesystem(docs: Manifests) -> None:
    """Both roles: uid 10001, no privilege escalation, no capabilities, writable /tmp only."""
    for component in ("watcher", "service"):
        spec = deployment(docs, component)["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        (container,) = spec["containers"]
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]


def test_settings_are_real_variables_split_by_secrecy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ConfigMap and Secret keys are SCC_* settings; secrets only in the Secret; they load."""
    variables = scc_variables()
    docs = render(
        secrets={
            "messageHmacKey": "x" * 32,
            "ingestToken": "y" * 24,
            "redisSentinelPassword": "z",
            "redisSubscribeUrl": "redis://redis-replica:6379/0",
        }
    )
    config = one(docs, "ConfigMap")["data"]
    secret = one(docs, "Secret")["stringData"]
    assert set(config) <= set(variables), sorted(set(config) - set(variables))
    assert not [k for k in config if variables[k]], "a secret setting sits in the ConfigMap"
    assert set(secret) == {k for k, is_secret in variables.items() if is_secret}
    plain = {k for k, is_secret in variables.items() if not is_secret} - {"SCC_INSTANCE_ID"}
    assert set(config) == plain, f"settings the chart cannot set: {sorted(plain - set(config))}"
    assert_settings_load({**config, **secret, "SCC_INSTANCE_ID": "pod-0"}, monkeypatch)
    for component in ("watcher", "service"):
        container = deployment(docs, component)["spec"]["template"]["spec"]["containers"][0]
        refs = {next(iter(k for k in e if k.endswith("Ref"))): e for e in container["envFrom"]}
        assert (
            refs["configMapRef"]["configMapRef"]["name"]
            == one(docs, "ConfigMap")["metadata"]["name"]
        )
        assert refs["secretRef"]["secretRef"]["name"] == one(docs, "Secret")["metadata"]["name"]


def test_optional_secrets_are_left_out_when_empty() -> None:
    """By default the Secret holds only the two URLs: no empty HMAC key or ingest token."""
    secret = one(render(), "Secret")["stringData"]
    assert set(secret) == {"SCC_MONGODB_URI", "SCC_REDIS_URL"}


def test_existing_secret_replaces_the_rendered_one() -> None:
    """With secrets.existingSecret no Secret is rendered and pods read the named one."""
    docs = render("nondefault")
    assert not [d for d in docs if d["kind"] == "Secret"]
    for component in ("watcher", "service"):
        pod = deployment(docs, component)["spec"]["template"]
        refs = [
            e["secretRef"]["name"]
            for e in pod["spec"]["containers"][0]["envFrom"]
            if "secretRef" in e
        ]
        assert refs == ["scc-prod-credentials"]
        assert "checksum/secrets" not in pod["metadata"]["annotations"]


def test_bad_secret_values_fail_the_render_with_a_clear_message() -> None:
    """A missing MongoDB URI or a too-short HMAC key stops the render, naming the value."""
    helm = require("helm_python", "helm-python-sdk")
    cases: list[tuple[dict[str, Any], str]] = [
        ({"secrets": {"mongodbUri": ""}}, "secrets.mongodbUri is required"),
        ({"secrets": {"messageHmacKey": "short"}}, "secrets.messageHmacKey must be at least 16"),
    ]
    with helm.Chart.load(str(CHART)) as chart:
        for values, message in cases:
            with pytest.raises(helm.HelmError, match=message):
                chart.render(values=values, name=RELEASE, namespace=NAMESPACE)


def test_a_settings_change_rolls_the_pods() -> None:
    """Pod templates carry a checksum of the ConfigMap, so changing a setting restarts pods."""

    def checksum(docs: Manifests, component: str) -> str:
        annotations = deployment(docs, component)["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    before, after = render(), render(config={"logLevel": "debug"})
    for component in ("watcher", "service"):
        assert checksum(before, component) != checksum(after, component)


def test_image_reference_follows_tag_or_digest() -> None:
    """The image is repository:appVersion by default and repository@digest when pinned."""

    def image(docs: Manifests) -> str:
        container = deployment(docs, "service")["spec"]["template"]["spec"]["containers"][0]
        return str(container["image"])

    assert image(render()) == "source-config-cache:0.1.0"
    assert image(render("nondefault")) == (
        "registry.example.com/platform/source-config-cache@sha256:"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    )


def test_servicemonitor_scrapes_metrics_of_both_roles() -> None:
    """The ServiceMonitor selects both Services and scrapes their ``http`` port's /metrics."""
    docs = render("nondefault")
    monitor = one(docs, "ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    selector = monitor["spec"]["selector"]["matchLabels"]
    services = [d for d in docs if d["kind"] == "Service"]
    selected = [s for s in services if matches(selector, s["metadata"]["labels"])]
    assert len(selected) == 2
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert set(endpoint) == {"port", "path", "interval", "scrapeTimeout"}
        assert endpoint["path"] == "/metrics"
        for service in selected:
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}


def test_prometheus_rules_use_only_exported_metrics() -> None:
    """Each alert has a valid shape and queries only metrics the system exports."""
    rule = one(render("nondefault"), "PrometheusRule")
    (group,) = rule["spec"]["groups"]
    alerts = group["rules"]
    assert len(alerts) >= 5
    for alert in alerts:
        assert set(alert) <= {"alert", "expr", "for", "labels", "annotations"}
        assert alert["labels"]["severity"] in {"critical", "warning"}
        assert alert["annotations"]["summary"]
        names = promql_metric_names(alert["expr"])
        assert names and names <= KNOWN_METRICS, (alert["alert"], names)
        assert f'namespace="{NAMESPACE}"' in alert["expr"]


def test_dashboard_configmap_ships_the_dashboard_file() -> None:
    """dashboards.enabled renders a ConfigMap labelled for Grafana's sidecar with the JSON."""
    docs = render("nondefault")
    (dashboards,) = [
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-dashboards")
    ]
    assert dashboards["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(dashboards["data"]["source-config-cache.json"])
    on_disk = json.loads((CHART / "dashboards" / "source-config-cache.json").read_text())
    assert shipped == on_disk


def test_notes_render_for_both_values_sets() -> None:
    """NOTES.txt renders and tells the operator how to run ``scc inspect``."""
    helm = require("helm_python", "helm-python-sdk")
    with helm.Chart.load(str(CHART)) as chart:
        for values in (None, _values("nondefault")):
            notes = chart.render(values=values, name=RELEASE, namespace=NAMESPACE)
            text = notes["source-config-cache/templates/NOTES.txt"]
            assert "scc inspect" in text and "{{" not in text


def test_bundled_redis_keeps_an_fsynced_append_only_file_on_a_volume() -> None:
    """redis.enabled runs Redis with appendonly yes, appendfsync everysec, /data on a PVC."""
    docs = render("nondefault")
    redis = one(docs, "StatefulSet")
    (container,) = redis["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--appendfsync") + 1] == "everysec"
    assert {"mountPath": "/data", "name": "data"} in container["volumeMounts"]
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert not [d for d in render() if d["kind"] == "StatefulSet"]  # off by default


def test_events_stream_alerts_watch_trimming_and_the_cap() -> None:
    """Alerts fire on unread entries trimmed, a stream near its cap and trimmed dead letters."""
    (group,) = one(render("nondefault"), "PrometheusRule")["spec"]["groups"]
    alerts = {a["alert"]: a for a in group["rules"]}
    unread = alerts["SourceConfigCacheEventsTrimmedUnread"]
    assert "scc_events_trimmed_unread_total" in unread["expr"]
    assert unread["labels"]["severity"] == "critical"
    near = alerts["SourceConfigCacheEventsStreamNearCap"]["expr"]
    assert near.endswith("> 0.8 * 100000")
    assert 'stream="dlq"' in alerts["SourceConfigCacheDeadLettersTrimmed"]["expr"]
