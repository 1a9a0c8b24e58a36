//! One sync shared by any number of workers, coordinated only through the destination
//! store.
//!
//! A job is split into units, key ranges planned from one pass over the source listing.
//! The plan, the claims and each unit's result are small JSON objects in the destination
//! under [`STATE_PREFIX`](super::STATE_PREFIX)`<job>/`:
//!
//! ```text
//! <job>/plan                          the units (key ranges), written once with Create
//! <job>/runs/<run>/claims/<unit>      who works on a unit, and until when (a lease)
//! <job>/runs/<run>/results/<unit>     the unit's SyncReport, once it is done
//! <job>/state/<unit>/...              what the unit's last sync learned (for re-runs)
//! ```
//!
//! A worker claims a unit by creating its claim ([`PutMode::Create`]); a claim whose lease
//! ran out (its worker died or stalled) is taken over by replacing it on the ETag read
//! ([`PutMode::IfMatch`]), so two workers never both win it. The holder renews the lease
//! the same way while it works; if a renewal fails, the unit is given up at once. A worker
//! ends when every unit has a result. Runs of the same job reuse the plan and the state, so
//! a re-run of unchanged data sends about one request per listing page.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::STATE_PREFIX;
use super::sync::{
    Bounds, SyncOptions, SyncProgress, SyncReport, check_name, state_slot, sync_range,
};
use crate::error::{Error, ErrorKind, Op, Result};
use crate::object::{PutMode, PutOptions};
use crate::store::Store;

/// One unit of a sharded job: the keys after `after` (exclusive) up to `until` (inclusive);
/// `None` is open-ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    /// The unit's number in the plan.
    pub id: u32,
    /// Keys sort after this one.
    pub after: Option<String>,
    /// Keys sort up to this one.
    pub until: Option<String>,
}

impl Unit {
    fn bounds(&self) -> Bounds {
        Bounds {
            after: self.after.clone(),
            until: self.until.clone(),
        }
    }

    fn name(&self) -> String {
        format!("u{:05}", self.id)
    }
}

/// The units of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The prefix the job syncs.
    pub prefix: String,
    /// The units, in key order; together they cover every key.
    pub units: Vec<Unit>,
    /// Source keys the planning pass listed.
    pub planned_keys: u64,
}

/// A worker's lease on a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    /// The worker holding (or last holding) the unit.
    pub worker: String,
    /// When the lease runs out, in milliseconds since the Unix epoch.
    pub expires_ms: u64,
    /// Whether the worker let the unit go (done, or given up).
    pub released: bool,
}

/// What one worker did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerReport {
    /// Units this worker completed.
    pub units: u32,
    /// Units it started and lost (its lease was taken over), or failed in.
    pub given_up: u32,
    /// The sum of its units' reports.
    pub report: SyncReport,
}

/// Where a job stands, read from the destination store by anyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncStatus {
    /// Units in the plan (0: not planned yet).
    pub units: u32,
    /// Units with a result.
    pub done: u32,
    /// Units claimed under a live lease.
    pub running: u32,
    /// Units whose claim expired without a result (their worker died); the next worker to
    /// look takes them over.
    pub expired: u32,
    /// Claims not released (0 once every worker of the run has ended; a worker that died
    /// leaves its claim open until another takes the unit over).
    pub open_claims: u32,
    /// The sum of the results so far.
    pub report: SyncReport,
    /// Per unit: its claim, if any, and whether it is done.
    pub claims: Vec<(Unit, Option<Claim>, bool)>,
}

/// One sync shared by many workers (processes on any machines) through the destination
/// store; see the module documentation of `migrate` and the README's Kubernetes section.
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use cloudstore::Store;
/// use cloudstore::migrate::{ShardedSync, SyncOptions};
///
/// let (src, dst) = (Store::memory(), Store::memory());
/// for i in 0..100 {
///     src.put(&format!("k/{i:03}"), "x").await?;
/// }
/// let job = ShardedSync::new(&src, &dst, "job1", "run1", SyncOptions::default())?
///     .with_min_unit_keys(10);
/// job.plan(4).await?;
/// // Any number of workers, anywhere: each runs until every unit is done.
/// let (a, b) = futures::join!(job.run_worker("a"), job.run_worker("b"));
/// assert_eq!(a?.report.copied + b?.report.copied, 100);
/// assert_eq!(job.status().await?.done, 4);
/// # Ok::<_, cloudstore::Error>(())
/// # }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct ShardedSync {
    src: Store,
    dst: Store,
    job: String,
    run: String,
    opts: SyncOptions,
    lease: Duration,
    min_unit_keys: u64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn garbage(what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Other,
        Op::Sync,
        "migrate",
        format!("unreadable {what}: {e}"),
    )
}

impl ShardedSync {
    /// A job syncing `src` to `dst` with `opts` (its `state` is set to `job`). `job` names
    /// the plan and the records kept for re-runs; `run` names one pass of the job (its
    /// claims and results): a new run of the same job reuses the plan and state. Both are
    /// 1 to 64 of `A-Z a-z 0-9 - _ .`. The destination must support conditional writes
    /// (Create and IfMatch).
    pub fn new(src: &Store, dst: &Store, job: &str, run: &str, opts: SyncOptions) -> Result<Self> {
        check_name("the job name", job)?;
        check_name("the run name", run)?;
        let modes = dst.capabilities().put_modes;
        if !(modes.create && modes.if_match) {
            return Err(Error::unsupported(
                Op::Sync,
                dst.backend_name(),
                "a sharded sync needs conditional writes (Create and IfMatch) on the destination",
            ));
        }
        Ok(ShardedSync {
            src: src.clone(),
            dst: dst.clone(),
            job: job.to_string(),
            run: run.to_string(),
            opts: SyncOptions {
                state: Some(job.to_string()),
                ..opts
            },
            lease: Duration::from_secs(60),
            min_unit_keys: 10_000,
        })
    }

    /// The fewest keys a planned unit should have (default 10,000): a unit costs a few
    /// requests of its own (claim, renewals, result, records) and a warm-up, so a small
    /// job gets fewer units than asked for. 1 plans exactly the units asked for.
    pub fn with_min_unit_keys(mut self, keys: u64) -> Self {
        self.min_unit_keys = keys.max(1);
        self
    }

    /// How long a claim holds without renewal (default 60 s; renewed every third of it).
    /// A worker that dies delays its unit by at most this long.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(300));
        self
    }

    fn dir(&self) -> String {
        format!("{STATE_PREFIX}{}/", self.job)
    }

    fn plan_key(&self) -> String {
        format!("{}plan", self.dir())
    }

    fn claim_key(&self, u: &Unit) -> String {
        format!("{}runs/{}/claims/{}", self.dir(), self.run, u.name())
    }

    fn result_key(&self, u: &Unit) -> String {
        format!("{}runs/{}/results/{}", self.dir(), self.run, u.name())
    }

    /// The job's plan, if it has one.
    pub async fn load_plan(&self) -> Result<Option<Plan>> {
        match self.dst.get_bytes(&self.plan_key()).await {
            Ok(b) => {
                let plan: Plan = serde_json::from_slice(&b).map_err(|e| garbage("sync plan", e))?;
                let want = self.opts.prefix.clone().unwrap_or_default();
                if plan.prefix != want {
                    return Err(Error::invalid_input(
                        Op::Sync,
                        "migrate",
                        format!(
                            "job {:?} was planned for prefix {:?}, not {want:?}: use another job name",
                            self.job, plan.prefix
                        ),
                    ));
                }
                Ok(Some(plan))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The job's plan: the one already made, or a new one of about `units` units (fewer
    /// where units would hold less than [`ShardedSync::with_min_unit_keys`]) cut from one
    /// pass over the source listing (memory stays flat: it keeps at most `2 * units` sample
    /// keys). Concurrent planners agree: the first plan written wins.
    pub async fn plan(&self, units: usize) -> Result<Plan> {
        if let Some(p) = self.load_plan().await? {
            return Ok(p);
        }
        let plan = self.cut(units.max(1)).await?;
        let body = serde_json::to_vec(&plan).map_err(|e| garbage("sync plan", e))?;
        match self
            .dst
            .put_opts(&self.plan_key(), body, &PutOptions::create())
            .await
        {
            Ok(_) => Ok(plan),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => self.load_plan().await?.ok_or(e),
            Err(e) => Err(e),
        }
    }

    async fn cut(&self, units: usize) -> Result<Plan> {
        use futures::TryStreamExt;
        let prefix = self.opts.prefix.clone().unwrap_or_default();
        let mut list = self.src.list(Some(&prefix));
        let (mut seen, mut stride) = (0u64, 1u64);
        let mut samples: Vec<String> = Vec::new();
        while let Some(m) = list.try_next().await? {
            if m.key.as_str().starts_with(STATE_PREFIX) {
                continue;
            }
            seen += 1;
            if seen.is_multiple_of(stride) {
                samples.push(m.key.into_string());
                if samples.len() >= 2 * units {
                    // Keep every other sample: memory stays 2 * units keys.
                    samples = samples.into_iter().skip(1).step_by(2).collect();
                    stride *= 2;
                }
            }
        }
        let by_size = usize::try_from(seen / self.min_unit_keys).unwrap_or(usize::MAX);
        let units = units.min(by_size).max(1);
        let mut cuts: Vec<String> = (1..units)
            .filter_map(|i| samples.get(i * samples.len() / units).cloned())
            .collect();
        cuts.dedup();
        let mut bounds: Vec<Option<String>> = vec![None];
        bounds.extend(cuts.into_iter().map(Some));
        bounds.push(None);
        let units = bounds
            .windows(2)
            .enumerate()
            .map(|(i, w)| Unit {
                id: i as u32,
                after: w[0].clone(),
                until: w[1].clone(),
            })
            .collect();
        Ok(Plan {
            prefix,
            units,
            planned_keys: seen,
        })
    }

    /// Waits for the plan another worker makes (worker 0 plans; the others wait for it).
    pub async fn wait_for_plan(&self, timeout: Duration) -> Result<Plan> {
        let start = std::time::Instant::now();
        loop {
            if let Some(p) = self.load_plan().await? {
                return Ok(p);
            }
            if start.elapsed() >= timeout {
                return Err(Error::new(
                    ErrorKind::Timeout,
                    Op::Sync,
                    "migrate",
                    format!("no plan for job {:?} appeared in {timeout:?}", self.job),
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn read<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<(T, String)>> {
        match self.dst.get(key).await {
            Ok(r) => {
                let etag = r.meta.etag.clone().unwrap_or_default();
                let b = r.bytes().await?;
                let v = serde_json::from_slice(&b).map_err(|e| garbage(key, e))?;
                Ok(Some((v, etag)))
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn write_claim(&self, u: &Unit, claim: &Claim, mode: PutMode) -> Result<Option<String>> {
        let body = serde_json::to_vec(claim).map_err(|e| garbage("claim", e))?;
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        match self.dst.put_opts(&self.claim_key(u), body, &opts).await {
            Ok(m) => Ok(Some(m.etag.unwrap_or_default())),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::AlreadyExists | ErrorKind::PreconditionFailed
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn lease_for(&self, worker: &str) -> Claim {
        Claim {
            worker: worker.to_string(),
            expires_ms: now_ms() + self.lease.as_millis() as u64,
            released: false,
        }
    }

    /// Claims `u` for `worker`: the ETag of the claim, or `None` if another holds it.
    async fn claim(&self, u: &Unit, worker: &str) -> Result<Option<String>> {
        let mine = self.lease_for(worker);
        match self.read::<Claim>(&self.claim_key(u)).await? {
            None => self.write_claim(u, &mine, PutMode::Create).await,
            Some((c, etag)) if c.released || c.expires_ms < now_ms() => {
                self.write_claim(u, &mine, PutMode::IfMatch(etag)).await
            }
            Some(_) => Ok(None),
        }
    }

    /// Runs one worker until every unit of the plan has a result: claims free or expired
    /// units, syncs them while renewing the lease, records each result and releases the
    /// claim. Waits (up to ten minutes) for the plan if there is none yet. `worker` names
    /// it in claims.
    pub async fn run_worker(&self, worker: &str) -> Result<WorkerReport> {
        self.run_worker_with(worker, &|_| {}).await
    }

    /// [`ShardedSync::run_worker`], calling `on_progress` with this worker's progress.
    pub async fn run_worker_with(
        &self,
        worker: &str,
        on_progress: &(dyn Fn(&SyncProgress) + Sync),
    ) -> Result<WorkerReport> {
        let plan = self.wait_for_plan(Duration::from_secs(600)).await?;
        let n = plan.units.len();
        let first = worker
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
            % n.max(1);
        let mut out = WorkerReport {
            report: SyncReport {
                state_saved: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let mut base = SyncProgress::default();
        // Results never go away: a unit seen done is not read again.
        let mut done = vec![false; n];
        let mut pause = Duration::from_millis(25);
        loop {
            let (mut waiting, mut worked) = (false, false);
            for i in 0..n {
                let at = (first + i) % n;
                let u = &plan.units[at];
                if done[at]
                    || self
                        .read::<SyncReport>(&self.result_key(u))
                        .await?
                        .is_some()
                {
                    done[at] = true;
                    continue;
                }
                let Some(etag) = self.claim(u, worker).await? else {
                    waiting = true;
                    continue;
                };
                // A claim released since the result was read may be released because the
                // unit is done (the result is written before the release): look again.
                if self
                    .read::<SyncReport>(&self.result_key(u))
                    .await?
                    .is_some()
                {
                    done[at] = true;
                    self.release(u, worker, etag).await?;
                    continue;
                }
                worked = true;
                match self.work(u, worker, etag, &base, on_progress).await? {
                    Some(r) => {
                        done[at] = true;
                        out.units += 1;
                        base.add(&SyncProgress::of(&r));
                        out.report.add(&r);
                    }
                    None => {
                        out.given_up += 1;
                        waiting = true;
                    }
                }
            }
            if !waiting {
                break;
            }
            if worked {
                pause = Duration::from_millis(25);
            } else {
                // Others hold the rest: look again soon, then less often (a unit whose
                // worker died comes free when its lease ends).
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min((self.lease / 4).min(Duration::from_secs(1)));
            }
        }
        let mut end = base;
        end.done = true;
        on_progress(&end);
        Ok(out)
    }

    /// Syncs unit `u` under the claim `etag`, renewing it; records the result and releases
    /// the claim. `None`: the lease was lost and the unit given up. An error (a listing
    /// that failed for good, a result that could not be written) releases the claim, so
    /// that another worker may try, and ends this worker.
    async fn work(
        &self,
        u: &Unit,
        worker: &str,
        etag: String,
        base: &SyncProgress,
        on_progress: &(dyn Fn(&SyncProgress) + Sync),
    ) -> Result<Option<SyncReport>> {
        let bounds = u.bounds();
        let slot = state_slot(&self.dst, &self.opts, &u.name(), &bounds)?;
        let report_progress = |p: &SyncProgress| {
            let mut total = base.clone();
            total.add(p);
            on_progress(&total);
        };
        let sync = sync_range(
            &self.src,
            &self.dst,
            &self.opts,
            &bounds,
            slot,
            &report_progress,
        );
        let mut etag = etag;
        let renew = async {
            loop {
                tokio::time::sleep(self.lease / 3).await;
                match self
                    .write_claim(u, &self.lease_for(worker), PutMode::IfMatch(etag.clone()))
                    .await
                {
                    Ok(Some(e)) => etag = e,
                    Ok(None) => {
                        return Error::new(
                            ErrorKind::PreconditionFailed,
                            Op::Sync,
                            "migrate",
                            format!("unit {} was taken over: its lease ran out", u.id),
                        );
                    }
                    Err(e) => return e,
                }
            }
        };
        let synced = tokio::select! {
            r = sync => r,
            lost = renew => {
                tracing::warn!(unit = u.id, error = %lost, "gave up a unit");
                return Ok(None);
            }
        };
        let recorded = match synced {
            Ok(report) => match serde_json::to_vec(&report) {
                Ok(body) => self
                    .dst
                    .put(&self.result_key(u), body)
                    .await
                    .map(|_| report),
                Err(e) => Err(garbage("sync result", e)),
            },
            Err(e) => Err(e),
        };
        let release = self.release(u, worker, etag).await;
        let report = recorded?;
        release?;
        Ok(Some(report))
    }

    /// Releases `worker`'s claim on `u`, last written with `etag`. A renewal cancelled in
    /// flight may have changed the ETag: the claim is read again, and released if it is
    /// still this worker's; a claim taken over meanwhile stays its new holder's.
    async fn release(&self, u: &Unit, worker: &str, etag: String) -> Result<()> {
        let released = Claim {
            released: true,
            ..self.lease_for(worker)
        };
        if self
            .write_claim(u, &released, PutMode::IfMatch(etag))
            .await?
            .is_some()
        {
            return Ok(());
        }
        if let Some((c, etag)) = self.read::<Claim>(&self.claim_key(u)).await?
            && c.worker == worker
            && !c.released
        {
            self.write_claim(u, &released, PutMode::IfMatch(etag))
                .await?;
        }
        Ok(())
    }

    /// Where the run stands: units done, running, expired; open claims; the sum of the
    /// results. Two small reads per unit.
    pub async fn status(&self) -> Result<SyncStatus> {
        let Some(plan) = self.load_plan().await? else {
            return Ok(SyncStatus::default());
        };
        let now = now_ms();
        let mut st = SyncStatus {
            units: plan.units.len() as u32,
            report: SyncReport {
                state_saved: true,
                ..Default::default()
            },
            ..Default::default()
        };
        for u in plan.units {
            let result = self.read::<SyncReport>(&self.result_key(&u)).await?;
            let claim = self
                .read::<Claim>(&self.claim_key(&u))
                .await?
                .map(|(c, _)| c);
            let done = result.is_some();
            if let Some((r, _)) = &result {
                st.done += 1;
                st.report.add(r);
            }
            if let Some(c) = &claim
                && !c.released
            {
                st.open_claims += 1;
                if !done && c.expires_ms >= now {
                    st.running += 1;
                } else if !done {
                    st.expired += 1;
                }
            }
            st.claims.push((u, claim, done));
        }
        Ok(st)
    }
}
