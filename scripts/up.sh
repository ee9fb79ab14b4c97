#!/usr/bin/env bash
# Runs Darkroom locally on http://127.0.0.1:3000 in the documented topology:
# four Spin processes sharing one state dir (.spin, where the default
# key-value store lives) and one Redis:
#
#   front      spin up -c upload -c status -c manage -c files -c admin -c web --listen 127.0.0.1:3000
#   processor  spin up -c processor        (a Redis trigger; no --listen)
#   fetcher    spin up -c fetcher          (a Redis trigger: ingest by URL)
#   notifier   spin up -c notifier         (a Redis trigger: webhooks and e-mail)
#
# Spin ends a process whose Redis connection breaks, so only the processor
# and the fetcher go down with Redis; the front keeps answering (status and
# files from storage, uploads 503 until Redis is back). This script
# supervises all four: a
# process that exits is started again with capped exponential backoff
# (1 s doubling to 30 s, reset after a minute of uptime), each restart
# logged with its reason; after each processor, fetcher or notifier start it rings
# that one's doorbell once, so work queued while none ran starts at once.
#
# Starts a redis-server on 127.0.0.1:6379 (append-only file in .spin/redis,
# so queued jobs survive its restarts) unless something listens there.
#
#   scripts/up.sh                    # front + supervised processor (default)
#   scripts/up.sh --single           # one `spin up` with every component
#   DARKROOM_RUNTIME=host scripts/up.sh   # Darkroom's wasmtime host instead of Spin
#   scripts/up.sh --runtime-config-file runtime-config/redis-kv.toml   # extra flags go to every process
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

single=false
if [ "${1:-}" = --single ]; then single=true; shift; fi
runtime=${DARKROOM_RUNTIME:-spin}
listen=${DARKROOM_LISTEN:-127.0.0.1:3000}
state_dir=.spin

ensure_wasm_target
case "$runtime" in
  spin)
    if ! command -v spin >/dev/null; then
      cat >&2 <<'MSG'
The Spin CLI is not installed. Install it (https://spinframework.dev/install):
  curl -fsSL https://spinframework.dev/downloads/install.sh | bash && sudo mv spin /usr/local/bin/
or run the components in Darkroom's test host instead:
  DARKROOM_RUNTIME=host scripts/up.sh
MSG
      exit 1
    fi
    spin build
    run=(spin up --from spin.toml)
    ;;
  host)
    build_components
    # The dev profile builds dependencies optimised and shares them with scripts/test.sh.
    cargo build -p darkroom-tests --bin darkroom-host
    run=(target/debug/darkroom-host --from spin.toml)
    ;;
  *) echo "DARKROOM_RUNTIME must be spin or host" >&2; exit 1 ;;
esac

redis_url=${SPIN_VARIABLE_REDIS_URL:-redis://127.0.0.1:6379}
channel=${SPIN_VARIABLE_QUEUE_CHANNEL:-darkroom-jobs}
fetch_channel=${SPIN_VARIABLE_FETCH_CHANNEL:-darkroom-fetches}
notify_channel=${SPIN_VARIABLE_NOTIFY_CHANNEL:-darkroom-notices}
mkdir -p "$state_dir/redis"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ "$redis_url" = redis://127.0.0.1:6379 ] && ! port_in_use 6379; then
  ensure_redis_server
  log "starting redis-server on 127.0.0.1:6379 (data in $state_dir/redis; stopped when this script ends)"
  start_redis 6379 --appendonly yes --appendfsync everysec --dir "$PWD/$state_dir/redis"
  pids+=("$REDIS_PID")
fi

if $single; then
  log "one process with every component (it ends if Redis goes away)"
  "${run[@]}" --listen "$listen" --state-dir "$state_dir" "$@"
  exit
fi

front=()
for c in "${FRONT_COMPONENTS[@]}"; do front+=(-c "$c"); done
supervise front "$redis_url" "$channel" "${run[@]}" "${front[@]}" --listen "$listen" --state-dir "$state_dir" "$@" &
pids+=($!)
supervise processor "$redis_url" "$channel" "${run[@]}" -c processor --state-dir "$state_dir" "$@" &
pids+=($!)
supervise fetcher "$redis_url" "$fetch_channel" "${run[@]}" -c fetcher --state-dir "$state_dir" "$@" &
pids+=($!)
supervise notifier "$redis_url" "$notify_channel" "${run[@]}" -c notifier --state-dir "$state_dir" "$@" &
pids+=($!)
log "front on http://$listen, processor on $redis_url channel $channel, fetcher on channel $fetch_channel, notifier on channel $notify_channel; Ctrl-C stops all four"
wait
