//! The conformance suite: the contract every backend must meet, runnable against any
//! [`Backend`](crate::Backend), ours or a user's (feature `conformance`).
//!
//! Each case receives a fresh [`Store`] scoped to its own unique prefix, exercises one
//! behaviour through the public API, and either passes, fails with a message, or, when the
//! backend's [`Capabilities`](crate::Capabilities) say the feature is absent, checks that
//! the feature answers [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) and
//! reports itself as not applicable, by name, on standard error. Nothing is skipped
//! silently.
//!
//! # Running it against your backend
//!
//! In a test file (`tests/conformance.rs`), one line per backend produces one `#[test]` per
//! case, named `<label>::<case>`:
//!
//! ```no_run
//! use cloudstore::{MemoryBackend, Store};
//!
//! // Replace MemoryBackend with your own `impl Backend`.
//! cloudstore::conformance_tests!(my_backend, || async {
//!     Ok(Store::new(MemoryBackend::new()))
//! });
//! # fn main() {}
//! ```
//!
//! `cargo test --test conformance -- --list` then shows `my_backend::put_get_empty_object`
//! and the rest. [`run_all`] runs every case in one call instead, returning a report.

use std::fmt;
use std::future::Future;
use std::io::Write;

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};

use crate::error::Result;
use crate::store::Store;

mod cases;

/// How a case ended when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The behaviour holds.
    Passed,
    /// The backend declares the feature absent, and it answered `Unsupported` as it must.
    NotApplicable(String),
}

/// Why a case failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(pub String);

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<crate::Error> for Failure {
    fn from(e: crate::Error) -> Self {
        Failure(format!("unexpected error: {e}"))
    }
}

/// What a case returns.
pub type CaseResult = std::result::Result<Outcome, Failure>;

/// One case of the suite.
#[derive(Clone, Copy)]
pub struct Case {
    /// Its name, as used in test names.
    pub name: &'static str,
    /// Runs it against a store scoped to a fresh prefix.
    pub run: fn(Store) -> BoxFuture<'static, CaseResult>,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case").field("name", &self.name).finish()
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __case_table {
    ([$($case:ident),* $(,)?]) => {
        /// Every case, in a stable order.
        pub fn cases() -> &'static [Case] {
            const CASES: &[Case] = &[
                $(Case { name: stringify!($case), run: |s| Box::pin(cases::$case(s)) }),*
            ];
            CASES
        }
    };
}
crate::__with_conformance_cases!(__case_table!());

/// Finds a case by name.
pub fn case(name: &str) -> Option<Case> {
    cases().iter().copied().find(|c| c.name == name)
}

/// Runs `case` against a store scoped to a fresh unique prefix of `store`, then deletes what
/// the case left under that prefix (best effort).
pub async fn run_case(case: Case, store: &Store) -> CaseResult {
    let scope = format!(
        "cloudstore-conformance/{}/{}",
        case.name,
        uuid::Uuid::new_v4().simple()
    );
    let scoped = store
        .with_prefix(&scope)
        .map_err(|e| Failure(format!("cannot scope the store: {e}")))?;
    let outcome = (case.run)(scoped.clone()).await;
    cleanup(&scoped).await;
    outcome
}

async fn cleanup(store: &Store) {
    if let Ok(uploads) = store.list_multipart_uploads(None).await {
        for u in uploads {
            let _ = store.abort_multipart(u.key.as_str(), &u.upload_id).await;
        }
    }
    let keys: Vec<_> = match store.list(None).try_collect::<Vec<_>>().await {
        Ok(objects) => objects.into_iter().map(|m| m.key).collect(),
        Err(_) => return,
    };
    futures::stream::iter(keys)
        .for_each_concurrent(16, |k| {
            let store = store.clone();
            async move {
                let _ = store.delete(k.as_str()).await;
            }
        })
        .await;
}

/// The result of [`run_all`].
#[derive(Debug, Default)]
pub struct Report {
    /// Cases that passed.
    pub passed: Vec<&'static str>,
    /// Cases that do not apply, with the reason.
    pub not_applicable: Vec<(&'static str, String)>,
    /// Cases that failed, with the reason.
    pub failed: Vec<(&'static str, Failure)>,
}

impl Report {
    /// Whether no case failed.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty()
    }
}

/// Runs every case against `store`, sequentially.
pub async fn run_all(store: &Store) -> Report {
    let mut report = Report::default();
    for case in cases() {
        match run_case(*case, store).await {
            Ok(Outcome::Passed) => report.passed.push(case.name),
            Ok(Outcome::NotApplicable(why)) => report.not_applicable.push((case.name, why)),
            Err(f) => report.failed.push((case.name, f)),
        }
    }
    report
}

/// Runs one case as a test: builds a runtime, makes the store with `factory`, runs the case,
/// panics with the failure (so the test fails), and writes "not applicable" verdicts to the
/// process's standard error, where test output shows them by name. Used by
/// [`conformance_tests!`](crate::conformance_tests).
pub fn run_test<F, Fut>(label: &str, name: &str, factory: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Store>>,
{
    run_test_with_gaps(label, name, factory, &[])
}

/// [`run_test`] for a store with known defects that no capability describes (an emulator's
/// bugs): each `(case, reason)` in `gaps` must fail, and its failure is written out as a
/// KNOWN GAP with the reason; a declared gap that passes fails the test, so a list of gaps
/// cannot outlive the defects it names.
pub fn run_test_with_gaps<F, Fut>(label: &str, name: &str, factory: F, gaps: &[(&str, &str)])
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Store>>,
{
    let case = case(name).unwrap_or_else(|| panic!("no conformance case named {name}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = rt.block_on(async {
        let store = factory()
            .await
            .map_err(|e| Failure(format!("the backend could not be set up: {e}")))?;
        run_case(case, &store).await
    });
    if let Some((_, reason)) = gaps.iter().find(|(case, _)| *case == name) {
        match outcome {
            Err(f) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "conformance {label}::{name}: KNOWN GAP ({reason}): {f}"
                );
                return;
            }
            Ok(_) => panic!(
                "conformance {label}::{name} is declared a known gap ({reason}) but did not \
                 fail: remove it from the gaps"
            ),
        }
    }
    match outcome {
        Ok(Outcome::Passed) => {}
        Ok(Outcome::NotApplicable(why)) => {
            // Written past the test harness's capture on purpose: a case that does not
            // apply must say so in the output, not pass silently.
            let _ = writeln!(
                std::io::stderr(),
                "conformance {label}::{name}: NOT APPLICABLE: {why}"
            );
        }
        Err(f) => panic!("conformance {label}::{name} failed: {f}"),
    }
}

/// Generates one `#[test]` per conformance case in a module named `$label`.
///
/// `$factory` is a closure returning a future of `cloudstore::Result<Store>`; it is called
/// once per test. See the [module documentation](crate::conformance). An optional
/// `known_gaps: &[(case, reason)]` names cases the store is known to fail (see
/// [`run_test_with_gaps`]).
#[macro_export]
macro_rules! conformance_tests {
    ($label:ident, $factory:expr) => {
        $crate::conformance_tests!($label, $factory, known_gaps: &[]);
    };
    ($label:ident, $factory:expr, known_gaps: $gaps:expr) => {
        $crate::__with_conformance_cases!(__conformance_module!($label, $factory, $gaps,));
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_module {
    ($label:ident, $factory:expr, $gaps:expr, [$($case:ident),* $(,)?]) => {
        mod $label {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $case() {
                    $crate::conformance::run_test_with_gaps(
                        stringify!($label),
                        stringify!($case),
                        $factory,
                        $gaps,
                    );
                }
            )*
        }
    };
}

/// The list of cases, written once; both the table and the test generator read it.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_conformance_cases {
    ($cb:ident ! ( $($args:tt)* )) => {
        $crate::$cb!( $($args)* [
            put_get_empty_object,
            put_get_one_byte,
            put_get_several_mib,
            put_overwrites_existing,
            put_returns_meta_matching_head,
            get_reports_meta_and_range,
            get_missing_is_not_found,
            head_missing_is_not_found,
            etag_changes_on_overwrite,
            key_with_spaces,
            key_with_plus_and_percent,
            key_with_unicode_and_emoji,
            key_with_special_segments,
            key_with_backslash,
            key_of_max_length,
            key_segment_limit,
            key_with_deep_path,
            invalid_keys_are_rejected,
            range_bounded,
            range_bounded_end_past_size_is_cut,
            range_from_offset,
            range_suffix,
            range_suffix_longer_than_object,
            range_start_past_end_is_invalid,
            range_of_empty_object_is_invalid,
            range_empty_or_reversed_is_invalid,
            delete_removes_object,
            delete_missing_is_ok,
            list_prefix_exact_boundaries,
            list_is_sorted_bytewise,
            list_with_delimiter,
            list_with_delimiter_nested,
            list_pagination_past_1000,
            list_page_tokens_resume,
            list_starts_after_a_key,
            list_delimiter_pages_do_not_repeat_prefixes,
            list_unknown_prefix_is_empty,
            list_leaves_out_metadata_but_head_has_it,
            store_prefixes_nest,
            metadata_and_content_type_round_trip,
            overwrite_replaces_metadata,
            put_create_when_absent,
            put_create_when_present_fails_and_keeps_data,
            put_if_match_current_succeeds,
            put_if_match_stale_fails_and_keeps_data,
            put_if_match_rejects_an_older_version,
            put_if_match_missing_object_fails,
            create_race_has_exactly_one_winner,
            if_match_race_has_exactly_one_winner,
            get_if_none_match,
            get_if_match,
            get_if_modified_since,
            get_if_unmodified_since,
            copy_object_with_metadata,
            copy_overwrites_destination,
            copy_missing_source_is_not_found,
            copy_if_absent_to_new_key,
            copy_if_absent_existing_fails_and_keeps_data,
            copy_if_match_guards_the_destination,
            multipart_parts_out_of_order,
            multipart_invisible_before_complete,
            multipart_abort_leaves_nothing,
            multipart_complete_missing_part_fails,
            multipart_part_too_small_fails,
            multipart_single_small_part,
            multipart_replaced_part_wins,
            multipart_keeps_metadata,
            multipart_completion_adds_metadata,
            multipart_create_mode,
            multipart_if_match_mode,
            multipart_listing,
            multipart_unknown_upload_is_not_found,
            presign_get_and_put,
            object_and_children,
            metadata_values_round_trip_exactly,
            metadata_names_follow_the_rule,
            reserved_metadata_names_are_invalid,
            metadata_size_limit,
            library_records_stay_out_of_user_metadata,
            content_type_follows_the_rule,
            condition_etags_follow_the_rule,
            presign_zero_expiry_is_invalid,
            keys_that_are_not_paths,
            keys_with_dot_segments,
            raw_keys_do_not_collide,
        ]);
    };
}
