# Shared by scripts/up.sh and scripts/test.sh: installing prerequisites and
# running a local redis-server. Sourced, not executed.

# The components, as cargo packages.
COMPONENTS=(darkroom-upload darkroom-status darkroom-files darkroom-processor darkroom-admin darkroom-worker darkroom-manage darkroom-fetcher darkroom-fetch-worker darkroom-web darkroom-notifier darkroom-notify-worker)

# The front process of the documented topology: every component with an
# HTTP route (component ids in spin.toml). The processor, the fetcher and
# the notifier (the Redis-triggered components) run on their own.
FRONT_COMPONENTS=(upload status manage files admin web)

log() {
  echo "==> [$(date +%H:%M:%S)] $*" >&2
}

redis_answers() {
  redis-cli -u "$1" ping >/dev/null 2>&1
}

# subscribers REDIS_URL CHANNEL: how many processes listen on CHANNEL.
subscribers() {
  { redis-cli -u "$1" --no-raw pubsub numsub "$2" 2>/dev/null || true; } | sed -n 2p | tr -dc 0-9
}

# ring_when_subscribed REDIS_URL CHANNEL PID BEFORE: once more than BEFORE
# processes listen on CHANNEL (PID's subscription), publishes one doorbell,
# so that jobs queued while no processor listened start at once.
ring_when_subscribed() {
  local url=$1 channel=$2 pid=$3 before=$4
  for _ in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || return 0
    if [ "$(subscribers "$url" "$channel")" -gt "$before" ] 2>/dev/null; then
      redis-cli -u "$url" publish "$channel" wake >/dev/null 2>&1 || true
      return 0
    fi
    sleep 0.1
  done
}

# supervise NAME REDIS_URL CHANNEL COMMAND...: runs COMMAND and starts it
# again whenever it exits (Spin ends a process whose Redis trigger lost its
# connection), after 1 s doubling to 30 s, back to 1 s after a minute of
# uptime; logs each restart with the exit status and whether Redis answers.
# Run it in the background; SIGTERM stops it and its child. It runs with
# errexit off: nothing that fails while Redis is down may end the loop.
supervise() {
  set +e +o pipefail
  local name=$1 url=$2 channel=$3
  shift 3
  local delay=1 restarts=0 child="" started status reason before
  trap 'if [ -n "$child" ]; then kill "$child" 2>/dev/null; wait "$child" 2>/dev/null; fi; exit 0' INT TERM
  while true; do
    started=$(date +%s)
    before=$(subscribers "$url" "$channel")
    "$@" &
    child=$!
    if [ "$name" != front ]; then
      ring_when_subscribed "$url" "$channel" "$child" "${before:-0}" &
    fi
    status=0
    wait "$child" || status=$?
    child=""
    if [ $(($(date +%s) - started)) -ge 60 ]; then delay=1; fi
    if redis_answers "$url"; then reason="Redis at $url answers"; else reason="Redis at $url does not answer"; fi
    restarts=$((restarts + 1))
    log "$name exited with status $status ($reason); restart #$restarts in ${delay}s"
    sleep "$delay" &
    wait $! || true
    delay=$((delay * 2 > 30 ? 30 : delay * 2))
  done
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_wasm_target() {
  if ! rustup target list --installed | grep -qx wasm32-wasip2; then
    echo "==> installing the wasm32-wasip2 Rust target" >&2
    rustup target add wasm32-wasip2
  fi
}

ensure_redis_server() {
  if ! command -v redis-server >/dev/null; then
    echo "==> installing redis-server (Debian/Ubuntu package)" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
}

build_components() {
  echo "==> building the components for wasm32-wasip2" >&2
  local args=()
  for c in "${COMPONENTS[@]}"; do args+=(-p "$c"); done
  cargo build --release --target wasm32-wasip2 "${args[@]}"
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# start_redis PORT [extra redis-server args...]: starts a redis-server in the
# background and waits until it answers; sets REDIS_PID.
start_redis() {
  local port=$1; shift
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no "$@" >/dev/null &
  REDIS_PID=$!
  for _ in $(seq 100); do
    if redis-cli -p "$port" ping >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "redis-server did not start on port $port" >&2
  return 1
}

# The S3-compatible server the suite's S3 pass runs against: s3s-fs, which
# verifies SigV4 signatures, from crates.io.
S3S_FS_VERSION=0.14.1

ensure_s3_server() {
  if ! command -v s3s-fs >/dev/null; then
    echo "==> installing s3s-fs $S3S_FS_VERSION (S3-compatible server, crates.io)" >&2
    # A debug build is plenty for tests and halves the install time.
    cargo install --locked --debug s3s-fs --version "$S3S_FS_VERSION" --features binary
  fi
}

# The real photographs the benchmarks and the browser test use (Debian's
# lomiri-wallpapers-20.04), unpacked under target/bench-photos once.
PHOTOS=target/bench-photos
ensure_photos() {
  if [ ! -d "$PHOTOS/usr/share/backgrounds" ]; then
    echo "==> fetching real photographs (Debian lomiri-wallpapers-20.04)" >&2
    mkdir -p "$PHOTOS"
    (cd "$PHOTOS" && apt-get download lomiri-wallpapers-20.04 2>/dev/null && dpkg -x lomiri-wallpapers-20.04_*.deb .)
  fi
}

# Headless Chromium (Debian's) and playwright-core (npm, pinned by
# tests/browser/package-lock.json; no browser download) for the page's test.
ensure_browser() {
  if [ ! -x /usr/bin/chromium ]; then
    echo "==> installing chromium (Debian package, for the browser test)" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  if [ ! -d tests/browser/node_modules/playwright-core ]; then
    echo "==> installing playwright-core (npm)" >&2
    (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
  fi
}

# free_port: a port nothing listens on, below the kernel's range for
# outgoing connections' local ports (32768 and up by default). A port in
# that range can be taken by any connection the suite opens between this
# check and the server's bind, which then fails: s3s-fs once did not start
# on 38026 that way.
free_port() {
  local low=32768
  if read -r low _ < /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null; then :; fi
  local span=$((low > 21024 ? low - 20000 - 1024 : 1024))
  local port=$((20000 + RANDOM % span))
  while port_in_use "$port"; do port=$((port + 1)); done
  echo "$port"
}

# start_s3 PORT ROOT ACCESS_KEY SECRET_KEY: starts s3s-fs with a `darkroom`
# bucket and waits until it listens; sets S3_PID.
start_s3() {
  mkdir -p "$2/darkroom"
  s3s-fs --host 127.0.0.1 --port "$1" --access-key "$3" --secret-key "$4" "$2" >/dev/null 2>&1 &
  S3_PID=$!
  for _ in $(seq 100); do
    if port_in_use "$1"; then return 0; fi
    sleep 0.1
  done
  echo "s3s-fs did not start on port $1" >&2
  return 1
}
