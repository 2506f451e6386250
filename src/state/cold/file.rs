//! One cold file: its columns, its sort order and row groups, how it is
//! written (deterministically: the same rows give the same bytes on every
//! replica) and how a read skips what it does not need.
//!
//! Every signal has the same columns (format 2); what each holds:
//!
//! | column            | spans                   | logs                 | metric points        |
//! |-------------------|-------------------------|----------------------|----------------------|
//! | `trace_id`        | trace id (bloom filter) | trace id or empty    | empty                |
//! | `name`            | service                 | service              | metric name          |
//! | `time_unix_nanos` | start                   | timestamp            | timestamp            |
//! | `duration_nanos`  | duration                | 0                    | 0                    |
//! | `status`          | status code             | severity code        | 0                    |
//! | `elided`          | which prefixes `key_rest` and `record_rest` leave out (`ELIDED_*`) |
//! | `key_rest`        | the hot record key, less the trace id it starts with (spans)      |
//! | `record_rest`     | the stored record (its `codec::encode` bytes, as the hot tier held them), less the key it starts with (spans) |
//!
//! The record makes every answer lossless; the typed columns are there for
//! pruning (row-group statistics, the bloom filter). A span's key is its
//! trace id ++ span id and its record starts with the same two ids: stored
//! once, which saved about 15 of format 1's 71 B/span (a span id, 8 random
//! bytes, does not compress).
//!
//! Spans are sorted by trace id, then start, then key, and a row group only
//! ends between traces: a trace-by-id read touches one row group. Logs and
//! metric points are sorted by (name, time, key).
//!
//! Format 1 (files without the `tael.cold.format` key-value metadata) had
//! `key`, `trace_id`, `name`, `time_unix_nanos`, `duration_nanos`, `status`
//! and `record`, keys and records whole, spans sorted by key: clusters hold
//! such files, so they are read (never written).

mod summary;

use std::fs;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::bloom_filter::Sbbf;
use parquet::column::reader::get_typed_column_reader;
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::metadata::{KeyValue, ParquetMetaData, RowGroupMetaData};
use parquet::file::properties::{EnabledStatistics, ReaderProperties, WriterProperties};
use parquet::file::reader::{ChunkReader, FileReader, RowGroupReader};
use parquet::file::serialized_reader::{
    ReadOptionsBuilder, SerializedFileReader, SerializedRowGroupReader,
};
use parquet::file::statistics::Statistics;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;

use super::Signal;
use crate::state::hot::{StoreError, StoreResult};

/// A row group of logs or metric points holds this many rows (but for the
/// last). Their reads are searches by name and time, which take many rows.
pub const ROWS_PER_ROW_GROUP: usize = 8_192;
/// A row group of spans holds at least this many rows (but for the last),
/// ending at the next trace boundary. Small, because a trace by id
/// decompresses the row group holding the trace (its pages, without a page
/// index): 2,048 spans are about 0.5 MB of records for the 8 or so wanted.
pub const SPAN_ROWS_PER_ROW_GROUP: usize = 2_048;

/// At least this many rows per row group (but for the last) for `signal`.
pub fn rows_per_row_group(signal: Signal) -> usize {
    match signal {
        Signal::Spans => SPAN_ROWS_PER_ROW_GROUP,
        Signal::Logs | Signal::Metrics => ROWS_PER_ROW_GROUP,
    }
}

/// At most this many rows per row group for `signal`: a trace larger than
/// that spans row groups.
pub fn max_rows_per_row_group(signal: Signal) -> usize {
    4 * rows_per_row_group(signal)
}
/// False-positive rate of the trace-id bloom filters.
const BLOOM_FPP: f64 = 0.01;
/// ZSTD level: the default of the zstd tool, a good ratio at low CPU. Level
/// 9 made spans' files 3% smaller and their writes 40% slower (and a move
/// holds apply while it writes).
const ZSTD_LEVEL: i32 = 3;
/// Written into every file instead of the library's version, so a library
/// upgrade alone does not make replicas' files differ.
const CREATED_BY: &str = "tael-raft cold tier";
/// The key-value metadata naming a file's format (absent: format 1).
const FORMAT_KEY: &str = "tael.cold.format";
/// The format this build writes.
pub const FORMAT_VERSION: u32 = 2;

const SCHEMA: &str = "message cold_record {
    required binary trace_id;
    required binary name (UTF8);
    required int64 time_unix_nanos;
    required int64 duration_nanos;
    required int32 status;
    required int32 elided;
    required binary key_rest;
    required binary record_rest;
}";

/// `elided`: the key is stored without the (non-empty) trace id it starts with.
const ELIDED_TRACE_ID_FROM_KEY: i32 = 1;
/// `elided`: the record is stored without the key it starts with.
const ELIDED_KEY_FROM_RECORD: i32 = 2;

/// Where a format keeps each column.
#[derive(Debug)]
pub(super) struct Columns {
    trace_id: usize,
    name: usize,
    time: usize,
    duration: usize,
    status: usize,
    /// Format 1 stored keys and records whole.
    elided: Option<usize>,
    key: usize,
    record: usize,
    count: usize,
}

const FORMAT_1: Columns = Columns {
    key: 0,
    trace_id: 1,
    name: 2,
    time: 3,
    duration: 4,
    status: 5,
    record: 6,
    elided: None,
    count: 7,
};

const FORMAT_2: Columns = Columns {
    trace_id: 0,
    name: 1,
    time: 2,
    duration: 3,
    status: 4,
    elided: Some(5),
    key: 6,
    record: 7,
    count: 8,
};

/// The columns of the file `meta` describes, by the format it names.
fn format_of(meta: &ParquetMetaData) -> StoreResult<&'static Columns> {
    let file = meta.file_metadata();
    let named = file
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|kv| kv.key == FORMAT_KEY))
        .map(|kv| kv.value.as_deref().unwrap_or(""));
    let columns = match named {
        None => &FORMAT_1,
        Some("2") => &FORMAT_2,
        Some(other) => {
            return Err(StoreError::Corrupt(format!(
                "cold file: format {other:?} is not one this build reads (1 to {FORMAT_VERSION})"
            )))
        }
    };
    if file.schema_descr().num_columns() != columns.count {
        return Err(StoreError::Corrupt(format!(
            "cold file: {} columns where its format has {}",
            file.schema_descr().num_columns(),
            columns.count
        )));
    }
    Ok(columns)
}

/// One record as a cold file stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColdRow {
    pub key: Vec<u8>,
    /// Empty when the record has none.
    pub trace_id: Vec<u8>,
    pub name: String,
    pub time_unix_nanos: u64,
    pub duration_nanos: u64,
    pub status: i32,
    pub record: Vec<u8>,
}

impl ColdRow {
    /// The `elided` flags of this row: which prefixes it stores once.
    fn elided(&self) -> i32 {
        let mut flags = 0;
        if !self.trace_id.is_empty() && self.key.starts_with(&self.trace_id) {
            flags |= ELIDED_TRACE_ID_FROM_KEY;
        }
        if !self.key.is_empty() && self.record.starts_with(&self.key) {
            flags |= ELIDED_KEY_FROM_RECORD;
        }
        flags
    }
}

/// Which rows a read wants; row groups that cannot hold one are skipped.
#[derive(Clone, Copy, Debug)]
pub struct RowFilter<'a> {
    /// Record times, inclusive.
    pub window: (u64, u64),
    pub trace_id: Option<&'a [u8]>,
    pub name: Option<&'a str>,
    pub key: Option<&'a [u8]>,
}

impl RowFilter<'_> {
    pub fn window(window: (u64, u64)) -> RowFilter<'static> {
        RowFilter {
            window,
            trace_id: None,
            name: None,
            key: None,
        }
    }
}

fn writer_properties(signal: Signal) -> WriterProperties {
    let col = |name: &str| ColumnPath::from(name);
    let mut props = WriterProperties::builder()
        .set_created_by(CREATED_BY.into())
        .set_key_value_metadata(Some(vec![KeyValue::new(
            FORMAT_KEY.into(),
            FORMAT_VERSION.to_string(),
        )]))
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(ZSTD_LEVEL).expect("a valid zstd level"),
        ))
        .set_max_row_group_row_count(None)
        // Statistics only on what reads prune by (trace id, name and time in
        // `may_hold`; duration and status for searches by them); no page
        // index: a read takes whole row groups.
        .set_statistics_enabled(EnabledStatistics::None)
        .set_offset_index_disabled(true)
        .set_bloom_filter_enabled(false)
        .set_column_bloom_filter_enabled(col("trace_id"), true)
        .set_column_bloom_filter_fpp(col("trace_id"), BLOOM_FPP)
        .set_column_bloom_filter_max_ndv(col("trace_id"), max_rows_per_row_group(signal) as u64);
    for pruned in [
        "trace_id",
        "name",
        "time_unix_nanos",
        "duration_nanos",
        "status",
    ] {
        props = props.set_column_statistics_enabled(col(pruned), EnabledStatistics::Chunk);
    }
    // Nearly unique per row: a dictionary only costs. Starts as deltas (a
    // trace's spans start close together); durations as bytes of equal
    // significance side by side, which ZSTD compresses (their high bytes
    // are mostly zero); lengths apart from the bytes. Measured on the
    // sizing test's spans: 3.1 and 0.6 B/span less than plain values, 0.2
    // less than plain byte arrays.
    for (unique, encoding) in [
        ("time_unix_nanos", Encoding::DELTA_BINARY_PACKED),
        ("duration_nanos", Encoding::BYTE_STREAM_SPLIT),
        ("key_rest", Encoding::DELTA_LENGTH_BYTE_ARRAY),
        ("record_rest", Encoding::DELTA_LENGTH_BYTE_ARRAY),
    ] {
        props = props
            .set_column_dictionary_enabled(col(unique), false)
            .set_column_encoding(col(unique), encoding);
    }
    props.build()
}

/// Sorts `rows` as `signal` stores them.
fn sort_rows(signal: Signal, rows: &mut [ColdRow]) {
    match signal {
        Signal::Spans => rows.sort_by(|a, b| {
            (&a.trace_id, a.time_unix_nanos, &a.key).cmp(&(&b.trace_id, b.time_unix_nanos, &b.key))
        }),
        Signal::Logs | Signal::Metrics => rows.sort_by(|a, b| {
            (a.name.as_str(), a.time_unix_nanos, &a.key).cmp(&(
                b.name.as_str(),
                b.time_unix_nanos,
                &b.key,
            ))
        }),
    }
}

/// Where the row groups of sorted `rows` end (exclusive indexes).
fn row_group_ends(signal: Signal, rows: &[ColdRow]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut start = 0;
    for i in 1..=rows.len() {
        let len = i - start;
        let boundary = i == rows.len()
            || len >= max_rows_per_row_group(signal)
            || (len >= rows_per_row_group(signal)
                && (signal != Signal::Spans || rows[i].trace_id != rows[i - 1].trace_id));
        if boundary {
            ends.push(i);
            start = i;
        }
    }
    ends
}

/// The file `signal`'s `rows` make (sorted here): the same bytes for the
/// same rows, whatever order they came in.
pub fn write_file(signal: Signal, mut rows: Vec<ColdRow>) -> StoreResult<Vec<u8>> {
    sort_rows(signal, &mut rows);
    let mut keys: Vec<&[u8]> = rows.iter().map(|r| r.key.as_slice()).collect();
    keys.sort_unstable();
    assert!(
        keys.windows(2).all(|w| w[0] != w[1]),
        "a cold file holds each record once"
    );
    let schema = Arc::new(parse_message_type(SCHEMA).map_err(pq)?);
    let mut out = Vec::new();
    let mut writer =
        SerializedFileWriter::new(&mut out, schema, Arc::new(writer_properties(signal)))
            .map_err(pq)?;
    let mut start = 0;
    for end in row_group_ends(signal, &rows) {
        write_row_group(&mut writer, &rows[start..end])?;
        start = end;
    }
    writer.close().map_err(pq)?;
    Ok(out)
}

fn write_row_group(
    writer: &mut SerializedFileWriter<&mut Vec<u8>>,
    rows: &[ColdRow],
) -> StoreResult<()> {
    let elided: Vec<i32> = rows.iter().map(ColdRow::elided).collect();
    let bytes = |f: &dyn Fn(usize, &ColdRow) -> &[u8]| -> Vec<ByteArray> {
        rows.iter()
            .enumerate()
            .map(|(i, r)| ByteArray::from(f(i, r).to_vec()))
            .collect()
    };
    let mut rg = writer.next_row_group().map_err(pq)?;
    let mut column = 0;
    while let Some(mut col) = rg.next_column().map_err(pq)? {
        let c = &FORMAT_2;
        match column {
            _ if column == c.trace_id => write_bytes(&mut col, bytes(&|_, r| &r.trace_id))?,
            _ if column == c.name => write_bytes(&mut col, bytes(&|_, r| r.name.as_bytes()))?,
            _ if column == c.time => write_i64(&mut col, rows.iter().map(|r| r.time_unix_nanos))?,
            _ if column == c.duration => {
                write_i64(&mut col, rows.iter().map(|r| r.duration_nanos))?
            }
            _ if column == c.status => write_i32(&mut col, rows.iter().map(|r| r.status))?,
            _ if Some(column) == c.elided => write_i32(&mut col, elided.iter().copied())?,
            _ if column == c.key => write_bytes(
                &mut col,
                bytes(&|i, r| {
                    let skip = elided[i] & ELIDED_TRACE_ID_FROM_KEY != 0;
                    &r.key[if skip { r.trace_id.len() } else { 0 }..]
                }),
            )?,
            _ if column == c.record => write_bytes(
                &mut col,
                bytes(&|i, r| {
                    let skip = elided[i] & ELIDED_KEY_FROM_RECORD != 0;
                    &r.record[if skip { r.key.len() } else { 0 }..]
                }),
            )?,
            other => unreachable!("the schema has no column {other}"),
        }
        col.close().map_err(pq)?;
        column += 1;
    }
    rg.close().map_err(pq)?;
    Ok(())
}

type ColumnWriter<'a> = parquet::file::writer::SerializedColumnWriter<'a>;

fn write_bytes(col: &mut ColumnWriter<'_>, values: Vec<ByteArray>) -> StoreResult<()> {
    col.typed::<ByteArrayType>()
        .write_batch(&values, None, None)
        .map_err(pq)?;
    Ok(())
}

fn write_i64(col: &mut ColumnWriter<'_>, values: impl Iterator<Item = u64>) -> StoreResult<()> {
    let values: Vec<i64> = values.map(to_i64).collect();
    col.typed::<Int64Type>()
        .write_batch(&values, None, None)
        .map_err(pq)?;
    Ok(())
}

fn write_i32(col: &mut ColumnWriter<'_>, values: impl Iterator<Item = i32>) -> StoreResult<()> {
    let values: Vec<i32> = values.collect();
    col.typed::<Int32Type>()
        .write_batch(&values, None, None)
        .map_err(pq)?;
    Ok(())
}

/// Times are unix nanoseconds: below `i64::MAX` until the year 2262.
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn pq(e: parquet::errors::ParquetError) -> StoreError {
    StoreError::Corrupt(format!("cold file: {e}"))
}

/// What a read of one file found.
#[derive(Debug, Default)]
pub struct FileRead {
    pub rows: Vec<ColdRow>,
    /// Rows examined in the row groups the read could not skip.
    pub examined: usize,
    pub row_groups_read: usize,
    pub row_groups_skipped: usize,
}

/// The rows of the file at `path` that `filter` wants, in file order.
///
/// Which row groups may hold one is decided from the file's summary (kept
/// in memory, see `summary.rs`): a file none of whose row groups can is
/// not opened.
pub fn read_rows(path: &Path, filter: &RowFilter<'_>) -> StoreResult<FileRead> {
    let summary = summary::get(path)?;
    let columns = summary.columns;
    let wanted: Vec<usize> = (0..summary.meta.num_row_groups())
        .filter(|&i| {
            may_hold(
                summary.meta.row_group(i),
                summary.trace_blooms[i].as_ref(),
                columns,
                filter,
            )
        })
        .collect();
    let mut out = FileRead {
        row_groups_skipped: summary.meta.num_row_groups() - wanted.len(),
        ..FileRead::default()
    };
    if wanted.is_empty() {
        return Ok(out);
    }
    let file = Arc::new(fs::File::open(path)?);
    let props = Arc::new(ReaderProperties::builder().build());
    for i in wanted {
        let rg = SerializedRowGroupReader::new(
            file.clone(),
            summary.meta.row_group(i),
            summary.meta.page_index_for_row_group(i),
            props.clone(),
        )
        .map_err(pq)?;
        out.row_groups_read += 1;
        read_row_group(&rg, columns, filter, &mut out)?;
    }
    Ok(out)
}

/// [`read_rows`] of a file a `reader` reads through ranged reads (an object
/// of the shared cold store): no summary is kept for those, so each read
/// takes the footer and the bloom filters from the object.
pub fn read_rows_from<R: ChunkReader + 'static>(
    reader: R,
    filter: &RowFilter<'_>,
) -> StoreResult<FileRead> {
    let options = ReadOptionsBuilder::new()
        .with_reader_properties(
            ReaderProperties::builder()
                .set_read_bloom_filter(true)
                .build(),
        )
        .build();
    let file = SerializedFileReader::new_with_options(reader, options).map_err(pq)?;
    let columns = format_of(file.metadata())?;
    let mut out = FileRead::default();
    for i in 0..file.num_row_groups() {
        let rg = file.get_row_group(i).map_err(pq)?;
        let bloom = rg.get_column_bloom_filter(columns.trace_id);
        if !may_hold(rg.metadata(), bloom, columns, filter) {
            out.row_groups_skipped += 1;
            continue;
        }
        out.row_groups_read += 1;
        read_row_group(rg.as_ref(), columns, filter, &mut out)?;
    }
    Ok(out)
}

/// Whether the row group `meta` (with the trace-id bloom filter `bloom`)
/// may hold a row `filter` wants, by its statistics and bloom filter.
fn may_hold(
    meta: &RowGroupMetaData,
    bloom: Option<&Sbbf>,
    columns: &Columns,
    filter: &RowFilter<'_>,
) -> bool {
    if let Some(Statistics::Int64(s)) = meta.column(columns.time).statistics() {
        let (from, to) = filter.window;
        if let (Some(&min), Some(&max)) = (s.min_opt(), s.max_opt()) {
            if max < to_i64(from) || min > to_i64(to) {
                return false;
            }
        }
    }
    let outside = |column: usize, value: &[u8]| {
        meta.column(column).statistics().is_some_and(|s| {
            match (s.min_bytes_opt(), s.max_bytes_opt()) {
                (Some(min), Some(max)) => value < min || value > max,
                _ => false,
            }
        })
    };
    if filter
        .name
        .is_some_and(|n| outside(columns.name, n.as_bytes()))
    {
        return false;
    }
    if let Some(trace) = filter.trace_id {
        // Spans are sorted by trace id: the range rules out all row groups
        // but one, without the bloom filter.
        if outside(columns.trace_id, trace) || bloom.is_some_and(|b| !b.check(trace)) {
            return false;
        }
    }
    true
}

/// Which rows of a row group whose trace-id column is `traces` a read takes,
/// as (rows skipped, rows taken); `None` when it takes none. A read of one
/// trace takes the rows from the trace's first to its last (both formats
/// sort by trace id first, so that is the trace), so the other columns
/// decode those rows alone; a bloom filter's false positive takes none.
fn rows_to_read(traces: &[ByteArray], trace_id: Option<&[u8]>) -> Option<(usize, usize)> {
    let Some(trace) = trace_id else {
        return (!traces.is_empty()).then_some((0, traces.len()));
    };
    let first = traces.iter().position(|t| t.data() == trace)?;
    let last = traces.iter().rposition(|t| t.data() == trace)?;
    Some((first, last + 1 - first))
}

fn read_row_group(
    rg: &dyn RowGroupReader,
    columns: &Columns,
    filter: &RowFilter<'_>,
    out: &mut FileRead,
) -> StoreResult<()> {
    let n = usize::try_from(rg.metadata().num_rows()).unwrap_or(0);
    let traces = read_bytes(rg, columns.trace_id, 0, n)?;
    if traces.len() != n {
        return Err(StoreError::Corrupt(
            "cold file: a row group's trace ids are fewer than its rows".into(),
        ));
    }
    let Some((skip, take)) = rows_to_read(&traces, filter.trace_id) else {
        return Ok(());
    };
    let traces = &traces[skip..skip + take];
    let times = read_i64(rg, columns.time, skip, take)?;
    let keys = read_bytes(rg, columns.key, skip, take)?;
    let names = read_bytes(rg, columns.name, skip, take)?;
    let durations = read_i64(rg, columns.duration, skip, take)?;
    let statuses = read_i32(rg, columns.status, skip, take)?;
    let records = read_bytes(rg, columns.record, skip, take)?;
    let elided = match columns.elided {
        Some(c) => read_i32(rg, c, skip, take)?,
        None => vec![0; times.len()],
    };
    let lengths = [
        keys.len(),
        traces.len(),
        names.len(),
        durations.len(),
        statuses.len(),
        records.len(),
        elided.len(),
    ];
    if lengths.iter().any(|&c| c != times.len()) {
        return Err(StoreError::Corrupt(
            "cold file: columns of a row group differ in length".into(),
        ));
    }
    let (from, to) = filter.window;
    for i in 0..times.len() {
        let time = u64::try_from(times[i]).unwrap_or(0);
        if time < from || time > to {
            continue;
        }
        out.examined += 1;
        let trace = traces[i].data();
        if filter.trace_id.is_some_and(|t| trace != t)
            || filter.name.is_some_and(|n| names[i].data() != n.as_bytes())
        {
            continue;
        }
        let key = join(trace, keys[i].data(), elided[i] & ELIDED_TRACE_ID_FROM_KEY);
        if filter.key.is_some_and(|k| key != k) {
            continue;
        }
        let record = join(&key, records[i].data(), elided[i] & ELIDED_KEY_FROM_RECORD);
        out.rows.push(ColdRow {
            key,
            trace_id: trace.to_vec(),
            name: String::from_utf8_lossy(names[i].data()).into_owned(),
            time_unix_nanos: time,
            duration_nanos: u64::try_from(durations[i]).unwrap_or(0),
            status: statuses[i],
            record,
        });
    }
    Ok(())
}

/// `rest`, after `prefix` when `elided` (a flag of the row) says it was
/// stored without it.
fn join(prefix: &[u8], rest: &[u8], elided: i32) -> Vec<u8> {
    if elided == 0 {
        return rest.to_vec();
    }
    let mut whole = Vec::with_capacity(prefix.len() + rest.len());
    whole.extend_from_slice(prefix);
    whole.extend_from_slice(rest);
    whole
}

macro_rules! column_reader {
    ($name:ident, $ty:ty, $value:ty) => {
        /// `rows` values of `column`, after its first `skip`.
        fn $name(
            rg: &dyn RowGroupReader,
            column: usize,
            skip: usize,
            rows: usize,
        ) -> StoreResult<Vec<$value>> {
            let mut reader =
                get_typed_column_reader::<$ty>(rg.get_column_reader(column).map_err(pq)?);
            if skip > 0 && reader.skip_records(skip).map_err(pq)? != skip {
                return Err(StoreError::Corrupt(
                    "cold file: a column of a row group ends early".into(),
                ));
            }
            let mut values: Vec<$value> = Vec::with_capacity(rows);
            while values.len() < rows {
                let (records, _, _) = reader
                    .read_records(rows - values.len(), None, None, &mut values)
                    .map_err(pq)?;
                if records == 0 {
                    break;
                }
            }
            Ok(values)
        }
    };
}

column_reader!(read_bytes, ByteArrayType, ByteArray);
column_reader!(read_i64, Int64Type, i64);
column_reader!(read_i32, Int32Type, i32);

#[cfg(test)]
mod tests {
    use super::*;

    fn span_row(trace: u8, span: u8, time: u64) -> ColdRow {
        let mut key = vec![trace; 16];
        key.extend_from_slice(&[span; 8]);
        ColdRow {
            key,
            trace_id: vec![trace; 16],
            name: format!("svc-{}", trace % 3),
            time_unix_nanos: time,
            duration_nanos: 5,
            status: 2,
            record: format!("span {trace} {span}").into_bytes(),
        }
    }

    fn write_to(dir: &Path, signal: Signal, rows: Vec<ColdRow>) -> std::path::PathBuf {
        let bytes = write_file(signal, rows).unwrap();
        let path = dir.join("f.parquet");
        fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn the_same_rows_in_any_order_give_the_same_bytes() {
        let rows: Vec<ColdRow> = (0..50).map(|i| span_row(i, 1, 1000 + i as u64)).collect();
        let mut reversed = rows.clone();
        reversed.reverse();
        let a = write_file(Signal::Spans, rows).unwrap();
        assert_eq!(a, write_file(Signal::Spans, reversed).unwrap());
        assert_eq!(&a[..4], b"PAR1");
    }

    #[test]
    fn spans_read_back_whole_by_trace_then_start() {
        let dir = tempfile::tempdir().unwrap();
        // Within a trace, span ids run against start times.
        let rows: Vec<ColdRow> = (0..20u8)
            .rev()
            .flat_map(|t| (0..3u8).map(move |s| span_row(t, s, 100 * t as u64 + 9 - s as u64)))
            .collect();
        let path = write_to(dir.path(), Signal::Spans, rows.clone());
        let read = read_rows(&path, &RowFilter::window((0, u64::MAX))).unwrap();
        let mut expected = rows;
        expected.sort_by_key(|r| (r.trace_id.clone(), r.time_unix_nanos));
        assert_eq!(read.rows, expected);
        assert_eq!(read.rows[0].key[16..], [2; 8], "the earliest span first");
        assert_eq!(read.examined, 60);
    }

    #[test]
    fn prefixes_are_stored_once_and_restored() {
        let dir = tempfile::tempdir().unwrap();
        let span = fixture_span_row(4, 1);
        assert_eq!(
            span.elided(),
            ELIDED_TRACE_ID_FROM_KEY | ELIDED_KEY_FROM_RECORD
        );
        let log = fixture_log_row(2);
        assert_eq!(
            log.elided(),
            0,
            "a log key does not start with its trace id"
        );
        let mut odd = fixture_span_row(5, 1);
        odd.key[0] ^= 1;
        assert_eq!(odd.elided(), 0);
        let no_trace = ColdRow {
            trace_id: Vec::new(),
            ..fixture_span_row(6, 1)
        };
        assert_eq!(no_trace.elided(), ELIDED_KEY_FROM_RECORD);
        let rows = vec![span, odd, no_trace];
        let path = write_to(dir.path(), Signal::Spans, rows.clone());
        let mut read = read_rows(&path, &RowFilter::window((0, u64::MAX)))
            .unwrap()
            .rows;
        read.sort_by(|a, b| a.key.cmp(&b.key));
        let mut expected = rows;
        expected.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(read, expected);
        let whole: usize = expected.iter().map(|r| r.key.len() + r.record.len()).sum();
        assert!(
            fs::metadata(&path).unwrap().len() < whole as u64 + 1_500,
            "sanity: a tiny file"
        );
    }

    /// Rows of the format-1 fixtures (`testdata/v1-*.parquet`, written by
    /// the format-1 writer from these rows).
    fn fixture_span_row(trace: u8, span: u8) -> ColdRow {
        let mut key = vec![trace; 16];
        key.extend_from_slice(&[span; 8]);
        let mut record = key.clone();
        record.extend_from_slice(format!("span {trace} {span}").as_bytes());
        ColdRow {
            key,
            trace_id: vec![trace; 16],
            name: format!("svc-{}", trace % 3),
            time_unix_nanos: 1_000 * u64::from(trace) + u64::from(span),
            duration_nanos: 5 + u64::from(span),
            status: i32::from(span % 3),
            record,
        }
    }

    fn fixture_log_row(i: u64) -> ColdRow {
        ColdRow {
            key: [i.to_be_bytes(), (i * 7).to_be_bytes()].concat(),
            trace_id: if i % 2 == 0 {
                vec![i as u8; 16]
            } else {
                Vec::new()
            },
            name: if i % 3 == 0 { "a".into() } else { "b".into() },
            time_unix_nanos: i,
            duration_nanos: 0,
            status: 9,
            record: format!("log {i}").into_bytes(),
        }
    }

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("src/state/cold/testdata")
            .join(name)
    }

    /// Reads of a file of each format give the same answers.
    #[test]
    fn files_of_format_1_and_2_read_alike() {
        let dir = tempfile::tempdir().unwrap();
        let spans: Vec<ColdRow> = (0..20u8)
            .flat_map(|t| (0..3u8).map(move |s| fixture_span_row(t, s)))
            .collect();
        let logs: Vec<ColdRow> = (0..40u64).map(fixture_log_row).collect();
        let v2_spans = dir.path().join("spans.parquet");
        fs::write(&v2_spans, write_file(Signal::Spans, spans.clone()).unwrap()).unwrap();
        let v2_logs = dir.path().join("logs.parquet");
        fs::write(&v2_logs, write_file(Signal::Logs, logs.clone()).unwrap()).unwrap();
        let sorted = |mut rows: Vec<ColdRow>| {
            rows.sort_by(|a, b| a.key.cmp(&b.key));
            rows
        };
        let trace = [7u8; 16];
        let key = fixture_span_row(7, 2).key;
        let filters = [
            RowFilter::window((0, u64::MAX)),
            RowFilter::window((2_000, 5_001)),
            RowFilter {
                trace_id: Some(&trace),
                ..RowFilter::window((0, u64::MAX))
            },
            RowFilter {
                trace_id: Some(&key[..16]),
                key: Some(&key),
                ..RowFilter::window((0, u64::MAX))
            },
            RowFilter {
                name: Some("svc-1"),
                ..RowFilter::window((0, u64::MAX))
            },
        ];
        for (i, filter) in filters.iter().enumerate() {
            let v1 = read_rows(&fixture("v1-spans.parquet"), filter).unwrap();
            let v2 = read_rows(&v2_spans, filter).unwrap();
            assert_eq!(sorted(v1.rows.clone()), sorted(v2.rows), "filter {i}");
            let expected: Vec<ColdRow> = spans
                .iter()
                .filter(|r| {
                    (filter.window.0..=filter.window.1).contains(&r.time_unix_nanos)
                        && filter.trace_id.is_none_or(|t| r.trace_id == t)
                        && filter.key.is_none_or(|k| r.key == k)
                        && filter.name.is_none_or(|n| r.name == n)
                })
                .cloned()
                .collect();
            assert!(!expected.is_empty());
            assert_eq!(sorted(v1.rows), sorted(expected), "filter {i}");
        }
        let logs_filter = RowFilter {
            name: Some("a"),
            ..RowFilter::window((3, 30))
        };
        let v1 = read_rows(&fixture("v1-logs.parquet"), &logs_filter).unwrap();
        let v2 = read_rows(&v2_logs, &logs_filter).unwrap();
        assert_eq!(v1.rows, v2.rows, "logs: the same rows in the same order");
        let times: Vec<u64> = v1.rows.iter().map(|r| r.time_unix_nanos).collect();
        assert_eq!(times, [3, 6, 9, 12, 15, 18, 21, 24, 27, 30]);
        assert_eq!(v1.rows[1], fixture_log_row(6));
    }

    #[test]
    fn an_unknown_format_is_refused() {
        let schema = parquet::schema::types::SchemaDescriptor::new(Arc::new(
            parse_message_type(SCHEMA).unwrap(),
        ));
        let meta = |format: Option<&str>| {
            ParquetMetaData::new(
                parquet::file::metadata::FileMetaData::new(
                    2,
                    0,
                    None,
                    format.map(|f| vec![KeyValue::new(FORMAT_KEY.into(), f.to_string())]),
                    Arc::new(schema.clone()),
                    None,
                ),
                Vec::new(),
            )
        };
        assert_eq!(format_of(&meta(Some("2"))).unwrap().count, 8);
        let err = format_of(&meta(Some("3"))).unwrap_err().to_string();
        assert!(err.contains("\"3\" is not one this build reads"), "{err}");
        let err = format_of(&meta(None)).unwrap_err().to_string();
        assert!(err.contains("8 columns where its format has 7"), "{err}");
    }

    #[test]
    fn a_summary_is_kept_until_its_file_changes_and_a_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_to(dir.path(), Signal::Spans, vec![span_row(1, 1, 10)]);
        let all = RowFilter::window((0, u64::MAX));
        assert_eq!(read_rows(&path, &all).unwrap().rows.len(), 1);
        assert!(summary::cached(&path));
        let rows = vec![span_row(1, 1, 10), span_row(2, 1, 20)];
        fs::write(&path, write_file(Signal::Spans, rows).unwrap()).unwrap();
        assert_eq!(read_rows(&path, &all).unwrap().rows.len(), 2, "reloaded");
        fs::remove_file(&path).unwrap();
        let trace = [3u8; 16];
        let ruled_out = RowFilter {
            trace_id: Some(&trace),
            ..all
        };
        match read_rows(&path, &ruled_out) {
            Err(StoreError::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::NotFound),
            other => panic!("a missing file read as {other:?}"),
        }
    }

    #[test]
    fn a_trace_read_touches_one_row_group_and_skips_the_others() {
        let dir = tempfile::tempdir().unwrap();
        // Traces of 7 spans each, so row group boundaries fall mid-count
        // and must be moved to trace boundaries.
        let traces = 3 * SPAN_ROWS_PER_ROW_GROUP / 7 + 2;
        // The first row group's minimum is reached inside this trace.
        let straddling = (SPAN_ROWS_PER_ROW_GROUP / 7) as u64;
        let rows: Vec<ColdRow> = (0..traces)
            .flat_map(|t| {
                (0..7u8).map(move |s| {
                    let mut r = span_row(0, s, t as u64);
                    let mut id = [0u8; 16];
                    id[..8].copy_from_slice(&(t as u64).to_be_bytes());
                    r.trace_id = id.to_vec();
                    r.key = [&id[..], &[s; 8]].concat();
                    r
                })
            })
            .collect();
        let path = write_to(dir.path(), Signal::Spans, rows);
        for t in [0u64, straddling, straddling + 1, traces as u64 - 1] {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&t.to_be_bytes());
            let filter = RowFilter {
                trace_id: Some(&id),
                ..RowFilter::window((0, u64::MAX))
            };
            let read = read_rows(&path, &filter).unwrap();
            assert_eq!(read.rows.len(), 7, "trace {t}");
            assert_eq!(read.row_groups_read, 1, "trace {t}: one row group");
            assert_eq!(read.examined, 7, "trace {t}: only its rows decoded");
            assert!(
                read.row_groups_skipped >= 2,
                "trace {t}: bloom filters skip"
            );
        }
    }

    #[test]
    fn a_trace_read_takes_the_rows_from_its_first_to_its_last() {
        let ids: Vec<ByteArray> = [1u8, 1, 2, 2, 2, 3]
            .iter()
            .map(|&b| ByteArray::from(vec![b; 16]))
            .collect();
        assert_eq!(rows_to_read(&ids, Some(&[2; 16])), Some((2, 3)));
        assert_eq!(rows_to_read(&ids, Some(&[3; 16])), Some((5, 1)));
        assert_eq!(rows_to_read(&ids, Some(&[9; 16])), None, "a false positive");
        assert_eq!(rows_to_read(&ids, None), Some((0, 6)));
        assert_eq!(rows_to_read(&[], None), None);
    }

    #[test]
    fn span_row_groups_are_smaller_than_other_signals() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<ColdRow> = (0..2 * SPAN_ROWS_PER_ROW_GROUP)
            .map(|i| {
                let mut r = span_row(0, 0, i as u64);
                r.trace_id = (i as u128).to_be_bytes().to_vec();
                r.key = [&r.trace_id[..], &[0; 8]].concat();
                r
            })
            .collect();
        let path = write_to(dir.path(), Signal::Spans, rows);
        let read = read_rows(&path, &RowFilter::window((0, u64::MAX))).unwrap();
        assert_eq!(read.row_groups_read, 2);
        assert_eq!(read.examined, 2 * SPAN_ROWS_PER_ROW_GROUP);
    }

    #[test]
    fn a_time_window_skips_row_groups_outside_it() {
        let dir = tempfile::tempdir().unwrap();
        // Logs sorted by (name, time): two services, each its own groups.
        let rows: Vec<ColdRow> = (0..(2 * ROWS_PER_ROW_GROUP) as u64)
            .map(|i| ColdRow {
                key: i.to_be_bytes().to_vec(),
                trace_id: Vec::new(),
                name: if i % 2 == 0 { "a".into() } else { "b".into() },
                time_unix_nanos: i,
                duration_nanos: 0,
                status: 9,
                record: vec![1, 2, 3],
            })
            .collect();
        let path = write_to(dir.path(), Signal::Logs, rows);
        let filter = RowFilter {
            name: Some("b"),
            ..RowFilter::window((0, 10))
        };
        let read = read_rows(&path, &filter).unwrap();
        assert_eq!(
            read.rows
                .iter()
                .map(|r| r.time_unix_nanos)
                .collect::<Vec<_>>(),
            [1, 3, 5, 7, 9]
        );
        assert_eq!(read.row_groups_read, 1);
        assert_eq!(read.row_groups_skipped, 1);
        let none = read_rows(&path, &RowFilter::window((1 << 40, u64::MAX))).unwrap();
        assert_eq!((none.rows.len(), none.row_groups_read), (0, 0));
    }
}
