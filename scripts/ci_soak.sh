#!/usr/bin/env bash
# Runs .ci/run on RUNS fresh clones of HEAD, one after another; every other run (HOGGED in all) with a busy
# loop on one core, as a user's machine doing something else. Prints each run's summary line and keeps the
# logs; exits non-zero if any run failed.
#   usage: scripts/ci_soak.sh [RUNS=10] [HOGGED=5] [WORKDIR=a new folder in $TMPDIR]
set -uo pipefail
runs=${1:-10}
hogged=${2:-5}
repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
work=${3:-$(mktemp -d "${TMPDIR:-/tmp}/ci-soak.XXXXXX")}
[[ "$runs" =~ ^[0-9]+$ && "$hogged" =~ ^[0-9]+$ && "$hogged" -le "$runs" ]] \
  || { echo "ci_soak: RUNS and HOGGED must be whole numbers with HOGGED <= RUNS (got '$runs' '$hogged')" >&2; exit 2; }
mkdir -p "$work"
commit=$(git -C "$repo" rev-parse --short HEAD)  # every run tests this commit, even if HEAD moves meanwhile
echo "ci_soak: $runs fresh clones of $commit ($hogged with a busy core), logs in $work"
hog_pid=
stop_hog() { [ -n "$hog_pid" ] && kill "$hog_pid" 2>/dev/null; wait "$hog_pid" 2>/dev/null; hog_pid=; }
trap 'stop_hog' EXIT
trap 'stop_hog; exit 130' INT TERM
failures=0
hogs_left=$hogged
for i in $(seq 1 "$runs"); do
  # spread the busy runs evenly: run i is busy when the busy runs still owed fill the runs left
  left=$((runs - i + 1))
  busy=0
  if [ "$hogs_left" -gt 0 ] && { [ $((i % 2)) -eq 0 ] || [ "$hogs_left" -ge "$left" ]; }; then busy=1; fi
  dir="$work/run-$i"
  rm -rf "$dir"
  { git clone -q --no-hardlinks "$repo" "$dir/main" && git -C "$dir/main" checkout -q "$commit"; } \
    || { echo "ci_soak: could not clone $repo at $commit" >&2; exit 1; }
  [ -d "$repo/../shared" ] && ln -s "$(cd "$repo/../shared" && pwd)" "$dir/shared"
  if [ "$busy" -eq 1 ]; then
    python3 -c 'while True: pass' &
    hog_pid=$!
    hogs_left=$((hogs_left - 1))
  fi
  start=$(date +%s)
  (cd "$dir/main" && CI=true bash .ci/run </dev/null) >"$work/run-$i.log" 2>&1
  rc=$?
  stop_hog
  secs=$(( $(date +%s) - start ))
  summary=$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed|error)' "$work/run-$i.log" | tail -n 1)
  last=$(tail -n 1 "$work/run-$i.log")
  printf 'run %2d/%d %-5s exit %d  %2dm%02ds  %s\n' "$i" "$runs" "$([ $busy -eq 1 ] && echo busy || echo quiet)" \
    "$rc" $((secs / 60)) $((secs % 60)) "${summary:-$last}"
  [ "$rc" -eq 0 ] || { failures=$((failures + 1)); echo "         $last"; }
  [ "$rc" -eq 0 ] && rm -rf "$dir"  # a passing clone's venv is ~6 GB; a failing one stays for a look
done
echo "ci_soak: $((runs - failures)) of $runs runs passed"
[ "$failures" -eq 0 ]
