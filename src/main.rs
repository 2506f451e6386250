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
use tael_raft::node::Node;

#[derive(Parser)]
#[command(
    name = "tael-raft",
    version,
    about = "Raft-replicated OpenTelemetry backend"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
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
        /// How long to wait for the server to come up.
        #[arg(long, default_value_t = 30)]
        wait_secs: u64,
    },
    /// Show leader, term, commit and applied index per node, and lag.
    Status {
        #[arg(long, default_value = "http://127.0.0.1:7701")]
        server: String,
        #[arg(long, value_parser = ["table", "json"], default_value = "table")]
        output: String,
    },
    /// Membership: add a learner, promote it, remove a node, list.
    #[command(subcommand)]
    Member(cmd::member::MemberCommand),
    /// OTLP/gRPC load generator.
    Bench {
        /// OTLP/gRPC addresses, comma separated.
        #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:4317")]
        target: Vec<String>,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        #[arg(long, default_value_t = 100)]
        spans_per_request: usize,
        #[arg(long, default_value_t = 10)]
        duration_secs: u64,
        /// Pace the load to this many spans per second in total.
        #[arg(long)]
        rate: Option<u64>,
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
    let cli = Cli::parse();
    let result: Result<(), String> = match cli.command {
        Command::Serve(args) => match args.resolve() {
            Err(e) => Err(e),
            Ok(config) => {
                init_tracing();
                runtime(config.runtime_threads).block_on(async move {
                    let running = Node::start(config).await?;
                    wait_for_stop_signal().await;
                    tracing::info!("stopping");
                    running.shutdown().await;
                    Ok(())
                })
            }
        },
        Command::Init {
            server,
            members,
            wait_secs,
        } => runtime(1).block_on(async move {
            let id = cmd::init::run(&server, &members, Duration::from_secs(wait_secs)).await?;
            println!("initialized cluster {id} with {} members", members.len());
            Ok(())
        }),
        Command::Status { server, output } => runtime(1).block_on(async move {
            print!("{}", cmd::status::run(&server, output == "json").await?);
            if output == "json" {
                println!();
            }
            Ok(())
        }),
        Command::Member(m) => runtime(1).block_on(async move {
            print!("{}", cmd::member::run(m).await?);
            Ok(())
        }),
        Command::Bench {
            target,
            concurrency,
            spans_per_request,
            duration_secs,
            rate,
            output,
        } => runtime(2).block_on(async move {
            if concurrency == 0 || spans_per_request == 0 || duration_secs == 0 {
                return Err(
                    "concurrency, spans-per-request and duration-secs must be positive".into(),
                );
            }
            let opts = cmd::bench::BenchOptions {
                targets: target,
                concurrency,
                spans_per_request,
                duration: Duration::from_secs(duration_secs),
                rate_spans_per_sec: rate,
            };
            let r = cmd::bench::run(opts).await?;
            if output == "json" {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&r).expect("report serializes")
                );
            } else {
                println!(
                    "targets {:?}, concurrency {}, {} spans/request, rate {:?}",
                    r.targets, r.concurrency, r.spans_per_request, r.target_rate_spans_per_sec
                );
                println!("acked spans/s   {:.0}", r.acked_spans_per_sec);
                println!(
                    "acked spans     {} in {:.1}s ({} requests ok, {} failed)",
                    r.acked_spans, r.elapsed_secs, r.requests_ok, r.requests_failed
                );
                println!(
                    "ack latency ms  p50 {:.2}  p99 {:.2}  max {:.2}",
                    r.latency_ms_p50, r.latency_ms_p99, r.latency_ms_max
                );
                for e in &r.errors {
                    println!("error: {e}");
                }
            }
            Ok(())
        }),
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
