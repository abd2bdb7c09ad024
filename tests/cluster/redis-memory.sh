#!/usr/bin/env bash
# What the replay history costs in Redis: for each payload size, publishes COUNT events (no
# target, no idempotency key) whose data is a JSON string of exactly that many bytes, then
# prints `MEMORY USAGE {prefix}:events` (every entry counted: SAMPLES 0) and the change in
# INFO memory's used_memory. Starts its own redis-server (free port, `--save ''
# --appendonly yes`, temp dir) and one hub per size (a prefix of its own), and stops them.
#
#   tests/cluster/redis-memory.sh [HUB_BIN] [COUNT] [SIZES...]
#   tests/cluster/redis-memory.sh target/release/eventwire 1000 100 1000
set -euo pipefail
cd "$(dirname "$0")/../.."
HUB_BIN="${1:-target/release/eventwire}"
COUNT="${2:-1000}"
shift 2 2>/dev/null || shift $#
SIZES=("$@")
[[ ${#SIZES[@]} -gt 0 ]] || SIZES=(100 1000)

RUN="$(mktemp -d -t eventwire-redis-memory.XXXXXX)"
REDIS_PID=""
HUB_PID=""
stop() {
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}
cleanup() {
  [[ -n "$HUB_PID" ]] && stop "$HUB_PID"
  [[ -n "$REDIS_PID" ]] && stop "$REDIS_PID"
  rm -rf "$RUN"
}
trap cleanup EXIT

port=""
for _ in 1 2 3 4 5; do
  candidate=$((20000 + RANDOM % 40000))
  (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null && continue
  redis-server --port "$candidate" --bind 127.0.0.1 --save '' --appendonly yes --dir "$RUN" \
    --daemonize no --logfile "$RUN/redis.log" &
  REDIS_PID=$!
  for _ in $(seq 100); do
    [[ "$(redis-cli -p "$candidate" ping 2>/dev/null)" == PONG ]] && { port="$candidate"; break 2; }
    kill -0 "$REDIS_PID" 2>/dev/null || break
    sleep 0.1
  done
  stop "$REDIS_PID"
  REDIS_PID=""
done
[[ -n "$port" ]] || { echo "redis-server did not start" >&2; exit 1; }
cli() { redis-cli -p "$port" "$@"; }
used_memory() { cli INFO memory | sed -n 's/^used_memory:\([0-9]*\).*/\1/p'; }
echo "redis-server $(redis-server --version | awk '{print $3}') on port $port; $COUNT events per size"

for size in "${SIZES[@]}"; do
  prefix="mem$size"
  "$HUB_BIN" --dev --listen 127.0.0.1:0 --redis-url "redis://127.0.0.1:$port" --redis-prefix "$prefix" \
    --instance "memory-$size" --history-size "$COUNT" >"$RUN/hub.log" 2>&1 &
  HUB_PID=$!
  addr=""
  for _ in $(seq 300); do
    addr="$(sed -n 's|.*listening on http://\([0-9.:]*\).*|\1|p' "$RUN/hub.log" | head -n 1)"
    [[ -n "$addr" ]] && break
    sleep 0.1
  done
  [[ -n "$addr" ]] || { cat "$RUN/hub.log" >&2; exit 1; }
  sleep 3 # the instance's first report is written; used_memory is steady
  before="$(used_memory)"
  # Batches under the hub's 64 KiB body limit; data is a JSON string of exactly $size bytes
  # (quotes included).
  node -e '
    const [base, count, size] = [process.argv[1], Number(process.argv[2]), Number(process.argv[3])];
    const data = "x".repeat(size - 2);
    const batch = Math.max(1, Math.min(100, Math.floor(60000 / (size + 40))));
    (async () => {
      for (let sent = 0; sent < count; sent += batch) {
        const n = Math.min(batch, count - sent);
        const body = JSON.stringify(Array.from({ length: n }, () => ({ event: "notification", data })));
        const res = await fetch(`${base}/publish`, { method: "POST", headers: { "content-type": "application/json" }, body });
        if (res.status !== 200) throw new Error(`${res.status} ${await res.text()}`);
      }
    })().catch((e) => { console.error(e); process.exit(1); });
  ' "http://$addr" "$COUNT" "$size"
  after="$(used_memory)"
  entries="$(cli XLEN "$prefix:events")"
  usage="$(cli MEMORY USAGE "$prefix:events" SAMPLES 0)"
  usage5="$(cli MEMORY USAGE "$prefix:events")"
  printf '%5d-byte data: XLEN %s; MEMORY USAGE %s bytes (%s per event; default SAMPLES 5: %s); used_memory +%s bytes (%s per event)\n' \
    "$size" "$entries" "$usage" "$((usage / entries))" "$usage5" "$((after - before))" "$(((after - before) / entries))"
  stop "$HUB_PID"
  HUB_PID=""
done
