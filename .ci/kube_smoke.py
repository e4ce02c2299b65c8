"""Turns the rendered production overlay into what `podman kube play` (4.3) can run on
one machine for the smoke test of .ci/kubernetes-smoke.sh, and writes it to a folder:

    python .ci/kube_smoke.py RENDERED.yaml OUT_DIR --image IMG --tmp DIR --port-base N
    python .ci/kube_smoke.py ... --without-worker     # the api alone

The api and worker Deployments, the migrate Job and the CronJobs keep their
command, security context (non-root, read-only root filesystem, no capabilities),
resources and probes. What podman cannot do is replaced, and only that:
- the pods use the host's network on ports N+... (podman has no Services or cluster DNS);
- the overlay has no Secret (the operator creates `shop-secrets`, README "Kubernetes"):
  the keys the service needs of it (deploy/kubernetes/shop-secrets.example.env) come
  with smoke values in one ConfigMap beside the overlay's settings (kube play 4.3 reads
  no Secret), with a plain-HTTP provider (the fake) and no HTTPS redirect (no TLS);
- `$(VAR)` references and the Downward API are written out (podman expands neither);
- `emptyDir` volumes become host directories (podman 4.3 has no emptyDir);
- a Job's or CronJob's pod template is played as a Pod that runs once;
- a `support` pod runs PostgreSQL, Redis and the fake provider in place of the managed
  services the manifests name by URL, and a shop's webhook endpoint (`shop_receiver.py`:
  it verifies each event's signature and prints what it got) for the
  worker to deliver the events to.
Ingress, HorizontalPodAutoscaler, PodDisruptionBudget and NetworkPolicy have no podman
equivalent: tests/test_kubernetes.py checks them (schemas and selectors).
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import yaml

SHOP_WEBHOOK_SECRET = "whsec_a3ViZS1zbW9rZS1zaG9wLXdlYmhvb2stc2VjcmV0LTMy"
SHOP_RECEIVER = Path(__file__).with_name("shop_receiver.py")


def load(path: Path) -> dict[tuple[str, str], dict]:
    return {
        (doc["kind"], doc["metadata"]["name"]): doc
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    }


def smoke_settings(config: dict, ports: dict[str, int]) -> dict[str, str]:
    values = dict(config["data"])
    values.update(
        PUBLIC_HOSTS="127.0.0.1,localhost",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        REAL_PAYMENT_API=f"http://127.0.0.1:{ports['provider']}",
        PAYMENT_API_ALLOW_HTTP="true",
        SECURE_SSL_REDIRECT="false",
        TRUSTED_PROXIES="",
        GUNICORN_BIND=f"127.0.0.1:{ports['api']}",
        GUNICORN_WORKERS="2",
        DB_DISABLE_SERVER_SIDE_CURSORS="false",
        SECRET_KEY="kube-smoke-" + "q7Zr4Lm9Xv2Tn8Wk3Pb6Yh1Jd5Gs0Fc-" * 2,
        DATABASE_URL=f"postgres://shop:shop@127.0.0.1:{ports['db']}/shop",
        REDIS_URL=f"redis://127.0.0.1:{ports['redis']}/0",
        SHOP_WEBHOOK_URL=f"http://127.0.0.1:{ports['shop']}/webhooks",
        SHOP_WEBHOOK_SECRET=SHOP_WEBHOOK_SECRET,
    )
    return values


def pod_from(workload: dict, name: str, *, once: bool) -> dict:
    if workload["kind"] == "CronJob":
        template = workload["spec"]["jobTemplate"]["spec"]["template"]
    else:
        template = workload["spec"]["template"]
    spec = copy.deepcopy(template["spec"])
    spec["hostNetwork"] = True
    spec["restartPolicy"] = "Never" if once else "Always"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(template["metadata"]["labels"])},
        "spec": spec,
    }


def adapt(pod: dict, image: str, tmp: Path, settings_name: str, api_port: int) -> dict:
    spec = pod["spec"]
    for volume in spec.get("volumes", []):
        if "emptyDir" in volume:
            directory = tmp / f"{pod['metadata']['name']}-{volume['name']}"
            directory.mkdir(parents=True, exist_ok=True)
            directory.chmod(0o1777)
            volume.pop("emptyDir")
            volume["hostPath"] = {"path": str(directory), "type": "Directory"}
    for container in spec["containers"]:
        container["image"] = image
        container["envFrom"] = [{"configMapRef": {"name": settings_name}}]
        container.pop("env", None)  # $(VAR) and fieldRef: written out in the ConfigMap
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if probe in container:
                container[probe]["httpGet"]["port"] = api_port
                container[probe]["httpGet"]["host"] = "127.0.0.1"
        container.pop("ports", None)
        container.pop("lifecycle", None)
    return pod


def support_pod(image: str, ports: dict[str, int]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "support"},
        "spec": {
            "hostNetwork": True,
            "restartPolicy": "Always",
            "containers": [
                {
                    "name": "postgres",
                    "image": "docker.io/library/postgres:16",
                    "args": [
                        "postgres",
                        "-p",
                        str(ports["db"]),
                        "-c",
                        "listen_addresses=127.0.0.1",
                    ],
                    "env": [
                        {"name": "POSTGRES_USER", "value": "shop"},
                        {"name": "POSTGRES_PASSWORD", "value": "shop"},
                        {"name": "POSTGRES_DB", "value": "shop"},
                    ],
                },
                {
                    "name": "redis",
                    "image": "docker.io/library/redis:7-bookworm",
                    "workingDir": "/",  # the image's /data: kube play makes no WORKDIR
                    "args": [
                        "redis-server",
                        "--port",
                        str(ports["redis"]),
                        "--bind",
                        "127.0.0.1",
                        "--save",
                        "",
                    ],
                },
                {
                    "name": "provider",
                    "image": image,
                    "command": [
                        "gunicorn",
                        "--workers=1",
                        "--threads=8",
                        "--no-control-socket",
                        f"--bind=127.0.0.1:{ports['provider']}",
                        "fake_payment_server:app",
                    ],
                    "env": [{"name": "FAKE_PAYMENT_CARD_LIMIT", "value": "100.00"}],
                },
                {
                    "name": "shop",
                    "image": image,
                    "command": ["python", "/shop/shop_receiver.py", str(ports["shop"])],
                    "env": [{"name": "SHOP_WEBHOOK_SECRET", "value": SHOP_WEBHOOK_SECRET}],
                    "volumeMounts": [{"name": "shop", "mountPath": "/shop", "readOnly": True}],
                },
            ],
            "volumes": [
                {
                    "name": "shop",
                    "hostPath": {"path": str(SHOP_RECEIVER.parent.resolve()), "type": "Directory"},
                }
            ],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rendered", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--image", required=True)
    parser.add_argument("--tmp", type=Path, required=True)
    parser.add_argument("--port-base", type=int, required=True)
    parser.add_argument("--without-worker", action="store_true")
    args = parser.parse_args()
    base = args.port_base
    ports = {
        "api": base,
        "db": base + 1,
        "redis": base + 2,
        "provider": base + 3,
        "shop": base + 4,
    }
    resources = load(args.rendered)
    [config_key] = [key for key in resources if key[0] == "ConfigMap"]
    settings = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "shop-smoke-settings"},
        "data": smoke_settings(resources[config_key], ports),
    }
    args.out.mkdir(parents=True, exist_ok=True)

    def write(name: str, *docs: dict) -> None:
        (args.out / name).write_text(yaml.safe_dump_all([settings, *docs], sort_keys=False))

    def played(kind: str, name: str, pod_name: str, *, once: bool) -> dict:
        pod = pod_from(resources[(kind, name)], pod_name, once=once)
        return adapt(pod, args.image, args.tmp, "shop-smoke-settings", ports["api"])

    (args.out / "support.yaml").write_text(yaml.safe_dump(support_pod(args.image, ports)))
    write("migrate.yaml", played("Job", "migrate", "migrate", once=True))
    services = [played("Deployment", "api", "api", once=False)]
    if not args.without_worker:
        services.append(played("Deployment", "worker", "worker", once=False))
    write("services.yaml", *services)
    write("reconcile.yaml", played("CronJob", "reconcile-payments", "reconcile", once=True))
    write(
        "release.yaml",
        played("CronJob", "release-discount-reservations", "release", once=True),
    )
    (args.out / "ports.env").write_text(
        "".join(f"{k.upper()}_PORT={v}\n" for k, v in ports.items())
    )


if __name__ == "__main__":
    main()
