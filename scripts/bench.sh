#!/usr/bin/env bash
# The eventwire hub side by side with nchan (nginx-light + libnginx-mod-nchan) and a plain
# node:http SSE hub (tests/bench/node-sse.mjs), measured by one tool (`eventwire-load bench`)
# in one run. See docs/BENCHMARKS.md for what each scenario does and the numbers.
#
# Every server is pinned to CPU0 (taskset -c 0) and the tool to CPU1, and the scenarios run
# interleaved (eventwire, nchan, node, eventwire, nchan, node, ...) so a noisy shared machine
# weighs on all three alike; each figure is the median of --reps runs. Each run gets a fresh
# server on a free port. Raw JSON (one file per run) and the tables go to --out.
#
# Usage: scripts/bench.sh [--quick] [--sizes 1000,10000,19000] [--reps 3]
#          [--groups broadcast,unicast,storm,slow,cores,redis] [--servers eventwire,nchan,node]
#          [--out DIR] [--release | --debug] [--chart FILE.svg] [--nice N]
#   --sizes   connections per size, each optionally with its own repetitions: 1000:3,19000:1
#   --quick   a smoke of about a minute: 100 connections, one repetition, one-second phases,
#             debug builds (what scripts/test.sh runs); fails if any run fails its checks.
#   --nice N  run the servers, Redis and the tool at this niceness (e.g. -10 when other work on
#             a shared machine would otherwise take their cores; the same for all three).
#   EVENTWIRE_HUB_BIN=/path/to/eventwire  measures that hub binary instead of building one.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

QUICK=0
SIZES="1000,10000,19000"
REPS=3
GROUPS_="broadcast,unicast,storm,slow,cores,redis"
SERVERS="eventwire,nchan,node"
OUT=""
PROFILE=""
CHART=""
NICE=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --sizes) SIZES="$2"; shift ;;
    --reps) REPS="$2"; shift ;;
    --groups) GROUPS_="$2"; shift ;;
    --servers) SERVERS="$2"; shift ;;
    --out) OUT="$2"; shift ;;
    --release) PROFILE=release ;;
    --debug) PROFILE=debug ;;
    --chart) CHART="$2"; shift ;;
    --nice) NICE="$2"; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done

# What each run of the tool does, by mode. Full runs: 5 s latency phases (10 or 50 events per
# phase, each to every connection), ~1M deliveries per burst; the storm and the slow readers
# at 2 events/s, which no server is saturated by at 19k connections (10/s is 190k deliveries/s
# there, more than nchan or node deliver on one core): they measure the resync and the
# readers, not a backlog. A saturated server may take minutes to drain a phase, hence the
# long settle and run bounds.
if [[ $QUICK == 1 ]]; then
  SIZES=100
  REPS=1
  PROFILE="${PROFILE:-debug}"
  PHASE_ARGS=(--phase-secs 1 --burst-deliveries 20000 --idle-secs 0.5 --settle-secs 20)
  UNICAST_ARGS=(--unicast-secs 1)
  STORM_ARGS=(--storm-before-secs 1 --storm-after-secs 1 --storm-rate 2)
  SLOW_ARGS=(--slow-secs 1 --slow-rate 2)
  RUN_TIMEOUT=60
else
  PROFILE="${PROFILE:-release}"
  PHASE_ARGS=(--phase-secs 5 --burst-deliveries 1000000 --idle-secs 2 --settle-secs 180)
  UNICAST_ARGS=(--unicast-secs 5)
  STORM_ARGS=(--storm-before-secs 3 --storm-after-secs 5 --storm-rate 2)
  SLOW_ARGS=(--slow-secs 5 --slow-rate 2)
  RUN_TIMEOUT=900
fi
IFS=, read -r -a SIZE_LIST <<<"$SIZES"
IFS=, read -r -a GROUP_LIST <<<"$GROUPS_"
IFS=, read -r -a SERVER_LIST <<<"$SERVERS"
has_group() { [[ ",$GROUPS_," == *",$1,"* ]]; }

step() { printf '\n==> %s\n' "$*" >&2; }

SUDO=""
if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi
apt_install() {
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

step "rivals: nginx-light + libnginx-mod-nchan, node, redis-server, taskset"
NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so
if [[ ",$SERVERS," == *",nchan,"* ]] && { ! command -v nginx >/dev/null || [[ ! -f $NCHAN_MODULE ]]; }; then
  apt_install nginx-light libnginx-mod-nchan
fi
if has_group redis && ! command -v redis-server >/dev/null; then
  apt_install redis-server
fi
command -v taskset >/dev/null || apt_install util-linux
command -v node >/dev/null || { echo "node is needed (tests/bench/node-sse.mjs)" >&2; exit 1; }

step "building the hub and eventwire-load ($PROFILE)"
PROFILE_FLAG=()
[[ $PROFILE == release ]] && PROFILE_FLAG=(--release)
if [[ -n "${EVENTWIRE_HUB_BIN:-}" ]]; then
  cargo build --locked -q "${PROFILE_FLAG[@]}" -p eventwire-load --bin eventwire-load
  HUB_BIN="$EVENTWIRE_HUB_BIN"
else
  cargo build --locked -q "${PROFILE_FLAG[@]}" -p eventwire-server --bin eventwire -p eventwire-load --bin eventwire-load
  HUB_BIN="$TARGET_DIR/$PROFILE/eventwire"
fi
LOAD="$TARGET_DIR/$PROFILE/eventwire-load"
# Private copies: another build in this checkout must not swap a binary in the middle of a run.
WORK="$(mktemp -d)"
cp "$HUB_BIN" "$WORK/eventwire"
cp "$LOAD" "$WORK/eventwire-load"
HUB_BUILT="$(date -u -r "$HUB_BIN" +%FT%TZ)"
HUB_BIN="$WORK/eventwire"
LOAD="$WORK/eventwire-load"

if [[ -z "$OUT" ]]; then
  OUT="$TARGET_DIR/bench/$(date -u +%Y%m%dT%H%M%SZ)$([[ $QUICK == 1 ]] && echo -quick)"
fi
mkdir -p "$OUT/raw"

# The machine and versions, for docs/BENCHMARKS.md.
{
  echo "date: $(date -u +%FT%TZ)"
  echo "cpu: $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n1) x $(nproc)"
  echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
  echo "kernel: $(uname -sr)"
  echo "open files: $(ulimit -n)"
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*nginx\///')"
  echo "nchan: $(dpkg-query -W -f='${Version}' libnginx-mod-nchan 2>/dev/null || echo '?')"
  echo "node: $(node --version)"
  echo "redis: $(redis-server --version 2>/dev/null | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
  echo "hub: ${EVENTWIRE_HUB_BIN:-$TARGET_DIR/$PROFILE/eventwire} ($PROFILE, built $HUB_BUILT), checkout at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- server 2>/dev/null || echo ' + uncommitted server/ changes')"
  echo "tool: eventwire-load ($PROFILE)"
  echo "sizes (connections:repetitions): $SIZES (default repetitions $REPS); groups: $GROUPS_; niceness: $NICE"
} | tee "$OUT/machine.txt" >&2

# --- servers ------------------------------------------------------------------------------
SRV_PID=""      # the process measured (hub, nginx worker, node)
SRV_KILL=()     # what to stop
SRV_PORT=""
REDIS_PID=""

# exec_pinned CPUS COMMAND...: becomes COMMAND, pinned to CPUS at --nice. Only ever run in
# the background (`exec_pinned ... &`), so that $! is the server's own pid.
exec_pinned() {
  local cpus="$1"
  shift
  exec nice -n "$NICE" taskset -c "$cpus" "$@"
}

free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

wait_port() { # port pid: until something accepts on the port, or the pid dies (10 s)
  for _ in $(seq 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

stop_pid() {
  local pid="$1"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

stop_server() {
  local pid
  for pid in "${SRV_KILL[@]}"; do stop_pid "$pid"; done
  SRV_KILL=()
  SRV_PID=""
}

stop_redis() {
  if [[ -n "$REDIS_PID" ]]; then stop_pid "$REDIS_PID"; fi
  REDIS_PID=""
}

cleanup() {
  stop_server
  stop_redis
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_server KIND CPUS [hub flags...]: a fresh server on a free port, pinned to CPUS.
start_server() {
  local kind="$1" cpus="$2"
  shift 2
  stop_server
  SRV_PORT="$(free_port)"
  local log="$WORK/$kind.log"
  case "$kind" in
    eventwire)
      # Access logs off for every server (nginx: access_log off); limits raised for 19k
      # streams: every stream, any number per user, 400 pending + 19,500 streams < 20,000 files.
      RUST_LOG=warn exec_pinned "$cpus" "$HUB_BIN" --dev --listen "127.0.0.1:$SRV_PORT" \
        --max-connections 19500 --max-connections-per-user 19500 \
        --max-connections-per-client 16 --max-pending-connections 400 \
        --heartbeat-secs 15 --monitor-secs 0 "$@" >"$log" 2>&1 &
      SRV_PID=$!
      SRV_KILL=("$SRV_PID")
      ;;
    nchan)
      local dir="$WORK/nginx-$SRV_PORT"
      mkdir -p "$dir/tmp"
      sed "s/@PORT@/$SRV_PORT/" tests/bench/nchan.conf >"$dir/nginx.conf"
      exec_pinned "$cpus" nginx -c "$dir/nginx.conf" -p "$dir" >"$log" 2>&1 &
      local master=$!
      SRV_KILL=("$master")
      SRV_PID=""
      for _ in $(seq 100); do
        SRV_PID="$(pgrep -P "$master" | head -n1 || true)"
        [[ -n "$SRV_PID" ]] && break
        sleep 0.1
      done
      ;;
    node)
      exec_pinned "$cpus" node tests/bench/node-sse.mjs --port "$SRV_PORT" >"$log" 2>&1 &
      SRV_PID=$!
      SRV_KILL=("$SRV_PID")
      ;;
  esac
  if [[ -z "$SRV_PID" ]] || ! wait_port "$SRV_PORT" "${SRV_KILL[0]}"; then
    echo "$kind did not start:" >&2
    cat "$log" >&2
    exit 1
  fi
}

start_redis() {
  stop_redis
  local port
  port="$(free_port)"
  exec_pinned 0 redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    >"$WORK/redis.log" 2>&1 &
  REDIS_PID=$!
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  REDIS_URL="redis://127.0.0.1:$port/0"
}

# --- runs ---------------------------------------------------------------------------------
FAILED=()
RUNS=0
# bench FILE TOOL-CPUS SERVER ARGS...: one tool run against the started server.
bench() {
  local file="$1" cpus="$2" server="$3"
  shift 3
  local load
  load="$(cut -d' ' -f1-3 /proc/loadavg)"
  RUNS=$((RUNS + 1))
  printf '[%s] %-44s load %s\n' "$(date -u +%T)" "$(basename "$file" .json)" "$load" >&2
  if timeout --kill-after=10 "$RUN_TIMEOUT" nice -n "$NICE" taskset -c "$cpus" "$LOAD" --hub "127.0.0.1:$SRV_PORT" \
    --sources 127.0.0.2-127.0.0.254 bench --server "$server" --server-pid "$SRV_PID" "$@" \
    >"$file" 2>"${file%.json}.log"; then
    :
  else
    FAILED+=("$(basename "$file" .json)")
    grep -E 'FAIL|error' "${file%.json}.log" | head -n 5 >&2 || true
  fi
  if ! kill -0 "$SRV_PID" 2>/dev/null; then
    FAILED+=("$(basename "$file" .json) (server died)")
    tail -n 5 "$WORK"/*.log >&2 || true
  fi
}

scenario_args() { # group -> tool arguments
  case "$1" in
    broadcast) echo "--scenario broadcast ${PHASE_ARGS[*]}" ;;
    unicast) echo "--scenario unicast ${PHASE_ARGS[*]} ${UNICAST_ARGS[*]}" ;;
    storm) echo "--scenario storm ${PHASE_ARGS[*]} ${STORM_ARGS[*]}" ;;
    slow) echo "--scenario slow ${PHASE_ARGS[*]} ${SLOW_ARGS[*]}" ;;
  esac
}

START=$(date +%s)
for entry in "${SIZE_LIST[@]}"; do
  size="${entry%%:*}"
  REPS_HERE="$REPS"
  [[ "$entry" == *:* ]] && REPS_HERE="${entry#*:}"
  for group in "${GROUP_LIST[@]}"; do
    case "$group" in
      broadcast|unicast|storm|slow)
        step "$group, $size connections: ${SERVERS//,/, } interleaved, $REPS_HERE repetition(s)"
        read -r -a args <<<"$(scenario_args "$group")"
        for rep in $(seq "$REPS_HERE"); do
          for server in "${SERVER_LIST[@]}"; do
            start_server "$server" 0
            bench "$OUT/raw/$size-$group-$server-$rep.json" 1 "$server" \
              --connections "$size" --label "$group" "${args[@]}"
            stop_server
          done
        done
        ;;
      cores)
        [[ ",$SERVERS," == *",eventwire,"* ]] || continue
        step "both cores, $size connections: hub burst on one core (tool on the other) and on two (tool shares them)"
        for rep in $(seq "$REPS_HERE"); do
          start_server eventwire 0
          bench "$OUT/raw/$size-cores-eventwire-one-$rep.json" 1 eventwire \
            --connections "$size" --label one-core --phases burst "${PHASE_ARGS[@]}"
          start_server eventwire 0,1
          bench "$OUT/raw/$size-cores-eventwire-two-$rep.json" 0,1 eventwire \
            --connections "$size" --label two-cores --phases burst "${PHASE_ARGS[@]}"
          stop_server
        done
        ;;
      redis)
        [[ ",$SERVERS," == *",eventwire,"* ]] || continue
        step "hub through Redis, $size connections (redis-server pinned to CPU0 beside the hub)"
        for rep in $(seq "$REPS_HERE"); do
          start_redis
          start_server eventwire 0 --redis-url "$REDIS_URL"
          bench "$OUT/raw/$size-redis-eventwire-$rep.json" 1 eventwire \
            --connections "$size" --label redis --phases lat2c,lat2o,lat10c,lat10o "${PHASE_ARGS[@]}"
          stop_server
          stop_redis
        done
        ;;
      *) echo "unknown group: $group" >&2; exit 2 ;;
    esac
  done
done
ELAPSED=$(($(date +%s) - START))

step "summary ($RUNS runs in $((ELAPSED / 60)) min $((ELAPSED % 60)) s; raw JSON in $OUT/raw)"
SUMMARY_ARGS=("$OUT")
[[ -n "$CHART" ]] && SUMMARY_ARGS+=(--chart "$CHART")
node tests/bench/summarize.mjs "${SUMMARY_ARGS[@]}" | tee "$OUT/tables.md"

if [[ ${#FAILED[@]} -gt 0 ]]; then
  echo
  echo "runs that failed a check (see $OUT/raw/*.log): ${FAILED[*]}"
  [[ $QUICK == 1 ]] && exit 1
fi
exit 0
