//! Backends that wrap backends.
//!
//! - [`RetryBackend`]: retries with backoff and a retry budget, continues reads that stop
//!   part-way, and tells honestly what a conditional write whose answer was lost did.
//! - [`Faults`] (feature `faults`): injects errors, delays, lost answers and cut bodies,
//!   by rule or by a seeded random schedule, for tests.
//! - [`MirrorBackend`]: dual writes to a primary and a secondary for a staged migration,
//!   reads falling back to the secondary, a policy for a secondary outage and a repair.
//! - [`RouterBackend`]: key prefixes routed to different backends, listings merged.
//! - [`Observed`]: a `tracing` span and [metrics](crate::observe) for every request; every
//!   store from [`Store::from_url`](crate::Store::from_url) has one over its backend.
//! - [`Declared`]: capabilities declared narrower than the backend's own, and enforced (a
//!   service that lacks what its protocol promises).
//!
//! They stack: `Store::new(RetryBackend::new(Arc::new(Faults::new(inner)), policy))` tests
//! the retries against injected faults.

mod declared;
#[cfg(feature = "faults")]
mod faults;
mod mirror;
mod observed;
mod retry;
mod router;

pub use declared::Declared;
#[cfg(feature = "faults")]
pub use faults::{Chaos, Fault, FaultCounts, Faults, Rule};
pub use mirror::{MirrorBackend, RepairReport, SecondaryFailure};
pub use observed::Observed;
pub use retry::{RetryBackend, RetryCounts, RetryPolicy, WRITE_ID_METADATA};
pub use router::RouterBackend;
