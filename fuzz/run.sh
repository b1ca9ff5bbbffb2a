#!/usr/bin/env bash
# Runs each libFuzzer target for SECONDS seconds, one after the other (one process each: the
# machine is shared). Usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]
#
# Corpora live in BUILD_DIR/corpus/<target>/, seeded from tests/data, fuzz/seeds/<target>/ and
# tests/data/crashers/ (never written back). A crash, leak, timeout or out-of-memory input is copied
# to tests/data/crashers/<target>/, where tests/crashers_test.cpp replays it on every `make test`.
# Prints one line per target: executions, seconds, findings. Exits 1 when a target found anything.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]}
seconds=${2:?usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(decode exif npy stats_json cli_values resize)

summary=()
failed=0
for t in "${targets[@]}"; do
  bin="$build/fuzz/fuzz_$t"
  [ -x "$bin" ] || { echo "fuzz: $bin not built" >&2; exit 2; }
  corpus="$build/corpus/$t"
  artifacts="$build/artifacts/$t"
  mkdir -p "$corpus" "$artifacts"
  # Seeds (cp -n: keep what earlier runs found). Every crasher of every target is a seed too.
  case "$t" in
    decode) find tests/data -maxdepth 1 -type f \( -name '*.jpg' -o -name '*.png' -o -name '*.webp' \) \
              -exec cp -n {} "$corpus/" \; ;;
    *) [ -d "fuzz/seeds/$t" ] && cp -n fuzz/seeds/"$t"/* "$corpus/" ;;
  esac
  [ -d "tests/data/crashers/$t" ] && find "tests/data/crashers/$t" -type f -exec cp -n {} "$corpus/" \;
  opts=(-max_total_time="$seconds" -print_final_stats=1 -artifact_prefix="$artifacts/"
        -rss_limit_mb=2048 -timeout=25 -max_len=1048576)
  [ -f "fuzz/$t.dict" ] && opts+=(-dict="fuzz/$t.dict")
  log="$build/fuzz_$t.log"
  echo "fuzz: $t for ${seconds}s (log: $log)"
  start=$(date +%s)
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$bin" "${opts[@]}" "$corpus" >"$log" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  found=()
  for f in "$artifacts"/*; do
    [ -f "$f" ] || continue
    mkdir -p "tests/data/crashers/$t"
    cp "$f" "tests/data/crashers/$t/$(basename "$f")"
    found+=("$(basename "$f")")
  done
  rm -f "$artifacts"/*
  if [ $rc -ne 0 ] || [ ${#found[@]} -gt 0 ]; then
    failed=1
    summary+=("$t: ${execs:-?} executions in ${took}s, exit $rc, FOUND: ${found[*]:-see $log}")
    grep -m 3 -E 'ERROR|runtime error|invariant|SUMMARY' "$log" >&2
  else
    summary+=("$t: ${execs:-?} executions in ${took}s, corpus $(ls "$corpus" | wc -l) files, no findings")
  fi
done
printf '%s\n' "${summary[@]}"
exit $failed
