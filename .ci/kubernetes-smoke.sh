#!/usr/bin/env bash
# .ci/kubernetes-smoke.sh: the Kubernetes manifests run for real with `podman kube play`:
# the production overlay (kubectl kustomize), turned by .ci/kube_smoke.py into what
# podman 4.3 plays on one machine, runs the migrate Job, the api and the worker, answers
# /health/ready/, pays a cart through the fake provider, counts it in /metrics, sees the
# worker deliver the cart.paid event to a shop endpoint (signed, with the pay request's
# id), and runs the pods of the reconcile and release-discount-reservations CronJobs
# once. Bounded: every wait has a deadline. Needs the images of verify-containers.sh and
# .ci/container-standins.sh (python, postgres and redis stand-ins). Hold the podman lock
# while it runs.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=${VERIFY_STATE_DIR:-/var/tmp/verify-containers}
[ -f "$STATE/containers.conf" ] && export CONTAINERS_CONF=$STATE/containers.conf
IMAGE=localhost/shop-api:kube-smoke
PORT_BASE=${KUBE_SMOKE_PORT_BASE:-45800}
PYTHON=${PYTHON:-.venv/bin/python}
work=$(mktemp -d /tmp/kube-smoke.XXXXXX)
chmod 755 "$work"
played=()

cleanup() {
    local file
    for file in "${played[@]}"; do
        podman kube down "$file" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "kube smoke: FAILED: $*"
    for pod in api worker support migrate reconcile release; do
        podman pod exists "$pod" 2>/dev/null || continue
        for c in $(podman ps -a --filter "pod=$pod" --format '{{.Names}}'); do
            echo "--- logs $c"; podman logs --tail 30 "$c" 2>&1 || true
        done
    done
    exit 1
}
play() {
    played+=("$1")
    podman kube play "$1" > "$work/play-$(basename "$1").log" 2>&1 \
        || { cat "$work/play-$(basename "$1").log"; fail "kube play $1"; }
}
wait_for() { # wait_for SECONDS DESCRIPTION CMD...
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || fail "$what within the deadline"
        sleep 1
    done
}
run_once() { # run_once FILE CONTAINER: play a pod that runs once, and check its exit
    play "$1"
    local code
    code=$(timeout 300 podman wait "$2") || fail "$2 did not finish"
    [ "$code" = 0 ] || { podman logs --tail 30 "$2"; fail "$2 exited with $code"; }
    echo "$2: exited 0"
}

podman build -q --pull=never --target runtime -t "$IMAGE" . >/dev/null
kubectl kustomize deploy/kubernetes/overlays/production > "$work/rendered.yaml"
"$PYTHON" .ci/kube_smoke.py "$work/rendered.yaml" "$work/play" --image "$IMAGE" \
    --tmp "$work/volumes" --port-base "$PORT_BASE"
# shellcheck disable=SC1091  # written just above
. "$work/play/ports.env"
api=http://127.0.0.1:$API_PORT

# Leftovers of an interrupted run would hold the ports.
for pod in api worker support migrate reconcile release; do
    podman pod rm -f "$pod" >/dev/null 2>&1 || true
done

play "$work/play/support.yaml"
wait_for 90 "PostgreSQL answering" podman exec support-postgres pg_isready -U shop -h 127.0.0.1 -p "$DB_PORT"
wait_for 60 "the fake provider answering" curl -fsS "http://127.0.0.1:$PROVIDER_PORT/inspect"
wait_for 60 "the shop's endpoint answering" curl -sS -o /dev/null "http://127.0.0.1:$SHOP_PORT/"
run_once "$work/play/migrate.yaml" migrate-migrate
play "$work/play/services.yaml"
wait_for 90 "the api ready" curl -fsS "$api/health/ready/"
echo "api: /health/ready/ answers 200"
[ "$(podman exec api-api id -u)" = 10001 ] || fail "the api runs as $(podman exec api-api id -u)"
if podman exec api-api touch /app/written 2>/dev/null; then fail "the root filesystem is writable"; fi
sleep 3
[ "$(podman inspect -f '{{.State.Running}}' worker-worker)" = true ] || fail "the worker stopped"
echo "worker: running"

# ENV=PROD: creating carts needs a storefront key or a staff user; the smoke makes one.
token=$(podman exec api-api python manage.py shell -c "
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
user = get_user_model().objects.create_user('kube-smoke', is_staff=True)
print(Token.objects.create(user=user).key)" 2>/dev/null | tail -1)
[ -n "$token" ] || fail "no staff token"
call() { # call METHOD PATH [BODY]: the answer's body; fails on a status >= 400
    curl -fsS -X "$1" "$api$2" -H "Authorization: Token $token" -H 'X-Request-ID: kube-smoke-1' \
        -H 'Content-Type: application/json' ${3:+-d "$3"}
}
json() { "$PYTHON" -c "import json, sys; print(json.load(sys.stdin)$1)"; }
cart=$(call POST /api/cart/ '{"total": "12.50", "currency": "USD", "items_number": 2}' | json "['id']") \
    || fail "creating a cart"
status=$(call POST "/api/cart/$cart/pay/" '{}' | json "['cart']['payment_status']") || fail "paying the cart"
[ "$status" = success ] || fail "the cart is $status after paying"
echo "api: cart $cart paid (payment_status success)"
outcomes=$(curl -fsS "$api/metrics" | grep -c '^payment_outcomes_total{.*status="success".*} 1.0$' || true)
[ "$outcomes" = 1 ] || fail "/metrics does not count the payment"
echo "api: /metrics counts it"
journal=$(curl -fsS "http://127.0.0.1:$PROVIDER_PORT/control/journal" | json "['data'][-1]['request_id']")
[ "$journal" = kube-smoke-1 ] || fail "the provider got request id $journal"
echo "provider: the charge carries the request id"
shop_got_it() { podman logs support-shop 2>&1 | grep -Eq '^200 [0-9a-f-]{36} kube-smoke-1$'; }
wait_for 60 "the worker delivering cart.paid to the shop" shop_got_it
event=$(podman exec api-api python manage.py shell -c "
from events.models import Event
event = Event.objects.get(cart_id='$cart', type='cart.paid')
print(event.status, event.request_id)" 2>/dev/null | tail -1)
[ "$event" = "delivered kube-smoke-1" ] || fail "the cart.paid event is: $event"
echo "worker: cart.paid delivered to the shop (signature verified, X-Request-ID kube-smoke-1)"
run_once "$work/play/reconcile.yaml" reconcile-reconcile
run_once "$work/play/release.yaml" release-release
echo "kube smoke: passed"
