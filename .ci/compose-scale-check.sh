#!/usr/bin/env bash
# .ci/compose-scale-check.sh: `docker compose up --scale api=3` behind nginx spreads the
# requests over the three replicas. Runs the stack under its own project name with the
# `docker` shim and podman-compose of verify-containers.sh (run that first), sends 30
# requests through nginx's published port and counts them in each replica's log (the
# service's one line per request, `GET /health/ 200 …`, text or JSON).
# Exit status 0 when every replica answered some. Hold the podman lock while it runs.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=${VERIFY_STATE_DIR:-/var/tmp/verify-containers}
export CONTAINERS_CONF=$STATE/containers.conf PATH="$STATE/shim:$STATE/venv/bin:$PATH"
export COMPOSE_PROJECT_NAME=shop_scale_check
PORT=${API_PORT:-8000}
REQUESTS=30

cleanup() {
    docker compose down -v -t 2 >/dev/null 2>&1 || true
    # podman-compose's `down` leaves the extra replicas (and so the network) behind; they
    # would also keep the podman lock's file descriptor open. Two passes: dependents first.
    local left _
    for _ in 1 2; do
        left=$(podman ps -aq --filter "label=io.podman.compose.project=$COMPOSE_PROJECT_NAME")
        # shellcheck disable=SC2086  # one id per word
        [ -z "$left" ] || podman rm -f -t 2 $left >/dev/null 2>&1 || true
    done
    podman network rm "${COMPOSE_PROJECT_NAME}_default" >/dev/null 2>&1 || true
    podman volume rm "${COMPOSE_PROJECT_NAME}_pgdata" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup
docker compose up -d --build --scale api=3 > "$STATE/scale-up.log" 2>&1 \
    || { tail -30 "$STATE/scale-up.log"; exit 1; }

replicas() {
    podman ps --filter "label=io.podman.compose.project=$COMPOSE_PROJECT_NAME" \
        --filter "label=com.docker.compose.service=$1" --format '{{.Names}}'
}
healthy() { # podman here runs no healthchecks by itself: run them until they pass
    local c deadline=$((SECONDS + 180))
    for c in "$@"; do
        until podman healthcheck run "$c" >/dev/null 2>&1; do
            [ $SECONDS -lt $deadline ] || { echo "$c never became healthy"; podman logs --tail 30 "$c"; exit 1; }
            sleep 2
        done
    done
}
mapfile -t APIS < <(replicas api)
[ "${#APIS[@]}" -eq 3 ] || { echo "expected 3 api replicas, found: ${APIS[*]:-none}"; exit 1; }
healthy "${APIS[@]}"
# nginx resolves `api` when it starts; podman-compose does not wait for the replicas to
# be healthy first, so reload it now, as the README says to after scaling.
mapfile -t PROXY < <(replicas nginx)
podman start "${PROXY[@]}" >/dev/null
healthy "${PROXY[@]}"
podman exec "${PROXY[0]}" nginx -s reload
sleep 1

for _ in $(seq "$REQUESTS"); do
    curl -fsS -o /dev/null "http://127.0.0.1:$PORT/health/"
done
status=0
for c in "${APIS[@]}"; do
    served=$(podman logs "$c" 2>&1 | grep -c 'GET /health/ 200 ' || true)
    echo "$c served $served of $REQUESTS requests"
    [ "$served" -gt 0 ] || status=1
done
[ $status -eq 0 ] && echo "scale check: the 3 replicas share the requests" || echo "scale check: FAILED"
exit $status
