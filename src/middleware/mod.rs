//! Backends that wrap backends.
//!
//! - [`RetryBackend`]: retries with backoff and a retry budget, continues reads that stop
//!   part-way, and tells honestly what a conditional write whose answer was lost did.
//! - [`Faults`] (feature `faults`): injects errors, delays, lost answers and cut bodies,
//!   by rule or by a seeded random schedule, for tests.
//!
//! They stack: `Store::new(RetryBackend::new(Arc::new(Faults::new(inner)), policy))` tests
//! the retries against injected faults.

#[cfg(feature = "faults")]
mod faults;
mod retry;

#[cfg(feature = "faults")]
pub use faults::{Chaos, Fault, FaultCounts, Faults, Rule};
pub use retry::{RetryBackend, RetryCounts, RetryPolicy};
