#!/usr/bin/env bash
# Runs every test of the crate: unit tests, integration tests (the conformance suite on
# every backend), doctests, and the benches' and examples' builds.
#
# The cloud backends are tested against emulators this script installs (first run: about
# a minute, cached under ~/.cache/cloudstore-emulators) and starts on 127.0.0.1. If one cannot
# start, the script fails: no cloud test passes by skipping. The emulators are stopped on
# exit, whether the tests pass or not.
set -euo pipefail
cd "$(dirname "$0")/.."

# To run against real endpoints instead, export the variables `scripts/emulators.sh env`
# prints, pointing at them, and set CLOUDSTORE_TEST_REAL=1 (see the README).
if [[ "${CLOUDSTORE_TEST_REAL:-0}" != "1" ]]; then
    started_here=0
    if ! scripts/emulators.sh status >/dev/null 2>&1; then
        started_here=1
    fi
    scripts/emulators.sh start
    if [[ "$started_here" == "1" ]]; then
        trap 'scripts/emulators.sh stop >/dev/null 2>&1 || true' EXIT
    fi
    eval "$(scripts/emulators.sh env)"
fi

# Bounded parallelism: 2 cores; each conformance test runs a small runtime of its own and
# the emulators need CPU too.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"

# The fault, invariant and load suites run apart, with their output shown: they print
# their counts (schedules, faults injected, retries, outcomes; operations a second).
# Full counts: CLOUDSTORE_FAULT_SEEDS (memory, default 200), CLOUDSTORE_PROXY_SEEDS
# (per emulator, default 40 here; 200 for the full run).
heavy=(--skip seeded_fault_schedules --skip through_a_faulty_network --skip ten_thousand)
cargo test --all-features --all-targets -- "${heavy[@]}"
cargo test --all-features --test reliability --test proxy_faults --test load -- \
    --nocapture seeded_fault_schedules through_a_faulty_network ten_thousand
cargo test --all-features --doc
# A Store under a real object_store consumer: the parquet crate reads a Parquet file
# through Store::into_object_store() (interop/, a workspace member outside the root build).
cargo run -p cloudstore-interop
