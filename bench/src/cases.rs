//! One measured case, run in a child process: build the client for the target, (for
//! in-process stores, where nothing survives the process, first write the object
//! unmeasured), then time the upload or download and the CPU it took.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::io::AsyncWriteExt;

use crate::{BoxError, CONCURRENCY, R, Target, part_size};

/// What the child reports to the runner.
pub struct Measured {
    pub bytes: u64,
    pub secs: f64,
    pub cpu_secs: f64,
}

/// The client variants. Each maps to a name on the command line and in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Client {
    /// `Store::writer` (AsyncWrite) up, `Store::reader` (AsyncRead) down; signed payload on
    /// S3, CRC32C on.
    Cloudstore,
    /// The same with `unsigned_payload=true` (S3 only).
    CloudstoreUnsigned,
    /// Unsigned payload and checksums off (S3 only).
    CloudstoreUnsignedNoCrc,
    /// Unsigned, with a Prometheus `metrics` recorder and an INFO `tracing` subscriber
    /// installed: what observability costs when it is on (sink only).
    CloudstoreRecorded,
    /// Unsigned, over a store built without the `Observed` layer: what the layer costs
    /// when nothing is installed (sink only).
    CloudstoreBare,
    /// `Store::download_file` into a file (download only).
    CloudstoreDownloadFile,
    /// One plain `Store::get` stream, for comparison with the parallel reads (download only).
    CloudstoreGet,
    /// `WriteMultipart` up, `get_range` x concurrency down.
    ObjectStore,
    /// The same with `with_unsigned_payload(true)` (S3 only).
    ObjectStoreUnsigned,
    /// `Operator::writer_with(..).chunk(..).concurrent(..)` up,
    /// `reader_with(..).chunk(..).concurrent(..)` down.
    OpenDal,
    /// `Store::writer` / `Store::reader` with `TransferConfig::default()` and the URL's
    /// defaults: what a user gets without tuning.
    CloudstoreDefaults,
    /// object_store's documented defaults: `BufWriter::new` (10 MiB chunks, 8 in flight)
    /// up, one `get` stream down.
    ObjectStoreDefaults,
    /// OpenDAL's defaults: `Operator::writer` and `Operator::reader` without options.
    OpenDalDefaults,
    /// object_store's ranged download (`get_range` x concurrency, in order) written to a
    /// file, synced: what `download_file` does, done with object_store (download only).
    ObjectStoreFile,
    /// OpenDAL's concurrent reader written to a file, synced (download only).
    OpenDalFile,
}

impl Client {
    pub const ALL: [Client; 15] = [
        Client::CloudstoreDefaults,
        Client::ObjectStoreDefaults,
        Client::OpenDalDefaults,
        Client::Cloudstore,
        Client::CloudstoreUnsigned,
        Client::CloudstoreUnsignedNoCrc,
        Client::CloudstoreRecorded,
        Client::CloudstoreBare,
        Client::CloudstoreDownloadFile,
        Client::CloudstoreGet,
        Client::ObjectStore,
        Client::ObjectStoreUnsigned,
        Client::OpenDal,
        Client::ObjectStoreFile,
        Client::OpenDalFile,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Client::Cloudstore => "cloudstore",
            Client::CloudstoreUnsigned => "cloudstore-unsigned",
            Client::CloudstoreUnsignedNoCrc => "cloudstore-unsigned-nocrc",
            Client::CloudstoreRecorded => "cloudstore-recorded",
            Client::CloudstoreBare => "cloudstore-bare",
            Client::CloudstoreDownloadFile => "cloudstore-download_file",
            Client::CloudstoreGet => "cloudstore-get",
            Client::ObjectStore => "object_store",
            Client::ObjectStoreUnsigned => "object_store-unsigned",
            Client::OpenDal => "opendal",
            Client::CloudstoreDefaults => "defaults-cloudstore",
            Client::ObjectStoreDefaults => "defaults-object_store",
            Client::OpenDalDefaults => "defaults-opendal",
            Client::ObjectStoreFile => "object_store-file",
            Client::OpenDalFile => "opendal-file",
        }
    }

    /// How the table names it.
    pub fn label(self) -> &'static str {
        match self {
            Client::Cloudstore => "cloudstore `writer` / `reader`",
            Client::CloudstoreUnsigned => "cloudstore, `unsigned_payload=true`",
            Client::CloudstoreUnsignedNoCrc => "cloudstore, unsigned, checksums off",
            Client::CloudstoreRecorded => {
                "cloudstore, unsigned, metrics recorder and subscriber on"
            }
            Client::CloudstoreBare => "cloudstore, unsigned, no observability layer",
            Client::CloudstoreDownloadFile => "cloudstore `download_file`",
            Client::CloudstoreGet => "cloudstore `get`, one stream",
            Client::ObjectStore => "object_store `WriteMultipart` / `get_range`",
            Client::ObjectStoreUnsigned => "object_store, unsigned payload",
            Client::OpenDal => "OpenDAL `writer` / `reader`",
            Client::CloudstoreDefaults => {
                "cloudstore, defaults (16 MiB parts, 8 in flight, split over long round trips)"
            }
            Client::ObjectStoreDefaults => "object_store defaults (`BufWriter`, one `get`)",
            Client::OpenDalDefaults => "OpenDAL defaults (`writer`, `reader`, no options)",
            Client::ObjectStoreFile => "object_store `get_range` into a file",
            Client::OpenDalFile => "OpenDAL `reader` into a file",
        }
    }

    pub fn parse(name: &str) -> Option<Client> {
        Client::ALL.into_iter().find(|c| c.name() == name)
    }

    pub fn uploads(self) -> bool {
        !matches!(
            self,
            Client::CloudstoreDownloadFile
                | Client::CloudstoreGet
                | Client::ObjectStoreFile
                | Client::OpenDalFile
        )
    }

    /// Whether the download goes into a file (synced) rather than being discarded.
    fn to_file(self) -> bool {
        matches!(self, Client::ObjectStoreFile | Client::OpenDalFile)
    }

    /// The client whose object this one downloads (and whose key it uses).
    pub fn object_owner(self) -> Client {
        match self {
            Client::CloudstoreDownloadFile | Client::CloudstoreGet => Client::Cloudstore,
            Client::ObjectStoreFile => Client::ObjectStore,
            Client::OpenDalFile => Client::OpenDal,
            c => c,
        }
    }

    fn unsigned(self) -> bool {
        matches!(
            self,
            Client::CloudstoreUnsigned
                | Client::CloudstoreUnsignedNoCrc
                | Client::CloudstoreRecorded
                | Client::CloudstoreBare
                | Client::ObjectStoreUnsigned
        )
    }
}

/// Where a client's object lives in a bucket (or under an fs root).
pub fn object_key(client: Client, mib: u64) -> String {
    format!("bench/transfer/{}-{mib}mib", client.object_owner().name())
}

/// Everything a case needs to know.
pub struct Case {
    pub target: Target,
    pub client: Client,
    pub upload: bool,
    pub mib: u64,
    /// The sink's `http://127.0.0.1:port` (sink target only).
    pub sink: Option<String>,
    /// Per-run scratch directory (fs roots, downloaded files).
    pub scratch: PathBuf,
}

impl Case {
    fn size(&self) -> u64 {
        self.mib << 20
    }

    fn key(&self) -> String {
        object_key(self.client, self.mib)
    }

    /// The file a download into a file writes (`download_file` and the peers' file rows);
    /// it is removed after the measurement, not during it.
    fn download_path(&self) -> Option<PathBuf> {
        let name = if self.client == Client::CloudstoreDownloadFile {
            "download_file"
        } else if self.client.to_file() {
            self.client.name()
        } else {
            return None;
        };
        Some(self.scratch.join(format!("{name}.bin")))
    }
}

fn cpu_now() -> f64 {
    // SAFETY: getrusage writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Installs what a service with observability on would: a Prometheus recorder and a
/// subscriber at INFO (operation spans on, request spans off), writing nowhere.
fn install_observability() -> R<()> {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    metrics::set_global_recorder(recorder).map_err(|e| e.to_string())?;
    cloudstore::observe::describe();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_writer(std::io::sink)
        .try_init()?;
    Ok(())
}

pub async fn run(case: &Case) -> R<Measured> {
    if case.client == Client::CloudstoreRecorded {
        install_observability()?;
    }
    let client = Runner::new(case).await?;
    let in_process = matches!(case.target, Target::Memory);
    if !case.upload && in_process {
        // Nothing outlives the process: write the object first, unmeasured.
        client.upload(case).await?;
    }
    let (cpu0, t0) = (cpu_now(), Instant::now());
    let bytes = if case.upload {
        client.upload(case).await?;
        case.size()
    } else {
        client.download(case).await?
    };
    let (secs, cpu_secs) = (t0.elapsed().as_secs_f64(), cpu_now() - cpu0);
    if !case.upload
        && let Some(path) = case.download_path()
    {
        // Dropping a 1 GiB file's pages is the kernel's work after the download, not the
        // client's: outside the measurement.
        std::fs::remove_file(path)?;
    }
    if bytes != case.size() {
        return Err(format!("transferred {bytes} bytes, expected {}", case.size()).into());
    }
    Ok(Measured {
        bytes,
        secs,
        cpu_secs,
    })
}

enum Runner {
    Cloudstore(cloudstore::Store),
    ObjectStore(Arc<dyn ObjectStore>),
    OpenDal(opendal::Operator),
}

fn env(name: &str) -> R<String> {
    std::env::var(name).map_err(|_| format!("{name} is not set").into())
}

fn sink_url(case: &Case) -> R<String> {
    case.sink
        .clone()
        .ok_or_else(|| BoxError::from("no sink address"))
}

pub fn cloudstore_store(case: &Case) -> R<cloudstore::Store> {
    use cloudstore::{FsBackend, Store, StoreOptions};
    let mut opts = StoreOptions::new();
    if case.client.unsigned() {
        opts.set("unsigned_payload", "true");
    }
    // Checksums off means S3's CRC64-NVME per write too, not only the transfer engine's.
    let s3 = case.target.is_sink() || case.target == Target::SeaweedFs;
    if s3 && case.client == Client::CloudstoreUnsignedNoCrc {
        opts.set("checksum_algorithm", "none");
    }
    let store = match case.target {
        Target::Sink | Target::Wan0 | Target::Wan20 | Target::Wan80 => {
            for (k, v) in [
                ("endpoint", sink_url(case)?.as_str()),
                ("region", "us-east-1"),
                ("access_key_id", "bench"),
                ("secret_access_key", "bench"),
                ("allow_http", "true"),
                ("virtual_hosted_style_request", "false"),
            ] {
                opts.set(k, v);
            }
            if case.client == Client::CloudstoreBare {
                let backend = cloudstore::S3Backend::new("bench", &opts)?;
                Store::new(cloudstore::middleware::RetryBackend::new(
                    Arc::new(backend),
                    cloudstore::middleware::RetryPolicy::default(),
                ))
            } else {
                Store::from_url("s3://bench", &opts)?
            }
        }
        Target::Memory => Store::memory(),
        Target::Fs => Store::new(
            FsBackend::new(
                case.scratch
                    .join(format!("fs-{}", case.client.object_owner().name())),
            )?
            .with_fsync(false),
        ),
        Target::SeaweedFs => Store::from_url(&format!("s3://{}", crate::s3_bucket()), &opts)?,
        Target::Azurite => Store::from_url(&format!("az://{}", crate::azure_container()), &opts)?,
        Target::FakeGcs => Store::from_url(&format!("gs://{}", crate::gcs_bucket()), &opts)?,
    };
    if case.client == Client::CloudstoreDefaults {
        return Ok(store);
    }
    let config = cloudstore::TransferConfig {
        part_size: part_size(),
        concurrency: CONCURRENCY,
        // Parts in flight and the one being filled, together within concurrency x part
        // (the bound: concurrency x part size + 32 MiB).
        upload_memory: part_size() * CONCURRENCY as u64,
        checksum: case.client != Client::CloudstoreUnsignedNoCrc,
        ..Default::default()
    };
    Ok(store.with_transfer_config(config))
}

fn object_store_store(case: &Case) -> R<Arc<dyn ObjectStore>> {
    use object_store::aws::AmazonS3Builder;
    use object_store::azure::MicrosoftAzureBuilder;
    Ok(match case.target {
        Target::Sink | Target::Wan0 | Target::Wan20 | Target::Wan80 => Arc::new(
            AmazonS3Builder::new()
                .with_endpoint(sink_url(case)?)
                .with_bucket_name("bench")
                .with_region("us-east-1")
                .with_access_key_id("bench")
                .with_secret_access_key("bench")
                .with_allow_http(true)
                .with_virtual_hosted_style_request(false)
                .with_unsigned_payload(case.client.unsigned())
                .build()?,
        ),
        Target::Memory => Arc::new(object_store::memory::InMemory::new()),
        Target::Fs => {
            let dir = case.scratch.join("fs-object_store");
            std::fs::create_dir_all(&dir)?;
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir)?)
        }
        Target::SeaweedFs => Arc::new(
            AmazonS3Builder::from_env()
                .with_bucket_name(crate::s3_bucket())
                .with_unsigned_payload(case.client.unsigned())
                .build()?,
        ),
        Target::Azurite => Arc::new(
            MicrosoftAzureBuilder::from_env()
                .with_container_name(crate::azure_container())
                .build()?,
        ),
        Target::FakeGcs => {
            return Err(
                "object_store's GCS store writes through the XML API, which fake-gcs-server lacks"
                    .into(),
            );
        }
    })
}

fn opendal_operator(case: &Case) -> R<opendal::Operator> {
    use opendal::{Operator, services};
    Ok(match case.target {
        Target::Sink | Target::Wan0 | Target::Wan20 | Target::Wan80 => Operator::new(
            services::S3::default()
                .endpoint(&sink_url(case)?)
                .bucket("bench")
                .region("us-east-1")
                .access_key_id("bench")
                .secret_access_key("bench")
                .disable_config_load()
                .disable_ec2_metadata(),
        )?,
        Target::Memory => Operator::new(services::Memory::default())?,
        Target::Fs => {
            let dir = case.scratch.join("fs-opendal");
            std::fs::create_dir_all(&dir)?;
            Operator::new(services::Fs::default().root(&dir.to_string_lossy()))?
        }
        Target::SeaweedFs => Operator::new(
            services::S3::default()
                .endpoint(&env("AWS_ENDPOINT")?)
                .bucket(&crate::s3_bucket())
                .region(&std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into()))
                .access_key_id(&env("AWS_ACCESS_KEY_ID")?)
                .secret_access_key(&env("AWS_SECRET_ACCESS_KEY")?)
                .disable_config_load()
                .disable_ec2_metadata(),
        )?,
        Target::Azurite => {
            let account = env("AZURE_STORAGE_ACCOUNT_NAME")?;
            let base = env("AZURITE_BLOB_STORAGE_URL")?;
            Operator::new(
                services::Azblob::default()
                    .endpoint(&format!("{}/{account}", base.trim_end_matches('/')))
                    .container(&crate::azure_container())
                    .account_name(&account)
                    .account_key(&env("AZURE_STORAGE_ACCOUNT_KEY")?),
            )?
        }
        Target::FakeGcs => return Err("OpenDAL's GCS service is not built".into()),
    })
}

impl Runner {
    async fn new(case: &Case) -> R<Runner> {
        Ok(match case.client {
            Client::Cloudstore
            | Client::CloudstoreUnsigned
            | Client::CloudstoreUnsignedNoCrc
            | Client::CloudstoreRecorded
            | Client::CloudstoreBare
            | Client::CloudstoreDefaults
            | Client::CloudstoreDownloadFile
            | Client::CloudstoreGet => Runner::Cloudstore(cloudstore_store(case)?),
            Client::ObjectStore
            | Client::ObjectStoreUnsigned
            | Client::ObjectStoreDefaults
            | Client::ObjectStoreFile => Runner::ObjectStore(object_store_store(case)?),
            Client::OpenDal | Client::OpenDalDefaults | Client::OpenDalFile => {
                Runner::OpenDal(opendal_operator(case)?)
            }
        })
    }

    /// Writes the object from a 1 MiB source buffer: each client copies it once, as its
    /// API takes it (cloudstore and object_store from `&[u8]`, OpenDAL as owned `Bytes`).
    async fn upload(&self, case: &Case) -> R<()> {
        let source = crate::pattern(1 << 20);
        let key = case.key();
        match self {
            Runner::Cloudstore(store) => {
                let mut up = store.writer(&key, &Default::default())?;
                for _ in 0..case.mib {
                    up.write_all(&source).await?;
                }
                up.finish().await?;
            }
            Runner::ObjectStore(store) if case.client == Client::ObjectStoreDefaults => {
                let path = object_store::path::Path::from(key.as_str());
                let mut w = object_store::buffered::BufWriter::new(store.clone(), path);
                for _ in 0..case.mib {
                    w.write_all(&source).await?;
                }
                w.shutdown().await?;
            }
            Runner::ObjectStore(store) => {
                let path = object_store::path::Path::from(key.as_str());
                let upload = store.put_multipart(&path).await?;
                let mut w =
                    object_store::WriteMultipart::new_with_chunk_size(upload, part_size() as usize);
                for _ in 0..case.mib {
                    w.wait_for_capacity(CONCURRENCY).await?;
                    w.write(&source);
                }
                w.finish().await?;
            }
            Runner::OpenDal(op) if case.client == Client::OpenDalDefaults => {
                let mut w = op.writer(&key).await?;
                for _ in 0..case.mib {
                    w.write(Bytes::copy_from_slice(&source)).await?;
                }
                w.close().await?;
            }
            Runner::OpenDal(op) => {
                let mut w = op
                    .writer_with(&key)
                    .chunk(part_size() as usize)
                    .concurrent(CONCURRENCY)
                    .await?;
                for _ in 0..case.mib {
                    w.write(Bytes::copy_from_slice(&source)).await?;
                }
                w.close().await?;
            }
        }
        Ok(())
    }

    /// Reads the object and discards it; returns the bytes read.
    async fn download(&self, case: &Case) -> R<u64> {
        let key = case.key();
        Ok(match self {
            Runner::Cloudstore(store) if case.client == Client::CloudstoreDownloadFile => {
                let path = case.download_path().ok_or("no download path")?;
                let meta = store.download_file(&key, &path).await?;
                let total = std::fs::metadata(&path)?.len();
                if total != meta.size {
                    return Err("download_file wrote a short file".into());
                }
                total
            }
            Runner::Cloudstore(store) if case.client == Client::CloudstoreGet => {
                let body = store.get(&key).await?.into_checked_stream();
                consume(case, body.map_err(BoxError::from).boxed()).await?
            }
            // Owned chunks, as the peers' rows take them (no copy into a buffer).
            Runner::Cloudstore(store) => {
                let body = store.reader(&key).await?.into_stream();
                consume(case, body.map_err(BoxError::from).boxed()).await?
            }
            Runner::ObjectStore(store) if case.client == Client::ObjectStoreDefaults => {
                let path = object_store::path::Path::from(key.as_str());
                let body = store.get(&path).await?.into_stream();
                consume(case, body.map_err(BoxError::from).boxed()).await?
            }
            Runner::ObjectStore(store) => {
                let path = object_store::path::Path::from(key.as_str());
                let size = store.head(&path).await?.size;
                let ranges: Vec<std::ops::Range<u64>> = (0..size.div_ceil(part_size()))
                    .map(|i| i * part_size()..((i + 1) * part_size()).min(size))
                    .collect();
                let parts = futures::stream::iter(ranges)
                    .map(move |r| {
                        let (store, path) = (store.clone(), path.clone());
                        async move { store.get_range(&path, r).await }
                    })
                    .buffered(CONCURRENCY)
                    .map_err(BoxError::from);
                consume(case, parts.boxed()).await?
            }
            Runner::OpenDal(op) if case.client == Client::OpenDalDefaults => {
                let stream = op.reader(&key).await?.into_bytes_stream(..).await?;
                consume(case, stream.map_err(BoxError::from).boxed()).await?
            }
            Runner::OpenDal(op) => {
                let stream = op
                    .reader_with(&key)
                    .chunk(part_size() as usize)
                    .concurrent(CONCURRENCY)
                    .await?
                    .into_bytes_stream(..)
                    .await?
                    .map_err(BoxError::from);
                consume(case, stream.boxed()).await?
            }
        })
    }
}

/// Counts a streamed download (every client's but `download_file`), or for the peers' file
/// rows writes it in order into a file (each chunk one blocking write, as tokio's `File`
/// would copy it into a buffer of its own first) and syncs it: what a user of that crate
/// would write for a file.
async fn consume(case: &Case, mut chunks: futures::stream::BoxStream<'_, R<Bytes>>) -> R<u64> {
    use std::io::Write;
    let mut total = 0u64;
    if !case.client.to_file() {
        while let Some(chunk) = chunks.try_next().await? {
            total += chunk.len() as u64;
        }
        return Ok(total);
    }
    let path = case.download_path().ok_or("no download path")?;
    let mut file = std::fs::File::create(&path)?;
    while let Some(chunk) = chunks.try_next().await? {
        total += chunk.len() as u64;
        file = tokio::task::spawn_blocking(move || file.write_all(&chunk).map(|()| file)).await??;
    }
    tokio::task::spawn_blocking(move || file.sync_all()).await??;
    Ok(total)
}
