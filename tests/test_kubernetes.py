"""deploy/kubernetes: the production overlay, rendered by kustomize (`kubectl kustomize`),
is valid against the Kubernetes API schemas (kubernetes-validate, offline) and holds what
the README promises: probes, non-root read-only pods, limits, a migration Job, the
reconcile and release-discount-reservations CronJobs, a PodDisruptionBudget and an HPA
for the api, selectors that select, and a NetworkPolicy that lets only the provider's
clients reach the provider. `podman kube play` runs the api and the worker for real in
`.ci/kubernetes-smoke.sh`."""

import os
import re
import shutil
import subprocess
import sys

import kubernetes_validate
import pytest
import yaml

from conftest import ROOT, gunicorn_setting, pay_worst_case_seconds, require_local_service

OVERLAY = ROOT / "deploy" / "kubernetes" / "overlays" / "production"
SECRET_EXAMPLE = ROOT / "deploy" / "kubernetes" / "shop-secrets.example.env"
# What the pods read from the Secret: ENV=PROD refuses to start without the first three,
# and without SHOP_WEBHOOK_SECRET beside SHOP_WEBHOOK_URL; PAYMENT_WEBHOOK_SECRET empty
# refuses the provider's events.
SECRET_KEYS = {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "SHOP_WEBHOOK_SECRET",
               "PAYMENT_WEBHOOK_SECRET"}  # fmt: skip
KUBERNETES_VERSION = "1.32"


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    kubectl = shutil.which("kubectl")
    require_local_service("kubectl (kustomize)", kubectl is not None)
    result = subprocess.run(
        [kubectl, "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def find(resources, kind, name) -> dict:
    [found] = [r for r in resources if r["kind"] == kind and r["metadata"]["name"] == name]
    return found


def pod_spec(resource) -> dict:
    if resource["kind"] == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return resource["spec"]["template"]["spec"]


def pod_labels(resource) -> dict:
    if resource["kind"] == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return resource["spec"]["template"]["metadata"]["labels"]


def secret_example_keys() -> list[str]:
    lines = SECRET_EXAMPLE.read_text().splitlines()
    return [line.split("=", 1)[0] for line in lines if line.strip() and not line.startswith("#")]


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


WORKLOADS = [("Deployment", "api"), ("Deployment", "worker"), ("Job", "migrate"),
             ("CronJob", "reconcile-payments"),
             ("CronJob", "release-discount-reservations")]  # fmt: skip


def test_every_resource_is_valid_against_the_kubernetes_schemas(rendered):
    for resource in rendered:
        kubernetes_validate.validate(resource, KUBERNETES_VERSION, strict=True)


def test_the_production_overlay_has_every_piece(rendered):
    kinds = {(r["kind"], r["metadata"]["name"]) for r in rendered}

    assert {
        *WORKLOADS,
        ("Service", "api"),
        ("Ingress", "api"),
        ("PodDisruptionBudget", "api"),
        ("HorizontalPodAutoscaler", "api"),
        ("NetworkPolicy", "payment-provider-egress"),
    } <= kinds
    assert any(kind == "ConfigMap" and name.startswith("shop-config") for kind, name in kinds)
    assert {r["metadata"].get("namespace") for r in rendered if r["kind"] != "Namespace"} == {
        "shop"
    }


def test_the_api_runs_three_replicas_with_probes_on_the_health_endpoints(rendered):
    api = find(rendered, "Deployment", "api")
    [container] = pod_spec(api)["containers"]

    assert api["spec"]["replicas"] == 3
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready/"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/"
    assert container["image"] == "registry.example.com/shop/shop-api:1.0.0"
    assert selects(api["spec"]["selector"], pod_labels(api))


@pytest.mark.parametrize(("kind", "name"), WORKLOADS)
def test_every_pod_is_non_root_read_only_and_limited(rendered, kind, name):
    spec = pod_spec(find(rendered, kind, name))

    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    for container in spec["containers"]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert {"cpu", "memory"} <= set(container["resources"]["limits"])
        assert {"cpu", "memory"} <= set(container["resources"]["requests"])
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_the_commands_are_the_ones_the_project_runs(rendered):
    def command(kind, name):
        return pod_spec(find(rendered, kind, name))["containers"][0]["command"]

    procfile = ROOT / "Procfile"
    if procfile.exists():  # the worker's command is the Procfile's
        worker_line = next(
            line for line in procfile.read_text().splitlines() if line.startswith("worker:")
        )
        assert " ".join(command("Deployment", "worker")) == worker_line.split(":", 1)[1].strip()
    assert command("Job", "migrate") == ["python", "manage.py", "migrate", "--noinput"]
    assert command("CronJob", "reconcile-payments")[-1] == "reconcile_payments"
    assert command("CronJob", "release-discount-reservations") == [
        "python",
        "manage.py",
        "release_discount_reservations",
    ]


@pytest.mark.parametrize("name", ["reconcile-payments", "release-discount-reservations"])
def test_the_cronjobs_run_one_at_a_time_within_their_period_with_the_services_settings(
    rendered, name
):
    """The README says to run reconcile_payments and release_discount_reservations from
    cron: each has its CronJob, one run at a time, a run (or a late start) never
    outlasting its period, with the api's settings and Secret."""
    cronjob = find(rendered, "CronJob", name)
    minutes = int(cronjob["spec"]["schedule"].split()[0].removeprefix("*/"))
    job = cronjob["spec"]["jobTemplate"]["spec"]
    [container] = pod_spec(cronjob)["containers"]
    [api] = pod_spec(find(rendered, "Deployment", "api"))["containers"]

    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    assert cronjob["spec"]["startingDeadlineSeconds"] < minutes * 60
    assert job["activeDeadlineSeconds"] < minutes * 60
    assert container["envFrom"] == api["envFrom"]


def test_the_budget_the_autoscaler_and_the_service_point_at_the_api(rendered):
    api_labels = pod_labels(find(rendered, "Deployment", "api"))
    worker_labels = pod_labels(find(rendered, "Deployment", "worker"))
    pdb = find(rendered, "PodDisruptionBudget", "api")
    hpa = find(rendered, "HorizontalPodAutoscaler", "api")
    service = find(rendered, "Service", "api")

    assert selects(pdb["spec"]["selector"], api_labels)
    assert not selects(pdb["spec"]["selector"], worker_labels)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                             "name": "api"}  # fmt: skip
    assert hpa["spec"]["minReplicas"] >= pdb["spec"]["minAvailable"] + 1
    assert all(api_labels.get(k) == v for k, v in service["spec"]["selector"].items())


def test_only_the_providers_clients_may_reach_the_provider(rendered):
    policy = find(rendered, "NetworkPolicy", "payment-provider-egress")
    allowed = {
        name
        for kind, name in WORKLOADS
        if selects(policy["spec"]["podSelector"], pod_labels(find(rendered, kind, name)))
    }

    assert allowed == {"api", "worker", "reconcile-payments"}
    assert find(rendered, "NetworkPolicy", "default-deny")["spec"]["policyTypes"] == [
        "Ingress",
        "Egress",
    ]


def test_the_ingress_keeps_metrics_and_health_inside_the_cluster(rendered):
    ingress = find(rendered, "Ingress", "api")
    paths = [p["path"] for rule in ingress["spec"]["rules"] for p in rule["http"]["paths"]]

    assert "/" not in paths
    assert not any(p.startswith(("/metrics", "/health")) for p in paths)


def test_the_worker_is_told_where_the_shops_events_go_and_may_reach_it(rendered):
    """The worker POSTs the shop's events to SHOP_WEBHOOK_URL, signed with
    SHOP_WEBHOOK_SECRET. The templates name both (without the URL every event stays
    `not_sent`), and under the default-deny egress a policy lets the worker, and only
    the worker, reach the shop's receiver over HTTPS."""
    [config] = [
        r
        for r in rendered
        if r["kind"] == "ConfigMap" and r["metadata"]["name"].startswith("shop-config")
    ]
    policy = find(rendered, "NetworkPolicy", "shop-webhook-egress")
    allowed = {
        name
        for kind, name in WORKLOADS
        if selects(policy["spec"]["podSelector"], pod_labels(find(rendered, kind, name)))
    }

    assert config["data"]["SHOP_WEBHOOK_URL"].startswith("https://")
    assert {"SHOP_WEBHOOK_SECRET", "PAYMENT_WEBHOOK_SECRET"} <= set(secret_example_keys())
    assert allowed == {"worker"}
    assert policy["spec"]["policyTypes"] == ["Egress"]
    assert [port for rule in policy["spec"]["egress"] for port in rule["ports"]] == [
        {"port": 443, "protocol": "TCP"}
    ]


def test_applying_the_overlay_never_creates_or_overwrites_the_secret(rendered):
    """The operator makes Secret/shop-secrets (README, "Kubernetes"); a placeholder in the
    overlay would overwrite the real one at every `kubectl apply -k`, and every new pod
    would refuse to start on its example values. The pods name it; the example file the
    README's `kubectl create secret` reads lists what they read from it."""
    readme = (ROOT / "README.md").read_text()

    assert [r["metadata"]["name"] for r in rendered if r["kind"] == "Secret"] == []
    for kind, name in WORKLOADS:
        for container in pod_spec(find(rendered, kind, name))["containers"]:
            assert {"secretRef": {"name": "shop-secrets"}} in container["envFrom"]
    assert sorted(secret_example_keys()) == sorted(SECRET_KEYS)
    assert (
        "kubectl -n shop create secret generic shop-secrets \\ --from-env-file=shop-secrets.env"
        in " ".join(readme.split())
    )


def test_a_changed_configmap_rolls_the_pods(rendered):
    """Pods read the ConfigMap when they start: its name carries a hash of its data
    (kustomize's generator), and every reference uses that name, so a changed setting
    is a new name and a new pod template, which rolls the Deployments."""
    [config] = [r["metadata"]["name"] for r in rendered if r["kind"] == "ConfigMap"]

    assert re.fullmatch(r"shop-config-[a-z0-9]{6,}", config)
    for kind, name in WORKLOADS:
        for container in pod_spec(find(rendered, kind, name))["containers"]:
            refs = [e["configMapRef"]["name"] for e in container["envFrom"] if "configMapRef" in e]
            assert refs == [config]


def test_the_smoke_plays_every_workload_with_settings_the_service_starts_with(rendered, tmp_path):
    """.ci/kube_smoke.py (run by .ci/kubernetes-smoke.sh with podman, in CI) turns the
    overlay into pods, offline here: each workload is played, its settings are the
    overlay's ConfigMap plus smoke values for the Secret the operator creates, and the
    service starts with them under ENV=PROD."""
    source = tmp_path / "rendered.yaml"
    source.write_text(yaml.safe_dump_all(rendered))
    out = tmp_path / "play"
    result = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "kube_smoke.py"), str(source), str(out),
         "--image", "shop-api:smoke", "--tmp", str(tmp_path / "volumes"),
         "--port-base", "45800"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    played = {}
    for name in ("migrate", "services", "reconcile", "release"):
        [settings, *pods] = yaml.safe_load_all((out / f"{name}.yaml").read_text())
        played |= {pod["metadata"]["name"]: pod for pod in pods}
    config = next(r for r in rendered if r["kind"] == "ConfigMap")

    assert set(played) == {"migrate", "api", "worker", "reconcile", "release"}
    for pod in played.values():
        for container in pod["spec"]["containers"]:
            assert container["envFrom"] == [{"configMapRef": {"name": "shop-smoke-settings"}}]
    assert set(config["data"]) <= set(settings["data"])
    assert SECRET_KEYS - {"PAYMENT_WEBHOOK_SECRET"} <= set(settings["data"])
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
        **settings["data"],
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
    }
    check = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "ERROR"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr


ROLLOUT_STEP = "shop.example.com/rollout-step"


def test_a_rollout_migrates_before_any_new_pod_starts(rendered):
    """New pods run the new code, which may need the new migrations: the migrate Job runs
    alone first. `kubectl apply -k … -l shop.example.com/rollout-step=migrate` applies the
    Job and exactly what its pod needs of the overlay, no Deployment or CronJob; the
    README's procedure waits for it to complete before applying the rest."""
    job = find(rendered, "Job", "migrate")
    spec = pod_spec(job)
    needs = {
        ("Job", "migrate"),
        ("Namespace", job["metadata"]["namespace"]),
        ("ServiceAccount", spec["serviceAccountName"]),
        *(
            ("ConfigMap", source["configMapRef"]["name"])
            for container in spec["containers"]
            for source in container["envFrom"]
            if "configMapRef" in source
        ),
    }
    step = {
        (r["kind"], r["metadata"]["name"])
        for r in rendered
        if r["metadata"].get("labels", {}).get(ROLLOUT_STEP) == "migrate"
    }
    readme = " ".join((ROOT / "README.md").read_text().split())
    overlay = "kubectl apply -k deploy/kubernetes/overlays/production"
    procedure = [
        "kubectl -n shop delete job migrate --ignore-not-found",
        f"{overlay} -l {ROLLOUT_STEP}=migrate",
        "kubectl -n shop wait --for=condition=complete job/migrate --timeout=10m",
        f"{overlay}(?! -l)",  # then the rest
    ]

    assert step == needs
    at = 0
    for command in procedure:
        found = re.compile(command.replace(".", r"\.")).search(readme, at)
        assert found, f"the README's rollout lacks {command!r} after what comes before it"
        at = found.end()


def test_a_stopping_api_pod_lets_the_slowest_pay_finish_and_the_ingress_waits_for_it(rendered):
    """A pay may take three provider calls at their worst (conftest.pay_worst_case_seconds,
    64.8 s with the defaults). The ingress waits longer for its answer, or the client
    gets a 504 while the pay goes on; a stopping pod (a rollout, a scale-down, a drain)
    gives gunicorn's graceful stop longer than that, and Kubernetes waits for the preStop
    pause and the graceful stop before it kills the container."""
    [config] = [r["data"] for r in rendered if r["kind"] == "ConfigMap"]
    worst = pay_worst_case_seconds(**{k: v for k, v in config.items() if "PAYMENT_API_" in k})
    graceful = gunicorn_setting(
        "graceful_timeout", **{k: v for k, v in config.items() if k.startswith("GUNICORN_")}
    )
    spec = pod_spec(find(rendered, "Deployment", "api"))
    [container] = spec["containers"]
    sleep, pause = container["lifecycle"]["preStop"]["exec"]["command"]
    annotations = find(rendered, "Ingress", "api")["metadata"]["annotations"]

    assert sleep == "sleep"
    assert graceful > worst
    assert spec["terminationGracePeriodSeconds"] > int(pause) + graceful
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) > worst


def test_the_overlay_names_every_outside_network_the_operator_must_set(rendered):
    """Each NetworkPolicy's address block (the provider's, the shop's webhook receiver's,
    the database's) is the operator's to set: the production overlay replaces each one
    in a patch that says what to set it to, and the README says to set them before the
    first rollout."""
    kustomization = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    policy_patches = [
        patch["patch"]
        for patch in kustomization["patches"]
        if patch.get("target", {}).get("kind") == "NetworkPolicy"
    ]
    patched = {
        (patch["target"]["name"], op["path"])
        for patch in kustomization["patches"]
        if patch.get("target", {}).get("kind") == "NetworkPolicy"
        for op in yaml.safe_load(patch["patch"])
        if op["op"] == "replace" and op["path"].endswith("/ipBlock/cidr")
    }
    blocks = {
        (policy["metadata"]["name"], f"/spec/egress/{e}/to/{t}/ipBlock/cidr")
        for policy in rendered
        if policy["kind"] == "NetworkPolicy"
        for e, rule in enumerate(policy["spec"].get("egress", []))
        for t, peer in enumerate(rule["to"])
        if "ipBlock" in peer
    }
    readme = " ".join((ROOT / "README.md").read_text().split())

    assert blocks == patched
    assert all("# set to " in patch for patch in policy_patches)
    for name, _ in blocks:
        assert f"`{name}`" in readme[readme.index("### Kubernetes") :]
    assert "set the address blocks" in readme
