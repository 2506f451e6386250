//! Readers for the golden histories in `jepsen-golden/` (see its README.md).
//! The repository ships them as test data under [`BUNDLED_DIR`]; the tests
//! read them from there unless `TAEL_JEPSEN_GOLDEN` names another copy.
//!
//! Two formats, both of a single compare-and-set register:
//! * `etcd-cas/*.log`: Jepsen log lines `INFO  jepsen.util - 3 :invoke :read nil`
//!   (tab- or space-separated) with expected verdicts in `verdicts.tsv`;
//! * `knossos-cas/{good,bad}/*.edn`: an EDN vector (or list) of op maps;
//!   `good/` must be linearizable, `bad/` must not.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::edn::{self, Edn};
use crate::history::{Op, OpKind, Value, F};

/// Where the golden histories live, relative to this crate's directory.
pub const BUNDLED_DIR: &str = "testdata/jepsen-golden";

/// Names another golden directory for the tests (a larger or newer set).
pub const DIR_ENV: &str = "TAEL_JEPSEN_GOLDEN";

/// The golden directory the tests use: `$TAEL_JEPSEN_GOLDEN` when set,
/// otherwise the copy shipped in this crate, so a plain clone can run them.
pub fn test_dir() -> PathBuf {
    match std::env::var_os(DIR_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => bundled_dir(),
    }
}

/// The copy shipped with the crate's sources.
pub fn bundled_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(BUNDLED_DIR)
}

/// Which reader a golden file needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoldenFormat {
    EtcdLog,
    KnossosEdn,
}

/// A golden history file and the verdict it must get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldenCase {
    pub path: PathBuf,
    pub format: GoldenFormat,
    /// `true`: a linearization exists; `false`: none does.
    pub expected_linearizable: bool,
}

impl GoldenCase {
    /// Reads and parses the history.
    pub fn load(&self) -> Result<Vec<Op>, String> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| format!("{}: {e}", self.path.display()))?;
        let parsed = match self.format {
            GoldenFormat::EtcdLog => parse_etcd_log(&text),
            GoldenFormat::KnossosEdn => parse_knossos_edn(&text),
        };
        parsed.map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

impl fmt::Display for GoldenCase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

/// Finds every golden case under `dir`, which may be the top `jepsen-golden`
/// directory, `etcd-cas`, `knossos-cas`, or one of `knossos-cas/{good,bad}`.
///
/// Fails (rather than returning an empty list) when `dir` is missing or holds
/// no golden history, and when `verdicts.tsv` and the `.log` files disagree,
/// so that a broken data set can never pass as "all verdicts agree".
pub fn discover(dir: &Path) -> Result<Vec<GoldenCase>, String> {
    if !dir.is_dir() {
        return Err(format!("golden directory {} does not exist", dir.display()));
    }
    let mut cases = Vec::new();
    collect(dir, &mut cases)?;
    if cases.is_empty() {
        return Err(format!("no golden histories found under {}", dir.display()));
    }
    cases.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(cases)
}

/// Recursion bound for `collect`: the data set is two levels deep.
const MAX_DISCOVERY_DEPTH: usize = 4;

fn collect(dir: &Path, cases: &mut Vec<GoldenCase>) -> Result<(), String> {
    collect_at(dir, cases, 0)
}

fn collect_at(dir: &Path, cases: &mut Vec<GoldenCase>, depth: usize) -> Result<(), String> {
    let verdicts = dir.join("verdicts.tsv");
    if verdicts.is_file() {
        return collect_etcd(dir, &verdicts, cases);
    }
    match dir.file_name().and_then(|n| n.to_str()) {
        Some("good") => return collect_edn(dir, true, cases),
        Some("bad") => return collect_edn(dir, false, cases),
        _ => {}
    }
    if depth >= MAX_DISCOVERY_DEPTH {
        return Ok(());
    }
    for sub in sorted_entries(dir)? {
        if sub.is_dir() {
            collect_at(&sub, cases, depth + 1)?;
        }
    }
    Ok(())
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        paths.push(entry.map_err(|e| format!("{}: {e}", dir.display()))?.path());
    }
    paths.sort();
    Ok(paths)
}

fn has_extension(path: &Path, ext: &str) -> bool {
    path.is_file() && path.extension().and_then(|e| e.to_str()) == Some(ext)
}

fn collect_edn(dir: &Path, expected: bool, cases: &mut Vec<GoldenCase>) -> Result<(), String> {
    for path in sorted_entries(dir)? {
        if has_extension(&path, "edn") {
            cases.push(GoldenCase {
                path,
                format: GoldenFormat::KnossosEdn,
                expected_linearizable: expected,
            });
        }
    }
    Ok(())
}

fn collect_etcd(
    dir: &Path,
    verdicts_path: &Path,
    cases: &mut Vec<GoldenCase>,
) -> Result<(), String> {
    let text = std::fs::read_to_string(verdicts_path)
        .map_err(|e| format!("{}: {e}", verdicts_path.display()))?;
    let mut verdicts =
        parse_verdicts(&text).map_err(|e| format!("{}: {e}", verdicts_path.display()))?;
    for path in sorted_entries(dir)? {
        if !has_extension(&path, "log") {
            continue;
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let Some(expected) = verdicts.remove(&name) else {
            return Err(format!(
                "{} has no entry in {}",
                path.display(),
                verdicts_path.display()
            ));
        };
        cases.push(GoldenCase {
            path,
            format: GoldenFormat::EtcdLog,
            expected_linearizable: expected,
        });
    }
    if let Some(missing) = verdicts.keys().next() {
        return Err(format!(
            "{} lists {missing} (and {} more) but the file is missing",
            verdicts_path.display(),
            verdicts.len() - 1
        ));
    }
    Ok(())
}

/// Parses `verdicts.tsv`: a header line, then `file<TAB>true|false` lines.
pub fn parse_verdicts(text: &str) -> Result<BTreeMap<String, bool>, String> {
    let mut verdicts = BTreeMap::new();
    for (line_no, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split('\t');
        let (Some(file), Some(verdict), None) = (fields.next(), fields.next(), fields.next())
        else {
            return Err(format!(
                "line {}: expected file<TAB>verdict, got {line:?}",
                line_no + 1
            ));
        };
        let verdict = match verdict.trim() {
            "true" => true,
            "false" => false,
            other => {
                return Err(format!(
                    "line {}: verdict {other:?} is not true/false",
                    line_no + 1
                ))
            }
        };
        if verdicts.insert(file.trim().to_string(), verdict).is_some() {
            return Err(format!("line {}: duplicate entry for {file}", line_no + 1));
        }
    }
    Ok(verdicts)
}

/// Parses a Jepsen etcd log. Lines that are not client-operation lines
/// (no `jepsen.util - <number>` prefix, or an unknown type or function) are
/// ignored; an operation line with a malformed value is an error, because
/// dropping it would silently change the history's meaning.
pub fn parse_etcd_log(text: &str) -> Result<Vec<Op>, String> {
    const MARKER: &str = "jepsen.util - ";
    let mut ops = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        let Some(at) = line.find(MARKER) else {
            continue;
        };
        let mut tokens = line[at + MARKER.len()..].split_whitespace();
        // A non-numeric process (e.g. :nemesis) is not a client operation.
        let Some(Ok(process)) = tokens.next().map(str::parse::<u64>) else {
            continue;
        };
        let Some(kind) = tokens.next().and_then(parse_kind) else {
            continue;
        };
        let Some(f) = tokens.next().and_then(parse_f) else {
            continue;
        };
        let value_text = tokens.collect::<Vec<_>>().join(" ");
        let value = if value_text.is_empty() {
            Edn::Nil
        } else {
            edn::parse(&value_text)
                .map_err(|e| format!("line {}: value {value_text:?}: {e}", line_no + 1))?
        };
        let value = to_value(&value, kind, f).map_err(|e| format!("line {}: {e}", line_no + 1))?;
        let mut op = Op::new(process, kind, f, value);
        op.index = Some(ops.len() as u64);
        ops.push(op);
    }
    Ok(ops)
}

/// Parses a Knossos EDN history: a vector or list of maps with `:process`,
/// `:type`, `:f`, `:value`, optional `:time` / `:index`; other keys are ignored.
/// Maps whose `:process` is not an integer (the nemesis) are skipped.
pub fn parse_knossos_edn(text: &str) -> Result<Vec<Op>, String> {
    let form = edn::parse(text).map_err(|e| e.to_string())?;
    let items = match form {
        Edn::Vector(items) | Edn::List(items) => items,
        other => {
            return Err(format!(
                "expected a vector of ops, got {}",
                kind_name(&other)
            ))
        }
    };
    let mut ops = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let err = |m: String| format!("op #{i}: {m}");
        if !matches!(item, Edn::Map(_)) {
            return Err(err(format!("expected a map, got {}", kind_name(item))));
        }
        let process = match item.get_keyword("process") {
            Some(Edn::Int(p)) if *p >= 0 => *p as u64,
            Some(Edn::Int(p)) => return Err(err(format!("negative process {p}"))),
            Some(_) => continue, // :nemesis and other non-client actors
            None => return Err(err("missing :process".into())),
        };
        let kind = match item.get_keyword("type") {
            Some(Edn::Keyword(k)) => {
                parse_kind(&format!(":{k}")).ok_or_else(|| err(format!("unknown :type :{k}")))?
            }
            _ => return Err(err("missing or non-keyword :type".into())),
        };
        let f = match item.get_keyword("f") {
            Some(Edn::Keyword(k)) => parse_f(&format!(":{k}"))
                .ok_or_else(|| err(format!("unknown :f :{k} (only :read, :write, :cas)")))?,
            _ => return Err(err("missing or non-keyword :f".into())),
        };
        let value =
            to_value(item.get_keyword("value").unwrap_or(&Edn::Nil), kind, f).map_err(err)?;
        let mut op = Op::new(process, kind, f, value);
        op.index = match item.get_keyword("index") {
            Some(Edn::Int(v)) if *v >= 0 => Some(*v as u64),
            _ => Some(ops.len() as u64),
        };
        if let Some(Edn::Int(t)) = item.get_keyword("time") {
            op.time_ns = u64::try_from(*t).ok();
        }
        ops.push(op);
    }
    Ok(ops)
}

fn parse_kind(token: &str) -> Option<OpKind> {
    Some(match token {
        ":invoke" => OpKind::Invoke,
        ":ok" => OpKind::Ok,
        ":fail" => OpKind::Fail,
        ":info" => OpKind::Info,
        _ => return None,
    })
}

fn parse_f(token: &str) -> Option<F> {
    Some(match token {
        ":read" => F::Read,
        ":write" => F::Write,
        ":cas" => F::Cas,
        _ => return None,
    })
}

/// Converts an EDN value to a history value. Completions that carry no
/// observation (`fail`, `info`: e.g. `:timed-out`) and read invocations may
/// hold anything and become `nil`; everywhere else a malformed value is an
/// error.
fn to_value(edn: &Edn, kind: OpKind, f: F) -> Result<Value, String> {
    match edn {
        Edn::Nil => return Ok(Value::Nil),
        Edn::Int(v) => return Ok(Value::Int(*v)),
        Edn::Vector(items) | Edn::List(items) => {
            if let [Edn::Int(from), Edn::Int(to)] = items.as_slice() {
                return Ok(Value::Pair(*from, *to));
            }
        }
        _ => {}
    }
    let carries_no_observation =
        matches!(kind, OpKind::Fail | OpKind::Info) || (kind == OpKind::Invoke && f == F::Read);
    if carries_no_observation {
        Ok(Value::Nil)
    } else {
        Err(format!("unsupported value {edn:?} for {kind:?} {f:?}"))
    }
}

fn kind_name(edn: &Edn) -> &'static str {
    match edn {
        Edn::Nil => "nil",
        Edn::Bool(_) => "a boolean",
        Edn::Int(_) | Edn::Number(_) => "a number",
        Edn::Str(_) => "a string",
        Edn::Keyword(_) => "a keyword",
        Edn::Symbol(_) => "a symbol",
        Edn::Char(_) => "a character",
        Edn::Vector(_) => "a vector",
        Edn::List(_) => "a list",
        Edn::Map(_) => "a map",
        Edn::Set(_) => "a set",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etcd_lines_with_tabs_and_spaces() {
        let text = "INFO  jepsen.core - Worker 0 starting\n\
                    INFO  jepsen.util - 3\t:invoke\t:read\tnil\n\
                    INFO  jepsen.util - 3\t:ok\t:read\t4\n\
                    INFO  jepsen.util - 1   :invoke :cas    [1 4]\n\
                    INFO  jepsen.util - 1\t:fail\t:cas\t[1 4]\n\
                    INFO  jepsen.util - 2\t:invoke\t:read\tnil\n\
                    INFO  jepsen.util - 2\t:fail\t:read\t:timed-out\n\
                    INFO  jepsen.util - 5\t:invoke\t:write\t0\n\
                    INFO  jepsen.util - 5\t:info\t:write\t:timed-out\n\
                    INFO  jepsen.util - :nemesis\t:info\t:start\tnil\n";
        let ops = parse_etcd_log(text).unwrap();
        assert_eq!(ops.len(), 8);
        assert_eq!(
            (ops[1].kind, ops[1].f, ops[1].value),
            (OpKind::Ok, F::Read, Value::Int(4))
        );
        assert_eq!((ops[2].process, ops[2].value), (1, Value::Pair(1, 4)));
        assert_eq!((ops[5].kind, ops[5].value), (OpKind::Fail, Value::Nil));
        assert_eq!((ops[7].kind, ops[7].value), (OpKind::Info, Value::Nil));
        // an ok completion must carry a real value
        assert!(parse_etcd_log("INFO  jepsen.util - 1\t:ok\t:write\t:oops\n").is_err());
    }

    #[test]
    fn parses_knossos_edn_ignoring_unknown_keys() {
        let text = "; comment\n[{:process 4, :type :invoke, :f :cas, :value [1 2], :time 5}\n\
                    {:type :fail, :process 4, :f :cas, :value [1 2], :error [:temporarily-unavailable nil]}\n\
                    {:process :nemesis, :type :info, :f :start, :value nil}\n\
                    {:process 22  :type :info :f :write :value \"boom\"}]";
        let ops = parse_knossos_edn(text).unwrap();
        assert_eq!(ops.len(), 3);
        assert_eq!((ops[0].value, ops[0].time_ns), (Value::Pair(1, 2), Some(5)));
        assert_eq!(ops[1].kind, OpKind::Fail);
        assert_eq!(
            (ops[2].process, ops[2].kind, ops[2].value),
            (22, OpKind::Info, Value::Nil)
        );
        assert!(parse_knossos_edn("[{:process 1 :type :invoke :f :append :value 1}]").is_err());
        assert!(parse_knossos_edn("{:process 1}").is_err());
    }

    #[test]
    fn parses_verdicts() {
        let v = parse_verdicts("file\tlinearizable\na.log\ttrue\nb.log\tfalse\n").unwrap();
        assert_eq!(v.get("a.log"), Some(&true));
        assert_eq!(v.get("b.log"), Some(&false));
        assert!(parse_verdicts("file\tlinearizable\na.log\tmaybe\n").is_err());
        assert!(parse_verdicts("file\tlinearizable\na.log\ttrue\na.log\ttrue\n").is_err());
    }

    #[test]
    fn discover_fails_on_missing_dir() {
        let err = discover(Path::new("/definitely/not/here/jepsen-golden")).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
    }
}
