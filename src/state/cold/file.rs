//! One cold file: its columns, its sort order and row groups, how it is
//! written (deterministically: the same rows give the same bytes on every
//! replica) and how a read skips what it does not need.
//!
//! Every signal has the same columns; what each holds:
//!
//! | column            | spans                   | logs                 | metric points        |
//! |-------------------|-------------------------|----------------------|----------------------|
//! | `key`             | trace id ++ span id     | hot record key       | hot record key       |
//! | `trace_id`        | trace id (bloom filter) | trace id or empty    | empty                |
//! | `name`            | service                 | service              | metric name          |
//! | `time_unix_nanos` | start                   | timestamp            | timestamp            |
//! | `duration_nanos`  | duration                | 0                    | 0                    |
//! | `status`          | status code             | severity code        | 0                    |
//! | `record`          | the stored record: its `codec::encode` bytes, as the hot tier held them |
//!
//! `record` makes every answer lossless; the typed columns are there for
//! pruning (row-group statistics, the page index, the bloom filter).
//! Spans are sorted by key (so by trace id), and a row group only ends
//! between traces: a trace-by-id read touches one row group. Logs and
//! metric points are sorted by (name, time, key).

use std::fs;
use std::path::Path;
use std::sync::Arc;

use parquet::basic::{Compression, ZstdLevel};
use parquet::column::reader::get_typed_column_reader;
use parquet::data_type::{ByteArray, ByteArrayType, Int32Type, Int64Type};
use parquet::file::properties::{EnabledStatistics, ReaderProperties, WriterProperties};
use parquet::file::reader::{ChunkReader, FileReader, RowGroupReader};
use parquet::file::serialized_reader::{ReadOptionsBuilder, SerializedFileReader};
use parquet::file::statistics::Statistics;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use parquet::schema::types::ColumnPath;

use super::Signal;
use crate::state::hot::{StoreError, StoreResult};

/// A row group holds at least this many rows (but for the last), ending at
/// the next trace boundary for spans.
pub const ROWS_PER_ROW_GROUP: usize = 8_192;
/// ... and at most this many: a trace larger than that spans row groups.
pub const MAX_ROWS_PER_ROW_GROUP: usize = 4 * ROWS_PER_ROW_GROUP;
/// False-positive rate of the trace-id bloom filters.
const BLOOM_FPP: f64 = 0.01;
/// ZSTD level: the default of the zstd tool, a good ratio at low CPU.
const ZSTD_LEVEL: i32 = 3;
/// Written into every file instead of the library's version, so a library
/// upgrade alone does not make replicas' files differ.
const CREATED_BY: &str = "tael-raft cold tier v1";

const SCHEMA: &str = "message cold_record {
    required binary key;
    required binary trace_id;
    required binary name (UTF8);
    required int64 time_unix_nanos;
    required int64 duration_nanos;
    required int32 status;
    required binary record;
}";

const COL_KEY: usize = 0;
const COL_TRACE_ID: usize = 1;
const COL_NAME: usize = 2;
const COL_TIME: usize = 3;
const COL_DURATION: usize = 4;
const COL_STATUS: usize = 5;
const COL_RECORD: usize = 6;

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

fn writer_properties() -> WriterProperties {
    let trace_id = ColumnPath::from("trace_id");
    let record = ColumnPath::from("record");
    let key = ColumnPath::from("key");
    WriterProperties::builder()
        .set_created_by(CREATED_BY.into())
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(ZSTD_LEVEL).expect("a valid zstd level"),
        ))
        // Page-level statistics: the column index and offset index (the
        // page index) besides the row groups' statistics.
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(None)
        .set_bloom_filter_enabled(false)
        .set_column_bloom_filter_enabled(trace_id.clone(), true)
        .set_column_bloom_filter_fpp(trace_id.clone(), BLOOM_FPP)
        .set_column_bloom_filter_max_ndv(trace_id, MAX_ROWS_PER_ROW_GROUP as u64)
        // Unique per row: a dictionary only costs.
        .set_column_dictionary_enabled(record.clone(), false)
        .set_column_dictionary_enabled(key.clone(), false)
        // Statistics of whole records are useless and large.
        .set_column_statistics_enabled(record, EnabledStatistics::None)
        .set_column_statistics_enabled(key, EnabledStatistics::Chunk)
        .build()
}

/// Sorts `rows` as `signal` stores them.
fn sort_rows(signal: Signal, rows: &mut [ColdRow]) {
    match signal {
        Signal::Spans => rows.sort_by(|a, b| a.key.cmp(&b.key)),
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
            || len >= MAX_ROWS_PER_ROW_GROUP
            || (len >= ROWS_PER_ROW_GROUP
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
    assert!(
        rows.windows(2).all(|w| w[0].key != w[1].key),
        "a cold file holds each record once"
    );
    let schema = Arc::new(parse_message_type(SCHEMA).map_err(pq)?);
    let mut out = Vec::new();
    let mut writer =
        SerializedFileWriter::new(&mut out, schema, Arc::new(writer_properties())).map_err(pq)?;
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
    let bytes = |f: &dyn Fn(&ColdRow) -> &[u8]| -> Vec<ByteArray> {
        rows.iter()
            .map(|r| ByteArray::from(f(r).to_vec()))
            .collect()
    };
    let mut rg = writer.next_row_group().map_err(pq)?;
    let mut column = 0;
    while let Some(mut col) = rg.next_column().map_err(pq)? {
        match column {
            COL_KEY => write_bytes(&mut col, bytes(&|r| &r.key))?,
            COL_TRACE_ID => write_bytes(&mut col, bytes(&|r| &r.trace_id))?,
            COL_NAME => write_bytes(&mut col, bytes(&|r| r.name.as_bytes()))?,
            COL_TIME | COL_DURATION => {
                let v: Vec<i64> = rows
                    .iter()
                    .map(|r| {
                        let n = if column == COL_TIME {
                            r.time_unix_nanos
                        } else {
                            r.duration_nanos
                        };
                        to_i64(n)
                    })
                    .collect();
                col.typed::<Int64Type>()
                    .write_batch(&v, None, None)
                    .map_err(pq)?;
            }
            COL_STATUS => {
                let v: Vec<i32> = rows.iter().map(|r| r.status).collect();
                col.typed::<Int32Type>()
                    .write_batch(&v, None, None)
                    .map_err(pq)?;
            }
            COL_RECORD => write_bytes(&mut col, bytes(&|r| &r.record))?,
            other => unreachable!("the schema has no column {other}"),
        }
        col.close().map_err(pq)?;
        column += 1;
    }
    rg.close().map_err(pq)?;
    Ok(())
}

fn write_bytes(
    col: &mut parquet::file::writer::SerializedColumnWriter<'_>,
    values: Vec<ByteArray>,
) -> StoreResult<()> {
    col.typed::<ByteArrayType>()
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
pub fn read_rows(path: &Path, filter: &RowFilter<'_>) -> StoreResult<FileRead> {
    read_rows_from(fs::File::open(path)?, filter)
}

/// [`read_rows`] of a file `reader` reads (a local file, or an object
/// through ranged reads).
pub fn read_rows_from<R: ChunkReader + 'static>(
    file: R,
    filter: &RowFilter<'_>,
) -> StoreResult<FileRead> {
    let options = ReadOptionsBuilder::new()
        .with_reader_properties(
            ReaderProperties::builder()
                .set_read_bloom_filter(true)
                .build(),
        )
        .build();
    let reader = SerializedFileReader::new_with_options(file, options).map_err(pq)?;
    let mut out = FileRead::default();
    for i in 0..reader.num_row_groups() {
        let rg = reader.get_row_group(i).map_err(pq)?;
        if !may_hold(rg.as_ref(), filter) {
            out.row_groups_skipped += 1;
            continue;
        }
        out.row_groups_read += 1;
        read_row_group(rg.as_ref(), filter, &mut out)?;
    }
    Ok(out)
}

/// Whether the row group `rg` may hold a row `filter` wants, by its
/// statistics and bloom filter.
fn may_hold(rg: &dyn RowGroupReader, filter: &RowFilter<'_>) -> bool {
    let meta = rg.metadata();
    if let Some(Statistics::Int64(s)) = meta.column(COL_TIME).statistics() {
        let (from, to) = filter.window;
        if let (Some(&min), Some(&max)) = (s.min_opt(), s.max_opt()) {
            if max < to_i64(from) || min > to_i64(to) {
                return false;
            }
        }
    }
    if let Some(name) = filter.name {
        if let Some(s) = meta.column(COL_NAME).statistics() {
            if let (Some(min), Some(max)) = (s.min_bytes_opt(), s.max_bytes_opt()) {
                if name.as_bytes() < min || name.as_bytes() > max {
                    return false;
                }
            }
        }
    }
    if let Some(trace) = filter.trace_id {
        if let Some(bloom) = rg.get_column_bloom_filter(COL_TRACE_ID) {
            if !bloom.check(trace) {
                return false;
            }
        }
    }
    true
}

fn read_row_group(
    rg: &dyn RowGroupReader,
    filter: &RowFilter<'_>,
    out: &mut FileRead,
) -> StoreResult<()> {
    let n = usize::try_from(rg.metadata().num_rows()).unwrap_or(0);
    let times = read_i64(rg, COL_TIME, n)?;
    let keys = read_bytes(rg, COL_KEY, n)?;
    let traces = read_bytes(rg, COL_TRACE_ID, n)?;
    let names = read_bytes(rg, COL_NAME, n)?;
    let durations = read_i64(rg, COL_DURATION, n)?;
    let statuses = read_i32(rg, COL_STATUS, n)?;
    let records = read_bytes(rg, COL_RECORD, n)?;
    let columns = [
        keys.len(),
        traces.len(),
        names.len(),
        durations.len(),
        statuses.len(),
        records.len(),
    ];
    if columns.iter().any(|&c| c != times.len()) {
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
        let wanted = filter.trace_id.is_none_or(|t| traces[i].data() == t)
            && filter.name.is_none_or(|n| names[i].data() == n.as_bytes())
            && filter.key.is_none_or(|k| keys[i].data() == k);
        if !wanted {
            continue;
        }
        out.rows.push(ColdRow {
            key: keys[i].data().to_vec(),
            trace_id: traces[i].data().to_vec(),
            name: String::from_utf8_lossy(names[i].data()).into_owned(),
            time_unix_nanos: time,
            duration_nanos: u64::try_from(durations[i]).unwrap_or(0),
            status: statuses[i],
            record: records[i].data().to_vec(),
        });
    }
    Ok(())
}

macro_rules! column_reader {
    ($name:ident, $ty:ty, $value:ty) => {
        fn $name(rg: &dyn RowGroupReader, column: usize, rows: usize) -> StoreResult<Vec<$value>> {
            let mut reader =
                get_typed_column_reader::<$ty>(rg.get_column_reader(column).map_err(pq)?);
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
    fn rows_read_back_whole_and_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let rows: Vec<ColdRow> = (0..20u8)
            .rev()
            .flat_map(|t| (0..3u8).map(move |s| span_row(t, s, 100 * t as u64 + s as u64)))
            .collect();
        let path = write_to(dir.path(), Signal::Spans, rows.clone());
        let read = read_rows(&path, &RowFilter::window((0, u64::MAX))).unwrap();
        let mut expected = rows;
        expected.sort_by(|a, b| a.key.cmp(&b.key));
        assert_eq!(read.rows, expected);
        assert_eq!(read.examined, 60);
    }

    #[test]
    fn a_trace_read_touches_one_row_group_and_skips_the_others() {
        let dir = tempfile::tempdir().unwrap();
        // Traces of 7 spans each, so row group boundaries fall mid-count
        // and must be moved to trace boundaries.
        let traces = 3 * ROWS_PER_ROW_GROUP / 7 + 2;
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
        for t in [0u64, 1170, 1171, traces as u64 - 1] {
            let mut id = [0u8; 16];
            id[..8].copy_from_slice(&t.to_be_bytes());
            let filter = RowFilter {
                trace_id: Some(&id),
                ..RowFilter::window((0, u64::MAX))
            };
            let read = read_rows(&path, &filter).unwrap();
            assert_eq!(read.rows.len(), 7, "trace {t}");
            assert_eq!(read.row_groups_read, 1, "trace {t}: one row group");
            assert!(
                read.row_groups_skipped >= 2,
                "trace {t}: bloom filters skip"
            );
        }
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
