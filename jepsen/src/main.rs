//! tael-jepsen command line.
//!
//! ```text
//! tael-jepsen check-golden DIR [--budget-ms N]
//! tael-jepsen check-history FILE.jsonl [--budget-ms N]
//! tael-jepsen test --profile NAME [--seed N] [--time-limit-s S] [--out DIR]
//!                  [--server-bin PATH] [--net proxy|netns] [--retry]
//! tael-jepsen check-run DIR          (re-check DIR/history.jsonl offline)
//! tael-jepsen profiles
//! ```
//!
//! test and check-run exit 0 valid, 1 invalid, 2 unknown (a harness fault
//! makes the verdict unknown, never valid).
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
use tael_jepsen::harness::{self, cluster::NetMode, profiles, TestOptions};
use tael_jepsen::history::read_jsonl;
use tael_jepsen::linearizability::{check_cas_history, Budget, Verdict};

/// Per-history wall-clock budget unless `--budget-ms` says otherwise.
const DEFAULT_BUDGET_MS: u64 = 30_000;

const EXIT_USAGE: u8 = 64;
const USAGE: &str = "usage:\n  tael-jepsen check-golden DIR [--budget-ms N]\n  \
                     tael-jepsen check-history FILE.jsonl [--budget-ms N]\n  \
                     tael-jepsen test --profile NAME [--seed N] [--time-limit-s S] [--out DIR] \
                     [--server-bin PATH] [--net proxy|netns] [--retry] [--heal-deadline-s S] \
                     [--lazyfs auto|on|off] [--lazyfs-bin PATH]\n  \
                     tael-jepsen check-run DIR\n  \
                     tael-jepsen profiles";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("test") => return test_command(&args[1..]),
        Some("check-run") => return check_run(&args[1..]),
        Some("profiles") => {
            for p in profiles::all() {
                println!("{:<32} {}", p.name, p.description);
            }
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
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

fn verdict_exit(valid: Option<bool>) -> ExitCode {
    match valid {
        Some(true) => ExitCode::SUCCESS,
        Some(false) => ExitCode::from(1),
        None => ExitCode::from(2),
    }
}

fn test_command(args: &[String]) -> ExitCode {
    let mut profile = None;
    let mut seed: u64 = 1;
    let mut time_limit_s = None;
    let mut out = None;
    let mut server_bin = None;
    let mut net = None;
    let mut retry = None;
    let mut heal_deadline_s = 60;
    let mut lazyfs = harness::lazyfs::Mode::Auto;
    let mut lazyfs_bin = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
        let parsed: Result<(), String> = (|| {
            match flag.as_str() {
                "--profile" => {
                    let name = value()?;
                    profile = Some(profiles::find(&name).ok_or(format!(
                        "unknown profile {name}; see `tael-jepsen profiles`"
                    ))?);
                }
                "--seed" => seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
                "--time-limit-s" => {
                    time_limit_s = Some(
                        value()?
                            .parse()
                            .map_err(|e| format!("--time-limit-s: {e}"))?,
                    )
                }
                "--heal-deadline-s" => {
                    heal_deadline_s = value()?
                        .parse()
                        .map_err(|e| format!("--heal-deadline-s: {e}"))?
                }
                "--out" => out = Some(PathBuf::from(value()?)),
                "--server-bin" => server_bin = Some(PathBuf::from(value()?)),
                "--net" => {
                    net = Some(match value()?.as_str() {
                        "netns" => NetMode::Netns,
                        "proxy" => NetMode::Proxy,
                        other => return Err(format!("--net: {other} is not proxy|netns")),
                    })
                }
                "--retry" => retry = Some(true),
                "--lazyfs" => {
                    let v = value()?;
                    lazyfs = harness::lazyfs::Mode::parse(&v)
                        .ok_or(format!("--lazyfs: {v} is not auto|on|off"))?;
                }
                "--lazyfs-bin" => lazyfs_bin = Some(PathBuf::from(value()?)),
                other => return Err(format!("unknown option {other}")),
            }
            Ok(())
        })();
        if let Err(e) = parsed {
            eprintln!("tael-jepsen: {e}\n{USAGE}");
            return ExitCode::from(EXIT_USAGE);
        }
    }
    let Some(profile) = profile else {
        eprintln!("tael-jepsen: test needs --profile\n{USAGE}");
        return ExitCode::from(EXIT_USAGE);
    };
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc_geteuid() } == 0;
    let net = net.unwrap_or(if root { NetMode::Netns } else { NetMode::Proxy });
    let time_limit_s = time_limit_s.unwrap_or(profile.default_time_limit_s);
    let out =
        out.unwrap_or_else(|| PathBuf::from(format!("jepsen-runs/{}-seed{seed}", profile.name)));
    let outcome = harness::run_test(TestOptions {
        profile,
        seed,
        time_limit_s,
        out_dir: out,
        server_bin: server_bin.unwrap_or_else(harness::default_server_bin),
        net,
        retry,
        heal_deadline_s,
        lazyfs,
        lazyfs_bin: lazyfs_bin.unwrap_or_else(harness::lazyfs::default_bin),
    });
    verdict_exit(outcome.valid)
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

fn check_run(args: &[String]) -> ExitCode {
    let Some(dir) = args.first() else {
        eprintln!("tael-jepsen: check-run needs a run directory\n{USAGE}");
        return ExitCode::from(EXIT_USAGE);
    };
    let path = Path::new(dir).join("history.jsonl");
    let history = match std::fs::File::open(&path)
        .map_err(|e| e.to_string())
        .and_then(|f| tael_jepsen::events::read_jsonl(std::io::BufReader::new(f)))
    {
        Ok(h) => h,
        Err(e) => {
            eprintln!("tael-jepsen: {}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    match harness::check_history(&history, false) {
        Ok(mut checks) => {
            // The fault schedule is in config.json; a bare history has none.
            match read_schedule(Path::new(dir)) {
                Ok(Some(plan)) => checks.push(harness::coverage::check(&plan, &history)),
                Ok(None) => {}
                Err(e) => {
                    eprintln!("tael-jepsen: {e}");
                    return ExitCode::from(2);
                }
            }
            for c in &checks {
                println!("{:<28} {:<8} {}", c.name, c.verdict_str(), c.summary);
            }
            verdict_exit(tael_jepsen::checkers::combine(&checks))
        }
        Err(e) => {
            eprintln!("tael-jepsen: {e}");
            ExitCode::from(2)
        }
    }
}

/// The fault schedule of a run directory, if it has a `config.json`.
fn read_schedule(dir: &Path) -> Result<Option<Vec<harness::nemesis::Planned>>, String> {
    let path = dir.join("config.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_value(config["schedule"].clone())
        .map(Some)
        .map_err(|e| format!("{}: schedule: {e}", path.display()))
}
