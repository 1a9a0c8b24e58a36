#!/usr/bin/env bash
# Runs every test of the crate: unit tests, integration tests (the conformance suite on
# each backend), doctests and examples' builds.
#
# The memory and fs backends need nothing external. Cloud backends (coming) will have this
# script start their emulators first and fail, not skip, if one cannot start.
set -euo pipefail
cd "$(dirname "$0")/.."

# Bounded parallelism: the machine has 2 cores; each conformance test also runs a small
# runtime of its own.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-4}"

cargo test --all-features --all-targets
cargo test --all-features --doc
