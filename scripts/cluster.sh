#!/usr/bin/env bash
# Runs eventwire as a cluster on one machine: a private redis-server, three hub instances
# sharing it (docs/SCALING.md), and nginx in front as the load balancer (round robin, no
# stickiness), serving the demo pages at http://127.0.0.1:8080/client and /admin.
#
#   - Debian's redis-server and nginx-light are installed if missing. Redis runs on a free port
#     with `--save '' --appendonly yes` in a temporary directory; nginx runs with its own config
#     (deploy/nginx/nginx.conf + eventwire.conf, templated for the ports here, checked with
#     `nginx -t`), never the system's.
#   - The hub and the npm package the pages use are built by `scripts/demo.sh --build-only`
#     (the `demo` cargo profile); with EVENTWIRE_HUB_BIN set, that binary runs and nothing is
#     built (the npm package must be built already).
#   - The instances (hub-1, hub-2, hub-3) run in dev mode on ports the kernel picks.
#
# Prints each piece's address and pid, then the URL once everything listens. Kill an
# instance (`kill -9 PID`) to watch its clients move to the others through nginx; Ctrl-C (or
# SIGTERM) stops everything. Logs go to a temporary directory (printed), removed on exit.
#
# Usage: scripts/cluster.sh [extra eventwire flags, given to every instance]
#   EVENTWIRE_LISTEN=host:port   nginx's address (default 127.0.0.1:8080)
#   EVENTWIRE_HUB_BIN=path       run this hub binary, build nothing
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
LISTEN="${EVENTWIRE_LISTEN:-127.0.0.1:8080}"
INSTANCES=(hub-1 hub-2 hub-3)

log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# Whether something accepts TCP connections on 127.0.0.1:$1 (or host:port in $1).
listening() {
  local addr="$1" host port
  if [[ "$addr" == *:* ]]; then host="${addr%:*}"; port="${addr##*:}"; else host=127.0.0.1; port="$addr"; fi
  (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null
}

apt_install() { # command package
  command -v "$1" >/dev/null && return 0
  log "installing $2 from Debian"
  local sudo=""
  if [[ "$(id -u)" != 0 ]]; then sudo="sudo"; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}

apt_install redis-server redis-server
apt_install redis-cli redis-tools
apt_install nginx nginx-light

if [[ -n "${EVENTWIRE_HUB_BIN:-}" ]]; then
  HUB_BIN="$EVENTWIRE_HUB_BIN"
  [[ -f npm/dist/index.js && -d npm/wasm ]] || die "npm/ is not built (scripts/build-npm.sh)"
else
  bash scripts/demo.sh --build-only
  HUB_BIN="$TARGET_DIR/demo/eventwire" # where demo.sh's `demo` profile puts it
fi
[[ -x "$HUB_BIN" ]] || die "no hub binary at $HUB_BIN"
if listening "$LISTEN"; then die "something already listens on $LISTEN (set EVENTWIRE_LISTEN)"; fi

RUN="$(mktemp -d -t eventwire-cluster.XXXXXX)"
chmod 755 "$RUN" # nginx's workers (nobody, when started as root) reach their temp dirs in it
HUB_PIDS=()
NGINX_PID=""
REDIS_PID=""

# Stops one process: SIGTERM, then up to 10 s for it to exit, then SIGKILL.
stop() {
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  trap - EXIT INT TERM
  log "stopping"
  [[ -n "$NGINX_PID" ]] && stop "$NGINX_PID"
  for pid in "${HUB_PIDS[@]}"; do stop "$pid"; done
  [[ -n "$REDIS_PID" ]] && stop "$REDIS_PID"
  wait 2>/dev/null || true
  rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Redis, on a port nothing listens on (a port taken between the check and the start makes
# redis-server exit at once: then another one is tried).
mkdir -p "$RUN/redis"
for _ in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 40000))
  listening "$port" && continue
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly yes --dir "$RUN/redis" \
    --daemonize no --logfile "$RUN/redis.log" &
  REDIS_PID=$!
  for _ in $(seq 100); do
    kill -0 "$REDIS_PID" 2>/dev/null || break
    [[ "$(redis-cli -p "$port" ping 2>/dev/null)" == PONG ]] && break 2
    sleep 0.1
  done
  stop "$REDIS_PID"
  REDIS_PID=""
done
[[ -n "$REDIS_PID" ]] || die "redis-server did not start (log: $RUN/redis.log)"
REDIS_URL="redis://127.0.0.1:$port"
echo "cluster: redis $REDIS_URL (pid $REDIS_PID)"

# The instances. Each prints "listening on http://ADDR" on stdout once bound.
HUB_ADDRS=()
for name in "${INSTANCES[@]}"; do
  "$HUB_BIN" --dev --listen 127.0.0.1:0 --redis-url "$REDIS_URL" --instance "$name" \
    --demo demo --npm-dir npm "$@" >"$RUN/$name.log" 2>&1 &
  HUB_PIDS+=($!)
done
for i in "${!INSTANCES[@]}"; do
  name="${INSTANCES[$i]}"
  addr=""
  for _ in $(seq 600); do
    addr="$(sed -n 's|.*listening on http://\([0-9.:]*\).*|\1|p' "$RUN/$name.log" | head -n 1)"
    [[ -n "$addr" ]] && break
    kill -0 "${HUB_PIDS[$i]}" 2>/dev/null || break
    sleep 0.1
  done
  if [[ -z "$addr" ]]; then
    tail -n 20 "$RUN/$name.log" >&2
    die "$name did not start"
  fi
  HUB_ADDRS+=("$addr")
  echo "cluster: $name http://$addr (pid ${HUB_PIDS[$i]})"
done

# nginx, with the repository's config templated for these ports.
mkdir -p "$RUN/nginx"
cp deploy/nginx/nginx.conf "$RUN/nginx/nginx.conf"
sed -e "s|listen 127\.0\.0\.1:8080;|listen $LISTEN;|" \
  -e "s|server 127\.0\.0\.1:8081;|server ${HUB_ADDRS[0]};|" \
  -e "s|server 127\.0\.0\.1:8082;|server ${HUB_ADDRS[1]};|" \
  -e "s|server 127\.0\.0\.1:8083;|server ${HUB_ADDRS[2]};|" \
  deploy/nginx/eventwire.conf >"$RUN/nginx/eventwire.conf"
for want in "listen $LISTEN;" "${HUB_ADDRS[@]/#/server }"; do
  grep -qF "$want" "$RUN/nginx/eventwire.conf" || die "deploy/nginx/eventwire.conf: could not set \`$want\`"
done
NGINX=(nginx -c "$RUN/nginx/nginx.conf" -p "$RUN/nginx/" -e stderr)
"${NGINX[@]}" -t -q || die "nginx -t refused the config in $RUN/nginx"
"${NGINX[@]}" -g 'daemon off;' 2>"$RUN/nginx.log" &
NGINX_PID=$!
for _ in $(seq 100); do
  listening "$LISTEN" && break
  kill -0 "$NGINX_PID" 2>/dev/null || break
  sleep 0.1
done
if ! listening "$LISTEN"; then
  cat "$RUN/nginx.log" >&2
  die "nginx did not start on $LISTEN"
fi
echo "cluster: nginx http://$LISTEN (pid $NGINX_PID)"
echo "cluster: logs in $RUN (nginx/access.log names the instance that served each request)"
echo
echo "cluster: open http://$LISTEN/client (as many tabs as you like) and http://$LISTEN/admin"
echo "cluster: kill -9 an instance's pid to move its clients; Ctrl-C stops everything"

# Runs until nginx exits or a signal arrives (an instance or Redis going away is a fault to
# watch, not a reason to stop).
# On Ctrl-C nginx gets the SIGINT too and may exit (status 0) before the trap runs.
status=0
wait "$NGINX_PID" || status=$?
NGINX_PID=""
if [[ "$status" == 0 ]]; then exit 0; fi
die "nginx exited (status $status): $(tail -n 5 "$RUN/nginx.log")"
