//! `cargo bench --bench transfer`: upload and download of one large object through
//! cloudstore, object_store and OpenDAL, with the same part size (16 MiB) and concurrency
//! (8), against an in-process S3 sink, memory, fs, and the emulators of
//! `scripts/emulators.sh` that are up. The peers live in the separate `bench/` crate
//! (`cloudstore-bench`) so that they stay out of the normal build; this file builds and
//! runs it:
//!
//! ```text
//! cargo run --release -p cloudstore-bench -- [FILTER...]
//! ```
//!
//! It prints a markdown table and writes it to `target/bench-transfer.md`. Size:
//! `CLOUDSTORE_BENCH_MIB` (default 256, several GiB work); runs per case:
//! `CLOUDSTORE_BENCH_RUNS` (default 3, median reported). Arguments after `--` are passed
//! on: filters (target or client names, e.g. `cargo bench --bench transfer -- sink`) and
//! the runner's options (`--runs N`, `--out FILE`).
//! Under `cargo test --benches` (no `--bench` argument) it does nothing.

use std::process::Command;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches` runs bench targets without `--bench`: stay quick.
        return;
    }
    // Filters and runner options (`--runs N`, `--out FILE`) go through as given.
    let forwarded: Vec<&String> = args.iter().filter(|a| *a != "--bench").collect();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--release", "-p", "cloudstore-bench", "--"])
        .args(forwarded);
    // CLOUDSTORE_BENCH_MIB and the emulator variables pass through the environment.
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run cargo for the transfer benchmark: {e}"));
    if !status.success() {
        eprintln!("the transfer benchmark failed: {status}");
        std::process::exit(1);
    }
}
