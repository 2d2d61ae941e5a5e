#!/usr/bin/env bash
# Builds every fuzz target once, then runs each for FUZZ_SECONDS from the seeds of seed.sh,
# FUZZ_JOBS targets at a time. Exits non-zero when a target fails (a panic, a failed assertion,
# a hang past FUZZ_TIMEOUT, running out of memory), after printing each failing input in hex.
# Needs cargo-fuzz; .ci/run installs it.
#
# Environment:
#   FUZZ_SECONDS    libFuzzer -max_total_time of each target (default 30; 0 = build only)
#   FUZZ_JOBS       targets run at the same time (default: the number of CPUs)
#   FUZZ_TIMEOUT    libFuzzer -timeout, seconds one input may take (default 20)
#   FUZZ_TARGETS    the targets to run (default: all, from `cargo fuzz list`)
#   FUZZ_SANITIZER  cargo-fuzz --sanitizer (default address; `none` when ASan cannot build)
#   REAL            fixture folder for seed.sh (default: <repo>/../shared/real)
set -euo pipefail

FUZZ="$(cd "$(dirname "$0")" && pwd)"
cd "$FUZZ"
export RUSTC_BOOTSTRAP=1
seconds="${FUZZ_SECONDS:-30}"
jobs="${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}"
timeout="${FUZZ_TIMEOUT:-20}"
sanitizer="${FUZZ_SANITIZER:-address}"
read -r -a targets <<<"${FUZZ_TARGETS:-$(cargo fuzz list | tr '\n' ' ')}"
if [ ${#targets[@]} -eq 0 ]; then
    echo "fuzz: no targets (cargo fuzz list found none)" >&2
    exit 1
fi

if ! ./seed.sh >/dev/null; then
    echo "fuzz: seed.sh failed; fuzzing from empty corpora" >&2
fi

start=$SECONDS
build() { # all targets in one cargo build, or the chosen ones
    if [ -z "${FUZZ_TARGETS:-}" ]; then
        cargo fuzz build --sanitizer "$1"
    else
        for t in "${targets[@]}"; do cargo fuzz build --sanitizer "$1" "$t" || return; done
    fi
}
if ! build "$sanitizer"; then
    [ "$sanitizer" != none ] || exit 1
    echo "fuzz: the $sanitizer sanitizer build failed; building without a sanitizer" >&2
    sanitizer=none
    build none
fi
echo "fuzz: built ${#targets[@]} targets in $((SECONDS - start)) s"
if [ "$seconds" = 0 ]; then
    exit 0
fi

logs="$(mktemp -d)"
trap 'rm -rf "$logs"' EXIT

# One target: its log and exit status go to $logs (the build above makes `cargo fuzz run` only
# run). -max_total_time ends the run; -timeout turns a hang into a failure within the budget.
run_one() {
    local t="$1" rc=0
    cargo fuzz run --sanitizer "$sanitizer" "$t" -- \
        -max_total_time="$seconds" -timeout="$timeout" -print_final_stats=1 \
        >"$logs/$t.log" 2>&1 || rc=$?
    echo "$rc" >"$logs/$t.rc"
}

start=$SECONDS
running=0
for t in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    run_one "$t" &
    running=$((running + 1))
done
wait || true

failed=()
for t in "${targets[@]}"; do
    rc="$(cat "$logs/$t.rc" 2>/dev/null || echo missing)"
    execs="$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$logs/$t.log" | grep -oE '[0-9]+$' | tail -n1 || true)"
    printf '%-20s %10s execs  exit %s\n' "$t" "${execs:-?}" "$rc"
    if [ "$rc" != 0 ]; then
        failed+=("$t")
        echo "---- $t: last lines of the log"
        tail -n 60 "$logs/$t.log"
        grep -oE 'Test unit written to [^ ]+' "$logs/$t.log" | sed 's/^Test unit written to //' |
            while IFS= read -r input; do
                echo "---- $t: failing input $input (hex); replay with"
                echo "     RUSTC_BOOTSTRAP=1 cargo fuzz run $t $input"
                od -An -v -tx1 "$input" | tr -d ' \n' | fold -w 128
                echo
            done
    fi
done
echo "fuzz: ran ${#targets[@]} targets for ${seconds} s each, $jobs at a time, in $((SECONDS - start)) s"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}" >&2
    exit 1
fi
