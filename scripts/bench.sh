#!/usr/bin/env bash
# Benchmarks the image pipeline on real photographs (Debian's
# lomiri-wallpapers packages) natively, in wasm under wasmtime, and against
# libvips' CLI (Debian's libvips-tools) side by side, and writes the figures
# with the machine and date into BENCHMARKS.md; then times the built
# components draining one queue with 1, 2 and 3 processors.
#
#   scripts/bench.sh [RUNS]        # default 5 runs per measurement, medians
#   scripts/bench.sh kinds [RUNS]  # only the table of every kind of input at
#                                  # 24 and 50 MP (default 3 runs)
#   scripts/bench.sh attempts      # only the table of every kind's whole
#                                  # attempt in the test host next to libvips
#                                  # in-process (pyvips, one thread)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
if [ "${1:-}" = kinds ]; then
  mode=kinds
  runs=${2:-3}
elif [ "${1:-}" = attempts ]; then
  mode=attempts
  runs=3
else
  mode=all
  runs=${1:-5}
fi

ensure_wasm_target
if ! command -v vipsthumbnail >/dev/null; then
  echo "==> installing libvips-tools (for the comparison)" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvips-tools >/dev/null
fi
if ! command -v jpegtran >/dev/null; then
  echo "==> installing libjpeg-turbo-progs (jpegtran, for the size comparison)" >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjpeg-turbo-progs >/dev/null
fi

photos=$PHOTOS
ensure_photos

# Every kind of input at 24 and 50 MP from a detailed photograph: the 20 MP
# Kleiber photograph resized by libvips (its 24 MP RGB PNG is 57 MB, larger
# than most photos' at that size).
photo_kinds() {
  local dir="$photos/photo-kinds" src="$photos/usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"
  if [ ! -f "$dir/50mp.gif" ]; then
    echo "==> making 24 and 50 MP inputs of every kind from a photograph" >&2
    mkdir -p "$dir"
    local tmp; tmp=$(mktemp -d)
    for size in 24mp:6000 50mp:8660; do
      local name=${size%%:*} width=${size##*:}
      vips thumbnail "$src" "$tmp/rgb.v" "$width" --size force --height $((width * 2 / 3))
      vips bandjoin_const "$tmp/rgb.v" "$tmp/rgba.v" 200
      vips colourspace "$tmp/rgb.v" "$tmp/grey.v" b-w
      vips cast "$tmp/rgb.v" "$tmp/c.v" ushort
      vips linear "$tmp/c.v" "$tmp/l.v" 257 0
      vips cast "$tmp/l.v" "$tmp/u.v" ushort
      vips copy "$tmp/u.v" "$tmp/rgb16.v" --interpretation rgb16
      vips jpegsave "$tmp/rgb.v" "$dir/$name-baseline.jpg" --Q 92
      vips jpegsave "$tmp/rgb.v" "$dir/$name-progressive.jpg" --Q 92 --interlace
      vips pngsave "$tmp/rgb.v" "$dir/$name-rgb.png"
      vips pngsave "$tmp/rgba.v" "$dir/$name-rgba.png"
      vips pngsave "$tmp/grey.v" "$dir/$name-grey.png"
      vips pngsave "$tmp/rgb16.v" "$dir/$name-rgb16.png"
      vips pngsave "$tmp/rgb.v" "$dir/$name-interlaced.png" --interlace
      vips webpsave "$tmp/rgb.v" "$dir/$name-lossy.webp" --Q 80
      vips webpsave "$tmp/rgba.v" "$dir/$name-lossy-alpha.webp" --Q 80
      vips webpsave "$tmp/rgb.v" "$dir/$name-lossless.webp" --lossless
      vips gifsave "$tmp/rgb.v" "$dir/$name.gif"
      rm -f "$tmp"/*.v
    done
    rm -rf "$tmp"
  fi
  for name in 24mp 50mp; do
    printf '%s\n' "$dir/$name"-{baseline,progressive}.jpg "$dir/$name"-{rgb,rgba,grey,rgb16,interlaced}.png \
      "$dir/$name"-{lossy,lossy-alpha,lossless}.webp "$dir/$name.gif"
  done
}

build_bench() {
  echo "==> building the benchmark (native and wasm32-wasip2) and the report runner" >&2
  cargo build --release -p darkroom-bench
  cargo build --release --target wasm32-wasip2 -p darkroom-bench
  cargo build --release -p darkroom-tests --bin darkroom-bench-report
}

if [ "$mode" = attempts ]; then
  if ! python3 -c 'import pyvips' 2>/dev/null; then
    echo "==> installing pyvips (PyPI; libvips in-process, for the comparison)" >&2
    python3 -m pip install -q pyvips==3.2.0
  fi
  ensure_redis_server
  build_components
  mapfile -t inputs < <(photo_kinds | grep /24mp)
  redis_port=$(free_port)
  start_redis "$redis_port"
  trap 'kill "$REDIS_PID" 2>/dev/null || true' EXIT
  echo "==> every kind's attempt in the test host, next to libvips in-process" >&2
  attempts_table=$(DARKROOM_BENCH_VIPS_JOB="$PWD/scripts/vips_job.py" DARKROOM_TEST_KV=sqlite \
    DARKROOM_TEST_REDIS_URL="redis://127.0.0.1:$redis_port" \
    cargo bench -q -p darkroom-tests --profile dev --bench attempt -- "${inputs[@]/#/$PWD/}")
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
  {
    sed '/^<!-- attempts:start -->/,$d' BENCHMARKS.md
    echo "<!-- attempts:start -->"
    echo "Measured $(date -u +%Y-%m-%d) on ${cpu:-unknown CPU}, $(nproc) cores, $(rustc --version | cut -d' ' -f1-2), libvips $(python3 -c 'import pyvips; print(pyvips.version(0), pyvips.version(1), pyvips.version(2), sep=".")') through pyvips $(python3 -c 'import pyvips; print(pyvips.__version__)'); medians of $runs runs."
    echo
    echo "$attempts_table"
    echo "<!-- attempts:end -->"
    sed '1,/^<!-- attempts:end -->/d' BENCHMARKS.md
  } > BENCHMARKS.md.new
  mv BENCHMARKS.md.new BENCHMARKS.md
  echo "$attempts_table"
  exit 0
fi
if [ "$mode" = kinds ]; then
  build_bench
  mapfile -t inputs < <(photo_kinds)
  kinds_table=$(DARKROOM_BENCH_TABLE_ONLY=1 ./target/release/darkroom-bench-report "$runs" "${inputs[@]}")
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
  {
    sed '/^<!-- kinds:start -->/,$d' BENCHMARKS.md
    echo "<!-- kinds:start -->"
    echo "Measured $(date -u +%Y-%m-%d) on ${cpu:-unknown CPU}, $(nproc) cores, $(rustc --version | cut -d' ' -f1-2), $(vips --version 2>/dev/null || echo 'no libvips'); medians of $runs runs."
    echo
    echo "$kinds_table"
    echo "<!-- kinds:end -->"
    sed '1,/^<!-- kinds:end -->/d' BENCHMARKS.md
  } > BENCHMARKS.md.new
  mv BENCHMARKS.md.new BENCHMARKS.md
  echo "$kinds_table"
  exit 0
fi
set -- "$photos"/usr/share/backgrounds/{Painting-Colors_by__herobrine7gamer,Kleiber_by_Lukas_Baubkus,Infinite-Sea_by_Aury88,Fossa_by_Jasper_Roks}.jpg

# The same 24 MP photograph in every other kind of input, for the memory
# each kind costs (crates/imaging/src/cost.rs is calibrated on these).
kinds="$photos/kinds"
if [ ! -f "$kinds/painting-lossy-alpha.webp" ]; then
  echo "==> converting the 24 MP photograph to PNG, WebP and GIF variants" >&2
  mkdir -p "$kinds"
  src="$1"
  tmp=$(mktemp -d)
  vips copy "$src" "$tmp/rgb.v"
  vips bandjoin_const "$tmp/rgb.v" "$tmp/rgba.v" 200
  vips cast "$tmp/rgb.v" "$tmp/c.v" ushort
  vips linear "$tmp/c.v" "$tmp/l.v" 257 0
  vips cast "$tmp/l.v" "$tmp/u.v" ushort
  vips copy "$tmp/u.v" "$tmp/rgb16.v" --interpretation rgb16
  vips colourspace "$tmp/rgb.v" "$tmp/grey.v" b-w
  vips pngsave "$tmp/rgb.v" "$kinds/painting-rgb.png"
  vips pngsave "$tmp/rgba.v" "$kinds/painting-rgba.png"
  vips pngsave "$tmp/rgb16.v" "$kinds/painting-rgb16.png"
  vips pngsave "$tmp/grey.v" "$kinds/painting-grey.png"
  vips webpsave "$tmp/rgb.v" "$kinds/painting-lossless.webp" --lossless
  vips gifsave "$tmp/rgb.v" "$kinds/painting.gif"
  vips webpsave "$tmp/rgb.v" "$kinds/painting-lossy.webp" --Q 80
  vips webpsave "$tmp/rgba.v" "$kinds/painting-lossy-alpha.webp" --Q 80
  rm -rf "$tmp"
fi
set -- "$@" "$kinds"/painting-{rgb,rgba,rgb16,grey}.png "$kinds"/painting-{lossy,lossy-alpha,lossless}.webp "$kinds"/painting.gif

build_bench

table=$(./target/release/darkroom-bench-report "$runs" "$@")

# Queue throughput: the built components in the test host, 1 to 3 processors
# sharing one queue and one Redis server.
ensure_redis_server
build_components
echo "==> queue throughput with 1, 2 and 3 processors" >&2
redis_port=$(free_port)
start_redis "$redis_port"
trap 'kill "$REDIS_PID" 2>/dev/null || true' EXIT
queue_photo="$PWD/$photos/usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"
queue_table=$(DARKROOM_TEST_REDIS_URL="redis://127.0.0.1:$redis_port" \
  cargo bench -q -p darkroom-tests --profile dev --bench throughput -- "$queue_photo" 16)
echo "==> one job's attempt around the pipeline: storage time and key-value calls" >&2
attempt_table=$(DARKROOM_TEST_KV=sqlite DARKROOM_TEST_REDIS_URL="redis://127.0.0.1:$redis_port" \
  cargo bench -q -p darkroom-tests --profile dev --bench attempt -- \
  "$PWD/$photos"/usr/share/backgrounds/{Painting-Colors_by__herobrine7gamer,Kleiber_by_Lukas_Baubkus,Infinite-Sea_by_Aury88,Fossa_by_Jasper_Roks}.jpg)
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
{
  sed '/^<!-- bench:start -->/,$d' BENCHMARKS.md
  echo "<!-- bench:start -->"
  echo "Measured $(date -u +%Y-%m-%d) on ${cpu:-unknown CPU}, $(nproc) cores, $(rustc --version | cut -d' ' -f1-2), $(vips --version 2>/dev/null || echo 'no libvips'); medians of $runs runs."
  echo
  echo "$table"
  echo
  echo "Queue throughput: one batch of jobs uploaded while no processor runs, then drained by 1, 2 or 3 processors (each its own test-host app subscribed to the queue, like \`spin up\` instances or replicas) on this $(nproc)-core machine; one run each. The CPU columns are Linux's counters over the drain, in cores (CPU seconds per second): the machine's busy time, the processors' threads, the front's HTTP threads (the wake-up upload and the status polling that times the run), the Redis server, the rest of the benchmark process."
  echo
  echo "$queue_table"
  echo
  echo "One job's attempt around the pipeline: a front app (upload, status) and a processor app in the test host, the key-value store in the \`--state-dir\` SQLite file as a plain \`spin up\` keeps it, blobs in the key-value store (the default), a real Redis; the median of 3 jobs per photo. *pipeline* and *attempt* come from the job's \`history\` (the processor's own clock: \`pipeline_ms\`, and \`ended_at - started_at\`); the calls are those the test host counted for the upload and the processor components."
  echo
  echo "$attempt_table"
} > BENCHMARKS.md.new
mv BENCHMARKS.md.new BENCHMARKS.md
echo "$table"
echo "$queue_table"
