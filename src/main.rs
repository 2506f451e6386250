use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

// glibc malloc spent a third of each node's CPU under load (consolidating
// fragments left by mixing multi-megabyte replication buffers with many small
// span allocations); mimalloc does not.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tael_raft::cmd;
use tael_raft::config::ServeArgs;

#[derive(Parser)]
#[command(
    name = "tael-raft",
    version,
    about = "Raft-replicated OpenTelemetry backend"
)]
struct Cli {
    /// The API key to present to servers (`Authorization: Bearer KEY`).
    #[arg(long, global = true, env = "TAEL_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// PEM CA certificate(s) trusted for `https://` servers (the CLI's
    /// commands; `serve` relays membership changes to the leader with it).
    #[arg(long, global = true, env = "TAEL_CA_CERT")]
    ca_cert: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
// Parsed once at start; the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run one node.
    Serve(ServeArgs),
    /// Bootstrap a new cluster (exactly once).
    Init {
        /// REST URL of any member, e.g. http://127.0.0.1:7701
        #[arg(long, default_value = "http://127.0.0.1:7701")]
        server: String,
        /// A member as ID=RAFT_HOST:PORT; repeat for each node.
        #[arg(long = "member", required = true, value_parser = cmd::parse_member)]
        members: Vec<(u64, String)>,
        /// How long to wait for the server and the other members to come
        /// up (init is retried while any of them is unreachable).
        #[arg(long, default_value_t = 30)]
        wait_secs: u64,
        /// Create the cluster's first admin key and write it to this file
        /// (mode 0600; the file must not exist yet).
        #[arg(long)]
        admin_key_out: Option<PathBuf>,
    },
    /// Show leader, term, commit and applied index per node, and lag.
    Status {
        #[arg(long, default_value = "http://127.0.0.1:7701")]
        server: String,
        #[arg(long, value_parser = ["table", "json"], default_value = "table")]
        output: String,
    },
    /// Show what each storage tier holds per signal, the retention
    /// settings and the last retention cut.
    Storage {
        #[arg(long, default_value = "http://127.0.0.1:7701")]
        server: String,
        #[arg(long, value_parser = ["table", "json"], default_value = "table")]
        output: String,
    },
    /// Follow a node's live tail of spans or log records.
    Tail {
        #[arg(value_parser = ["traces", "logs"])]
        signal: String,
        #[arg(long, default_value = "http://127.0.0.1:7701")]
        server: String,
        /// Only this service.
        #[arg(long)]
        service: Option<String>,
        /// Spans only: ok, error or unset.
        #[arg(long)]
        status: Option<String>,
        /// Logs only: trace, debug, info, warn, error, fatal or unspecified.
        #[arg(long)]
        severity: Option<String>,
        #[arg(long, value_parser = ["line", "json"], default_value = "line")]
        output: String,
    },
    /// Membership: add a learner, promote it, remove a node, list.
    #[command(subcommand)]
    Member(cmd::member::MemberCommand),
    /// API keys: create, list, revoke (needs an admin key).
    #[command(subcommand)]
    Key(cmd::key::KeyCommand),
    /// OTLP load generator (traces or logs, over gRPC or HTTP).
    Bench {
        /// OTLP addresses (gRPC or HTTP per --transport), comma separated;
        /// defaults to 127.0.0.1:4317 for gRPC and 127.0.0.1:4318 for HTTP.
        #[arg(long, value_delimiter = ',')]
        target: Vec<String>,
        #[arg(long, value_parser = ["traces", "logs"], default_value = "traces")]
        signal: String,
        #[arg(long, value_parser = ["grpc", "http"], default_value = "grpc")]
        transport: String,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Spans or log records per export request.
        #[arg(long, alias = "records-per-request", default_value_t = 100)]
        spans_per_request: usize,
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Pace the load to this many records per second in total.
        #[arg(long)]
        rate: Option<u64>,
        /// Percent of spans that are LLM spans with a prompt and completion.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
        llm_percent: u32,
        /// Also probe the disk under this directory (a node's data
        /// directory) and show its slowest fdatasync next to each slow second.
        #[arg(long)]
        disk_witness_dir: Option<PathBuf>,
        #[arg(long, value_parser = ["table", "json"], default_value = "table")]
        output: String,
    },
    /// Measure fdatasync latency and stalls of the disk under a directory,
    /// the wait every acknowledged write includes.
    DiskCheck {
        /// A directory on the disk to test (where data directories will live).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        #[arg(long, default_value_t = 30)]
        duration_secs: u64,
        /// Pause between syncs.
        #[arg(long, default_value_t = 10)]
        interval_ms: u64,
        #[arg(long, value_parser = ["table", "json"], default_value = "table")]
        output: String,
    },
    /// Query latency benchmark: trace search, full-text, summary; with
    /// --tempo, ingests --spans spans first, then times Tempo's trace by id
    /// (protobuf) and a TraceQL search by service and attribute; with
    /// --prometheus, remote-writes --series one-hour series first (samples/s),
    /// then times a query_range of `sum by (job) (rate(...[5m]))`.
    BenchQuery {
        /// REST URL of the node to query.
        #[arg(long, default_value = "http://127.0.0.1:7701")]
        server: String,
        /// Runs of each query.
        #[arg(long, default_value_t = 50)]
        runs: usize,
        /// Benchmark the Tempo API over freshly ingested spans instead.
        #[arg(long)]
        tempo: bool,
        /// With --tempo: the OTLP/gRPC address to ingest through.
        #[arg(long, default_value = "127.0.0.1:4317")]
        otlp_target: String,
        /// With --tempo: spans to ingest before querying.
        #[arg(long, default_value_t = 1_000_000)]
        spans: u64,
        /// With --tempo: spans per export request.
        #[arg(long, default_value_t = 100)]
        spans_per_request: usize,
        /// With --tempo: concurrent exporters.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// With --tempo: seconds to wait between ingest and queries.
        #[arg(long, default_value_t = 10)]
        settle_secs: u64,
        /// Benchmark Prometheus remote write and query_range instead.
        #[arg(long, conflicts_with = "tempo")]
        prometheus: bool,
        /// With --prometheus: REST URLs to remote-write to, round robin.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "http://127.0.0.1:7701,http://127.0.0.1:7711,http://127.0.0.1:7721"
        )]
        write_targets: Vec<String>,
        /// With --prometheus: series of one hour at 15 s (240 samples each).
        #[arg(long, default_value_t = 2_000)]
        series: usize,
        /// With --prometheus: distinct `job` values.
        #[arg(long, default_value_t = 10)]
        jobs: usize,
        /// With --prometheus: samples per write request.
        #[arg(long, default_value_t = 2_000)]
        samples_per_request: usize,
        #[arg(long, default_value = "linearizable")]
        consistency: String,
        #[arg(long, value_parser = ["table", "json"], default_value = "table")]
        output: String,
    },
    /// Cold tier benchmark without a cluster: applies --spans spans to a
    /// store in --dir and moves them to cold files (the real apply path),
    /// then times trace by id through the query service's cold reader for
    /// existing and missing ids; reports bytes per span. Removes --dir.
    BenchCold {
        /// An empty or missing directory for the store and its files.
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        spans: u64,
        /// Trace-by-id queries of each kind (existing, missing ids).
        #[arg(long, default_value_t = 1_000)]
        runs: usize,
        /// Also probe the disk under this directory while the queries run
        /// and show its slowest fdatasync next to the slowest queries.
        #[arg(long)]
        disk_witness_dir: Option<PathBuf>,
        /// Leave the store and its cold files in --dir.
        #[arg(long)]
        keep: bool,
        #[arg(long, value_parser = ["table", "json"], default_value = "table")]
        output: String,
    },
    /// Start a local 3-node cluster on loopback; Ctrl-C stops it.
    DevCluster {
        #[arg(long, default_value = "./tael-data")]
        dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        nodes: u64,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TAEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,openraft=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The table `bench-query` prints.
fn print_query_latencies(r: &[cmd::bench_query::QueryLatency]) {
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>7} {:>8}",
        "QUERY", "P50_MS", "P99_MS", "MAX_MS", "ERRORS", "RESULTS"
    );
    for q in r {
        println!(
            "{:<28} {:>8.1} {:>8.1} {:>8.1} {:>7} {:>8}",
            q.name,
            q.ms_p50,
            q.ms_p99,
            q.ms_max,
            q.errors,
            q.last_result_count
                .map_or("-".to_string(), |n| n.to_string())
        );
    }
}

/// A benchmark report as pretty JSON on stdout (`--output json`).
fn print_json(report: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(report).expect("report serializes")
    );
}

fn runtime(threads: usize) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn wait_for_stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn main() -> ExitCode {
    tael_raft::tls::install_process_default();
    let cli = Cli::parse();
    if let Some(key) = cli.api_key.clone().filter(|k| !k.is_empty()) {
        tael_raft::http_client::set_default_api_key(key);
    }
    if let Some(path) = &cli.ca_cert {
        if let Err(e) = tael_raft::http_client::set_ca_file(path) {
            eprintln!("error: --ca-cert: {e}");
            return ExitCode::FAILURE;
        }
    }
    let result: Result<(), String> = match cli.command {
        Command::Serve(args) => match args.resolve() {
            Err(e) => Err(e),
            Ok(config) => {
                if config.ingest_spooled {
                    // Still one thread: the only sound moment to change the
                    // environment (see `spool::walrus_environment`).
                    for (var, value) in tael_raft::spool::walrus_environment(&config.data_dir) {
                        std::env::set_var(var, value);
                    }
                }
                init_tracing();
                runtime(config.runtime_threads).block_on(async move {
                    let running = tael_raft::serve::start(config).await?;
                    let outcome = tokio::select! {
                        _ = wait_for_stop_signal() => Ok(()),
                        why = running.consensus_stopped() => Err(why),
                    };
                    tracing::info!("stopping");
                    match &outcome {
                        Ok(()) => running.shutdown().await,
                        Err(why) => {
                            tracing::error!(reason = %why, "the consensus core stopped; exiting so that a supervisor restarts this node");
                            // Best effort: the core is already down.
                            let _ = tokio::time::timeout(
                                std::time::Duration::from_secs(10),
                                running.shutdown(),
                            )
                            .await;
                        }
                    }
                    outcome.map_err(|why| format!("the consensus core stopped: {why}"))
                })
            }
        },
        Command::Init {
            server,
            members,
            wait_secs,
            admin_key_out,
        } => runtime(1).block_on(async move {
            if let Some(path) = &admin_key_out {
                if path.exists() {
                    return Err(format!("{} exists already; refusing to overwrite it", path.display()));
                }
            }
            let wait = Duration::from_secs(wait_secs);
            let done =
                cmd::init::run_with(&server, &members, wait, admin_key_out.is_some()).await?;
            println!(
                "initialized cluster {} with {} members",
                done.cluster_id,
                members.len()
            );
            if let (Some(path), Some(key)) = (&admin_key_out, &done.admin_key) {
                cmd::init::write_key_file(path, key)?;
                println!("the first admin key is in {} (mode 0600)", path.display());
            }
            Ok(())
        }),
        Command::Key(k) => runtime(1).block_on(async move {
            print!("{}", cmd::key::run(k).await?);
            Ok(())
        }),
        Command::Status { server, output } => runtime(1).block_on(async move {
            print!("{}", cmd::status::run(&server, output == "json").await?);
            if output == "json" {
                println!();
            }
            Ok(())
        }),
        Command::Storage { server, output } => runtime(1).block_on(async move {
            print!("{}", cmd::storage::run(&server, output == "json").await?);
            if output == "json" {
                println!();
            }
            Ok(())
        }),
        Command::Tail {
            signal,
            server,
            service,
            status,
            severity,
            output,
        } => runtime(1).block_on(async move {
            let filters = [("service", service), ("status", status), ("severity", severity)]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .collect();
            cmd::tail::run(cmd::tail::TailArgs {
                server,
                signal,
                filters,
                json_output: output == "json",
            })
            .await
        }),
        Command::Member(m) => runtime(1).block_on(async move {
            print!("{}", cmd::member::run(m).await?);
            Ok(())
        }),
        Command::Bench {
            target,
            signal,
            transport,
            concurrency,
            spans_per_request,
            duration_secs,
            rate,
            llm_percent,
            disk_witness_dir,
            output,
        } => runtime(2).block_on(async move {
            if concurrency == 0 || spans_per_request == 0 || duration_secs == 0 {
                return Err(
                    "concurrency, spans-per-request and duration-secs must be positive".into(),
                );
            }
            let signal = match signal.as_str() {
                "logs" => cmd::bench::BenchSignal::Logs,
                _ => cmd::bench::BenchSignal::Traces,
            };
            let transport = match transport.as_str() {
                "http" => cmd::bench::BenchTransport::Http,
                _ => cmd::bench::BenchTransport::Grpc,
            };
            let targets = if target.is_empty() {
                vec![match transport {
                    cmd::bench::BenchTransport::Grpc => "127.0.0.1:4317".to_string(),
                    cmd::bench::BenchTransport::Http => "127.0.0.1:4318".to_string(),
                }]
            } else {
                target
            };
            let opts = cmd::bench::BenchOptions {
                targets,
                signal,
                transport,
                concurrency,
                records_per_request: spans_per_request,
                duration: Duration::from_secs(duration_secs),
                rate_records_per_sec: rate,
                llm_percent,
                disk_witness_dir,
            };
            let r = cmd::bench::run(opts).await?;
            if output == "json" {
                print_json(&r);
            } else {
                let unit = match r.signal {
                    cmd::bench::BenchSignal::Traces => "spans",
                    cmd::bench::BenchSignal::Logs => "logs",
                };
                println!(
                    "{unit} over {:?} to {:?}, concurrency {}, {} {unit}/request, rate {:?}",
                    r.transport,
                    r.targets,
                    r.concurrency,
                    r.records_per_request,
                    r.target_rate_records_per_sec
                );
                println!("acked {unit}/s   {:.0}", r.acked_records_per_sec);
                println!(
                    "acked {unit}     {} in {:.1}s ({} requests ok, {} failed)",
                    r.acked_records, r.elapsed_secs, r.requests_ok, r.requests_failed
                );
                println!(
                    "ack latency ms  p50 {:.2}  p99 {:.2}  max {:.2}",
                    r.latency_ms_p50, r.latency_ms_p99, r.latency_ms_max
                );
                for s in &r.slow_seconds {
                    let disk = s
                        .disk_max_sync_ms
                        .map(|ms| format!("; disk's slowest fdatasync {ms:.1} ms"))
                        .unwrap_or_default();
                    println!(
                        "slow second     {:>3} (unix ms {}): {} of {} requests over {} ms, max {:.1} ms{disk}",
                        s.second,
                        s.unix_ms,
                        s.slow_requests,
                        s.requests,
                        cmd::bench::SLOW_SECOND_THRESHOLD_MS,
                        s.max_ms
                    );
                }
                for g in &r.ack_gaps {
                    println!(
                        "ack gap         {} ms without an acknowledgement from unix ms {}",
                        g.gap_ms, g.from_unix_ms
                    );
                }
                if let Some(d) = &r.disk_witness {
                    println!(
                        "disk witness    fdatasync p50 {:.2}  p99 {:.2}  max {:.2} ms; {} stalls over {} ms ({:.0} ms in all)",
                        d.sync_ms_p50,
                        d.sync_ms_p99,
                        d.sync_ms_max,
                        d.stalls,
                        cmd::disk_check::STALL_THRESHOLD_MS,
                        d.stalled_ms_total
                    );
                }
                for e in &r.errors {
                    println!("error: {e}");
                }
            }
            Ok(())
        }),
        Command::DiskCheck {
            dir,
            duration_secs,
            interval_ms,
            output,
        } => {
            let opts = cmd::disk_check::DiskCheckOptions {
                dir,
                duration: Duration::from_secs(duration_secs),
                interval: Duration::from_millis(interval_ms),
            };
            cmd::disk_check::run(&opts, &std::sync::atomic::AtomicBool::new(false)).map(|r| {
                if output == "json" {
                    print_json(&r);
                } else {
                    cmd::disk_check::print_table(&r);
                }
            })
        }
        Command::BenchQuery {
            server,
            runs,
            tempo: true,
            otlp_target,
            spans,
            spans_per_request,
            concurrency,
            settle_secs,
            output,
            ..
        } => runtime(2).block_on(async move {
            let opts = cmd::bench_tempo::TempoBenchOptions {
                otlp_target,
                server,
                spans,
                spans_per_request,
                concurrency,
                runs,
                settle: Duration::from_secs(settle_secs),
            };
            let r = cmd::bench_tempo::run(&opts).await?;
            if output == "json" {
                print_json(&r);
            } else {
                println!(
                    "ingested {} spans in {:.1} s ({:.0} spans/s)",
                    r.ingested_spans,
                    r.ingest_secs,
                    r.ingested_spans as f64 / r.ingest_secs.max(1e-9)
                );
                print_query_latencies(&r.queries);
            }
            Ok(())
        }),
        Command::BenchQuery {
            server,
            runs,
            prometheus: true,
            write_targets,
            series,
            jobs,
            samples_per_request,
            concurrency,
            settle_secs,
            output,
            ..
        } => runtime(2).block_on(async move {
            let opts = cmd::bench_prom::PromBenchOptions {
                write_targets,
                server,
                series,
                jobs,
                samples_per_request,
                concurrency,
                runs,
                settle: Duration::from_secs(settle_secs),
            };
            let r = cmd::bench_prom::run(&opts).await?;
            if output == "json" {
                print_json(&r);
            } else {
                println!(
                    "remote-wrote {} samples in {:.1} s ({:.0} samples/s, {} failed requests)",
                    r.samples, r.write_secs, r.samples_per_sec, r.write_errors
                );
                print_query_latencies(std::slice::from_ref(&r.query));
            }
            Ok(())
        }),
        Command::BenchQuery {
            server,
            runs,
            consistency,
            output,
            ..
        } => runtime(1).block_on(async move {
            if runs == 0 {
                return Err("runs must be positive".into());
            }
            let r = cmd::bench_query::run(&server, runs, &consistency).await?;
            if output == "json" {
                print_json(&r);
            } else {
                print_query_latencies(&r);
            }
            Ok(())
        }),
        Command::BenchCold {
            dir,
            spans,
            runs,
            disk_witness_dir,
            keep,
            output,
        } => {
            let opts = cmd::bench_cold::ColdBenchOptions {
                dir,
                spans,
                runs,
                disk_witness_dir,
                keep,
            };
            cmd::bench_cold::run(&opts).map(|r| {
                if output == "json" {
                    print_json(&r);
                } else {
                    cmd::bench_cold::print_table(&r);
                }
            })
        }
        Command::DevCluster { dir, nodes } => {
            runtime(2).block_on(cmd::dev_cluster::run(dir, nodes))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
