//! A cloudstore `Store` under a real object_store consumer: the `parquet` crate's async
//! reader reads a Parquet file through `Store::into_object_store()`.
//!
//! The store is a `RouterBackend`: keys under `hot/` live in memory, everything else in a
//! local directory. A table is written to each side with Arrow's Parquet writer, read back
//! with `ParquetRecordBatchStreamBuilder` over the `Arc<dyn ObjectStore>` (the footer by a
//! suffix range, then the column chunks by ranges), and compared with what was written.
//!
//! ```text
//! cargo run -p cloudstore-interop
//! ```

use std::ops::Range;
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::{AsyncFileReader, MetadataSuffixFetch};
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::WriterProperties;

use cloudstore::middleware::RouterBackend;
use cloudstore::{FsBackend, MemoryBackend, Store};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Parquet's async reader over any `ObjectStore` (the pattern the parquet crate documents).
struct ObjectReader {
    store: Arc<dyn ObjectStore>,
    path: Path,
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl AsyncFileReader for ObjectReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.store
                .get_range(&self.path, range)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            self.store
                .get_ranges(&self.path, &ranges)
                .await
                .map_err(external)
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let metadata = ParquetMetaDataReader::new()
                .with_arrow_reader_options(options)
                .load_via_suffix_and_finish(self)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

impl MetadataSuffixFetch for &mut ObjectReader {
    fn fetch_suffix(&mut self, suffix: usize) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        let options = GetOptions {
            range: Some(GetRange::Suffix(suffix as u64)),
            ..Default::default()
        };
        async move {
            let got = self
                .store
                .get_opts(&self.path, options)
                .await
                .map_err(external)?;
            got.bytes().await.map_err(external)
        }
        .boxed()
    }
}

/// A table of `rows` rows: ids and names, in batches of 1,000 rows.
fn table(rows: i64) -> Result<Vec<RecordBatch>, BoxError> {
    let mut batches = Vec::new();
    for start in (0..rows).step_by(1000) {
        let ids: Vec<i64> = (start..(start + 1000).min(rows)).collect();
        let names: Vec<String> = ids.iter().map(|i| format!("customer-{i:06}")).collect();
        batches.push(RecordBatch::try_from_iter([
            ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
            ("name", Arc::new(StringArray::from(names)) as ArrayRef),
        ])?);
    }
    Ok(batches)
}

/// The rows of `batches`, whatever their split into batches.
fn rows(batches: &[RecordBatch]) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    for b in batches {
        let ids = b.column(0).as_any().downcast_ref::<Int64Array>();
        let names = b.column(1).as_any().downcast_ref::<StringArray>();
        if let (Some(ids), Some(names)) = (ids, names) {
            out.extend((0..b.num_rows()).map(|i| (ids.value(i), names.value(i).to_string())));
        }
    }
    out
}

/// The table as a Parquet file: small row groups, so the reader fetches several ranges.
fn parquet_file(batches: &[RecordBatch]) -> Result<Vec<u8>, BoxError> {
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(2500))
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batches[0].schema(), Some(props))?;
    for b in batches {
        writer.write(b)?;
    }
    writer.close()?;
    Ok(out)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let dir = tempfile::tempdir()?;
    let router = RouterBackend::new(Arc::new(FsBackend::new(dir.path())?))
        .route("hot/", Arc::new(MemoryBackend::new()));
    // The two lines a consumer needs: a Store, handed over as an object store.
    let store = Store::new(router);
    let os: Arc<dyn ObjectStore> = store.clone().into_object_store();

    let batches = table(10_000)?;
    let file = parquet_file(&batches)?;
    for key in [
        "hot/orders/2026-12-02.parquet",
        "archive/orders/2026-12-01.parquet",
    ] {
        let path = Path::parse(key)?;
        os.put(&path, Bytes::from(file.clone()).into()).await?;

        let reader = ObjectReader {
            store: os.clone(),
            path: path.clone(),
        };
        let stream = ParquetRecordBatchStreamBuilder::new(reader)
            .await?
            .with_batch_size(1000)
            .build()?;
        let read: Vec<RecordBatch> = stream.try_collect().await?;
        let (got, want) = (rows(&read), rows(&batches));
        if read.first().map(RecordBatch::schema) != Some(batches[0].schema()) || got != want {
            return Err(format!("{key}: the rows read differ from those written").into());
        }
        println!(
            "{key}: {} bytes of Parquet, {} rows in {} batches read back through object_store, equal to those written",
            file.len(),
            got.len(),
            read.len()
        );
    }
    // The router put each file where its prefix says.
    let on_disk = dir.path().join("archive/orders/2026-12-01.parquet");
    println!(
        "on disk: {} ({} bytes); in memory: hot/orders/2026-12-02.parquet ({} bytes)",
        on_disk.display(),
        std::fs::metadata(&on_disk)?.len(),
        store.head("hot/orders/2026-12-02.parquet").await?.size
    );
    Ok(())
}
