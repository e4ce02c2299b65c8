#!/usr/bin/env bash
# Puts stand-ins for the official nginx and redis images docker-compose.yml uses into
# podman storage, for verify-containers.sh (which only makes python and postgres ones).
# Built from Debian bookworm's packages on the tool's base image, tagged with the
# official names, and behaving like the official images in what the stack uses:
#   nginx:1.27-bookworm  /etc/nginx/templates/*.template rendered with envsubst (only the
#                        variables that are set) into /etc/nginx/conf.d/, then
#                        `nginx -g 'daemon off;'`; logs to stdout/stderr; curl inside;
#                        Debian's sites-enabled/default removed (the image has none).
#   redis:7-bookworm     `redis-server` in the foreground, protected mode off (as the
#                        official build), redis-cli inside.
# (Debian's nginx is 1.22: the template uses nothing newer.)
# Usage: .ci/container-standins.sh   (needs the tool's localhost/verify/bookworm-base image)
set -euo pipefail

BASE=localhost/verify/bookworm-base:latest
STATE=${VERIFY_STATE_DIR:-/var/tmp/verify-containers}
# The tool's engine settings (runc, ulimits this machine allows).
[ -f "$STATE/containers.conf" ] && export CONTAINERS_CONF=$STATE/containers.conf

podman image exists "$BASE" || {
    echo "missing $BASE: run verify-containers.sh once first (it builds it)" >&2
    exit 1
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

standin() { # standin OFFICIAL-NAME DIR
    if podman image exists "$1"; then
        echo "stand-in $1: present"
    else
        podman build -q --pull=never -t "$1" "$2" >/dev/null
        echo "stand-in $1: built"
    fi
}

mkdir -p "$work/nginx"
cat > "$work/nginx/docker-entrypoint.sh" <<'SH'
#!/bin/sh
# Like the official image's entrypoint: render the templates, then run the command.
set -e
if [ -d /etc/nginx/templates ]; then
    vars=$(env | sed -n 's/^\([A-Za-z_][A-Za-z0-9_]*\)=.*/${\1}/p' | tr '\n' ' ')
    for template in /etc/nginx/templates/*.template; do
        [ -f "$template" ] || continue
        name=$(basename "$template" .template)
        envsubst "$vars" < "$template" > "/etc/nginx/conf.d/$name"
        echo "rendered $template -> /etc/nginx/conf.d/$name"
    done
fi
exec "$@"
SH
cat > "$work/nginx/Containerfile" <<EOF2
FROM $BASE
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      nginx-light gettext-base curl \\
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/default \\
 && ln -sf /dev/stdout /var/log/nginx/access.log \\
 && ln -sf /dev/stderr /var/log/nginx/error.log
COPY docker-entrypoint.sh /docker-entrypoint.sh
RUN chmod +x /docker-entrypoint.sh
EXPOSE 80
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/docker-entrypoint.sh"]
CMD ["nginx", "-g", "daemon off;"]
EOF2
standin docker.io/library/nginx:1.27-bookworm "$work/nginx"

mkdir -p "$work/redis"
cat > "$work/redis/docker-entrypoint.sh" <<'SH'
#!/bin/sh
# The official image is built with protected mode off: other containers may connect.
set -e
if [ "$1" = redis-server ]; then
    shift
    exec redis-server --protected-mode no "$@"
fi
exec "$@"
SH
cat > "$work/redis/Containerfile" <<EOF2
FROM $BASE
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      redis-server redis-tools \\
 && rm -rf /var/lib/apt/lists/*
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN chmod +x /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["redis-server"]
EOF2
standin docker.io/library/redis:7-bookworm "$work/redis"
