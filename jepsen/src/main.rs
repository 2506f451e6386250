//! tael-jepsen command line.
//!
//! ```text
//! tael-jepsen check-golden DIR [--budget-ms N]
//! tael-jepsen check-history FILE.jsonl [--budget-ms N]
//! ```
//!
//! Exit codes — check-golden: 0 every verdict agrees with the expected one,
//! 1 some verdict disagrees or a file could not be read, 2 otherwise some
//! verdict is unknown (budget exhausted). check-history: 0 linearizable,
//! 1 not linearizable, 2 unknown, 3 the file could not be read or paired.
//! Both: 64 for a usage error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use tael_jepsen::golden;
use tael_jepsen::history::read_jsonl;
use tael_jepsen::linearizability::{check_cas_history, Budget, Verdict};

/// Per-history wall-clock budget unless `--budget-ms` says otherwise.
const DEFAULT_BUDGET_MS: u64 = 30_000;

const EXIT_USAGE: u8 = 64;
const USAGE: &str = "usage:\n  tael-jepsen check-golden DIR [--budget-ms N]\n  \
                     tael-jepsen check-history FILE.jsonl [--budget-ms N]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args) {
        Ok(Command::CheckGolden { dir, budget }) => check_golden(&dir, &budget),
        Ok(Command::CheckHistory { file, budget }) => check_history(&file, &budget),
        Ok(Command::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("tael-jepsen: {message}\n{USAGE}");
            ExitCode::from(EXIT_USAGE)
        }
    }
}

enum Command {
    CheckGolden { dir: PathBuf, budget: Budget },
    CheckHistory { file: PathBuf, budget: Budget },
    Help,
}

fn parse_args(args: &[String]) -> Result<Command, String> {
    let Some(command) = args.first() else {
        return Err("missing command".into());
    };
    if matches!(command.as_str(), "help" | "-h" | "--help") {
        return Ok(Command::Help);
    }
    let mut path = None;
    let mut budget = Budget::with_ms(DEFAULT_BUDGET_MS);
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--budget-ms" => {
                let value = rest.next().ok_or("--budget-ms needs a value")?;
                let ms = value
                    .parse()
                    .map_err(|_| format!("--budget-ms: not a number: {value}"))?;
                budget.budget_ms = Some(ms);
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            _ if path.is_some() => return Err(format!("unexpected argument {arg}")),
            _ => path = Some(PathBuf::from(arg)),
        }
    }
    let path = path.ok_or_else(|| format!("{command} needs a path"))?;
    match command.as_str() {
        "check-golden" => Ok(Command::CheckGolden { dir: path, budget }),
        "check-history" => Ok(Command::CheckHistory { file: path, budget }),
        other => Err(format!("unknown command {other}")),
    }
}

fn check_golden(dir: &Path, budget: &Budget) -> ExitCode {
    let cases = match golden::discover(dir) {
        Ok(cases) => cases,
        Err(e) => {
            eprintln!("tael-jepsen: {e}");
            return ExitCode::from(1);
        }
    };
    let (mut agreed, mut disagreed, mut unknown) = (0usize, 0usize, 0usize);
    let mut slowest: Option<(u128, &Path)> = None;
    for case in &cases {
        let started = Instant::now();
        let verdict = case.load().and_then(|history| {
            check_cas_history(&history, budget).map_err(|e| format!("{case}: {e}"))
        });
        let elapsed_ms = started.elapsed().as_millis();
        if slowest.is_none_or(|(ms, _)| elapsed_ms > ms) {
            slowest = Some((elapsed_ms, &case.path));
        }
        let shown = match &verdict {
            Ok(v) => v.as_bool().map_or("unknown".to_string(), |b| b.to_string()),
            Err(_) => "error".to_string(),
        };
        println!(
            "{}\t{}\t{shown}\t{elapsed_ms}",
            case.path.display(),
            case.expected_linearizable
        );
        match verdict {
            Ok(v) if v.as_bool() == Some(case.expected_linearizable) => agreed += 1,
            Ok(v @ Verdict::Unknown { .. }) => {
                eprintln!("  {}: {v}", case.path.display());
                unknown += 1;
            }
            Ok(v) => {
                eprintln!(
                    "  {}: expected linearizable={}, got {v}",
                    case.path.display(),
                    case.expected_linearizable
                );
                disagreed += 1;
            }
            Err(e) => {
                eprintln!("  {e}");
                disagreed += 1;
            }
        }
    }
    if let Some((ms, path)) = slowest {
        println!("slowest: {ms} ms\t{}", path.display());
    }
    println!("agreement: {agreed}/{}", cases.len());
    if disagreed > 0 {
        ExitCode::from(1)
    } else if unknown > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    }
}

fn check_history(file: &Path, budget: &Budget) -> ExitCode {
    let history = std::fs::File::open(file)
        .map_err(|e| e.to_string())
        .and_then(|f| read_jsonl(std::io::BufReader::new(f)));
    let history = match history {
        Ok(h) => h,
        Err(e) => {
            eprintln!("tael-jepsen: {}: {e}", file.display());
            return ExitCode::from(3);
        }
    };
    let started = Instant::now();
    let verdict = match check_cas_history(&history, budget) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("tael-jepsen: {}: {e}", file.display());
            return ExitCode::from(3);
        }
    };
    println!(
        "{}\t{verdict}\t{} ms",
        file.display(),
        started.elapsed().as_millis()
    );
    match verdict {
        Verdict::Linearizable => ExitCode::SUCCESS,
        Verdict::NotLinearizable { .. } => ExitCode::from(1),
        Verdict::Unknown { .. } => ExitCode::from(2),
    }
}
