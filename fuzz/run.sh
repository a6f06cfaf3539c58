#!/usr/bin/env bash
# Builds the fuzz targets and runs each for a bounded time; any crash, panic, timeout or OOM fails (exit 1).
#
#   fuzz/run.sh                          every target, 60 s each
#   FUZZ_SECONDS=600 fuzz/run.sh endpoint sdp
#
# FUZZ_SECONDS    time per target (default 60)
# FUZZ_RSS_MB     memory limit per target, MB (default 2048): more means a leak or unbounded growth
# FUZZ_SANITIZER  none (default) or address: the code is safe Rust, so panics, OOM and hangs are what we look
#                 for; ASan costs ~2x executions and a RUSTC_BOOTSTRAP build (see README "Fuzzing")
#
# The seed corpus (fuzz/corpus/<target>, in git) is read, never written: what a run discovers goes to
# fuzz/work/<target>, so later local runs start from it. A crash leaves its input in
# fuzz/artifacts/<target>/; replay it with `fuzz/target/<triple>/release/<target> <file>`.
set -euo pipefail
cd "$(dirname "$0")"

all=(sip_message tcp_framer sdp sdp_srtp digest endpoint srtp stored_trace)
targets=("${@:-${all[@]}}")
seconds=${FUZZ_SECONDS:-60}
rss_mb=${FUZZ_RSS_MB:-2048}
sanitizer=${FUZZ_SANITIZER:-none}

# Longest input per target: enough for the seeds and a few messages; longer inputs only run slower.
max_len() {
  case $1 in
    sip_message) echo 8192 ;;
    tcp_framer | endpoint) echo 16384 ;;
    sdp) echo 4096 ;;
    sdp_srtp) echo 8192 ;;
    digest) echo 2048 ;;
    *) echo 4096 ;;
  esac
}
dict() {
  case $1 in
    sdp | sdp_srtp) echo dict/sdp.dict ;;
    digest) echo dict/digest.dict ;;
    *) echo dict/sip.dict ;;
  esac
}

# libFuzzer is C++ (libfuzzer-sys builds it): a fresh machine may lack the compiler.
if ! command -v c++ >/dev/null; then
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q g++
  else
    echo "fuzz/run.sh: a C++ compiler (Debian package g++) is needed" >&2
    exit 1
  fi
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# cargo fuzz runs on the stable toolchain without sanitizers; ASan needs the nightly-only -Zsanitizer.
if [ "$sanitizer" != none ]; then
  export RUSTC_BOOTSTRAP=1
fi
echo "== cargo fuzz build (sanitizer: $sanitizer)"
build_start=$SECONDS
# Release code with debug assertions and overflow checks on (an overflow is a finding too); every target in
# one cargo run, since they share all their dependencies.
mkdir -p logs
if ! cargo fuzz build -s "$sanitizer" --debug-assertions >logs/build.log 2>&1; then
  tail -n 60 logs/build.log
  echo "fuzz targets failed to build"
  exit 1
fi
echo "build: $((SECONDS - build_start)) s"

triple=$(rustc -vV | sed -n 's/^host: //p')
bin_dir=target/$triple/release
failed=()
summary=()
for t in "${targets[@]}"; do
  mkdir -p "work/$t" "artifacts/$t" logs
  log=logs/$t.log
  echo "== $t: ${seconds}s"
  status=0
  "$bin_dir/$t" "work/$t" "corpus/$t" \
    -max_total_time="$seconds" -rss_limit_mb="$rss_mb" -max_len="$(max_len "$t")" -timeout=10 \
    -dict="$(dict "$t")" -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1 || status=$?
  runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 runs in \2 s/p' "$log" | tail -n 1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -n 1)
  [ -n "$runs" ] || runs="$(sed -n 's/^stat::number_of_executed_units: //p' "$log") runs"
  if [ "$status" -ne 0 ]; then
    failed+=("$t")
    summary+=("$t: FAILED (exit $status) after $runs; $cov")
    echo "---- $t failed; the end of $log:"
    tail -n 40 "$log"
    ls -1 "artifacts/$t/" | sed "s|^|    input: fuzz/artifacts/$t/|"
  else
    summary+=("$t: ok, $runs; $cov")
  fi
done

echo "== fuzzing summary (${seconds}s per target; fuzz/run.sh took $SECONDS s in all)"
printf '%s\n' "${summary[@]}"
echo "fuzz: $((${#targets[@]} - ${#failed[@]})) passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz targets failed: ${failed[*]}"
  exit 1
fi
