//! The `sportello` command: `demo`, `serve`, `migrate`, `catalog check`.

#[cfg(feature = "demo")]
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use delivery::channels::Channels;
use delivery::worker::WorkerSettings;
#[cfg(feature = "demo")]
use identity::CardProfile;
#[cfg(feature = "demo")]
use sportello::demo::{self, DEMO_CARDS};
use sportello::Settings;

mod commands;

#[cfg(feature = "demo")]
use commands::AgencySimArgs;
use commands::ServeArgs;

#[derive(Debug, Parser)]
#[command(name = "sportello", version, about = "Sportello: one-stop shop for business filings")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[cfg(feature = "demo")]
    /// Runs the portal on 127.0.0.1 with an embedded SQLite database and test smart cards.
    Demo {
        /// Folder for the database, the demo PKI and the cards (created on first run).
        #[arg(long, default_value = "sportello-data")]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 8443)]
        port: u16,
        #[arg(long, default_value = "catalog")]
        catalog: PathBuf,
        /// Use this database instead of the data folder's SQLite file (e.g. postgres://…).
        #[arg(long, env = "SPORTELLO_DATABASE_URL")]
        database_url: Option<String>,
    },
    /// Runs the portal with explicit settings.
    Serve(ServeArgs),
    /// Runs only the delivery worker: sends queued filings and records the answers.
    Worker {
        #[arg(long, env = "SPORTELLO_DATABASE_URL")]
        database_url: String,
        #[arg(long, env = "SPORTELLO_CATALOG", default_value = "catalog")]
        catalog: PathBuf,
        #[arg(long, env = "SPORTELLO_CHANNELS")]
        channels: PathBuf,
    },
    #[cfg(feature = "demo")]
    /// Runs one simulated institution (as `demo` does for INPS, INAIL and Registro Imprese).
    AgencySim(AgencySimArgs),
    /// The audit trail: verify the hash chain, or export it.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Brings the database schema up to date and exits.
    Migrate {
        #[arg(long, env = "SPORTELLO_DATABASE_URL")]
        database_url: String,
    },
    #[cfg(feature = "demo")]
    /// Measures intake, delivery throughput and time to protocol numbers on this machine
    /// (build with --release for meaningful figures).
    Bench {
        #[arg(long, default_value_t = 200)]
        practices: usize,
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value = "catalog")]
        catalog: PathBuf,
        /// `own`: the demo's institutions with their own interfaces (channels/ beside the
        /// catalog); `sportello`: every institution with Sportello's own.
        #[arg(long, default_value = "own", value_parser = ["own", "sportello"])]
        interfaces: String,
    },
    #[cfg(feature = "demo")]
    /// Times the desk's searches on a fresh SQLite store filled with many practices.
    BenchSearch {
        #[arg(long, default_value_t = 1_000_000)]
        practices: usize,
        #[arg(long, default_value_t = 21)]
        rounds: usize,
        #[arg(long, default_value = "catalog")]
        catalog: PathBuf,
    },
    /// Signed receipts: `receipt verify FILE` checks a practices export offline.
    Receipt {
        #[command(subcommand)]
        command: ReceiptCommand,
    },
    /// Delivery channel tools.
    Channels {
        #[command(subcommand)]
        command: ChannelsCommand,
    },
    /// Catalog tools.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Checks the whole chain; names the first record that does not hold (exit status 1).
    Verify {
        #[arg(long, env = "SPORTELLO_DATABASE_URL", default_value = "sqlite://sportello-data/sportello.db")]
        database_url: String,
    },
    /// Writes every record as one JSON object per line to standard output.
    Export {
        #[arg(long, env = "SPORTELLO_DATABASE_URL", default_value = "sqlite://sportello-data/sportello.db")]
        database_url: String,
    },
}

#[derive(Debug, Subcommand)]
enum ReceiptCommand {
    /// Checks every institution's signed answer in an export (the desk's "Esporta") against
    /// the institutions' certificates, and every digest; exit status 1 if anything fails.
    Verify {
        file: PathBuf,
        /// The institutions' certificates from a channels file...
        #[arg(long, conflicts_with = "certificates")]
        channels: Option<PathBuf>,
        /// ...or from a folder of `<institution>.pem` (the demo's `sportello-data/pki`).
        #[arg(long, default_value = "sportello-data/pki")]
        certificates: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ChannelsCommand {
    /// Checks a channels file and the profiles it names; every mistake as file:line:column.
    Check {
        file: PathBuf,
        /// Also check that every institution of this catalog has a channel.
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// Print the exact request a filing to this institution would be (signed, not sent).
        #[arg(long, requires = "sample")]
        dry_run: Option<String>,
        /// The filing's payload for the dry run (JSON).
        #[arg(long)]
        sample: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum CatalogCommand {
    /// Checks a catalog folder and reports every mistake with file, line and column.
    Check {
        #[arg(default_value = "catalog")]
        dir: PathBuf,
    },
}

/// Logs to stderr, filtered by `SPORTELLO_LOG` (default `info`). Timestamps are UTC.
/// `SPORTELLO_LOG_FORMAT=json` writes one JSON record per line, for log collectors. Records
/// name holders by codice fiscale and cards by fingerprint, never whole certificates or keys.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SPORTELLO_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("SPORTELLO_LOG_FORMAT").as_deref() == Ok("json") {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// Ctrl-C or SIGTERM. Installed before anything starts, so an early signal is not lost.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

async fn run_until_signal(settings: &Settings) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    let running = sportello::start(settings).await?;
    shutdown.await;
    tracing::info!("stopping");
    running.stop().await;
    Ok(())
}

/// Worker settings from the environment: `SPORTELLO_WORKER_LEASE_MS` (how long a claim lasts
/// before another worker may take the delivery over; default 60 s) and, for crash-safety tests
/// only, `SPORTELLO_CRASH_AT` (`before-send` or `after-send`: the process aborts there).
fn worker_settings() -> WorkerSettings {
    let defaults = WorkerSettings::default();
    // Only a build with the demo's test aids (feature `demo`) reads the crash points.
    #[cfg(feature = "demo")]
    let crash_at = std::env::var("SPORTELLO_CRASH_AT").ok().and_then(|v| delivery::worker::CrashPoint::parse(&v));
    #[cfg(not(feature = "demo"))]
    let crash_at = None;
    let lease = std::env::var("SPORTELLO_WORKER_LEASE_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(defaults.lease, std::time::Duration::from_millis);
    WorkerSettings { crash_at, lease, ..defaults }
}

#[cfg(feature = "demo")]
async fn demo(data_dir: PathBuf, port: u16, catalog: PathBuf, database_url: Option<String>) -> anyhow::Result<()> {
    let shutdown = shutdown_signal()?;
    let files = demo::prepare(&data_dir, &web::SystemRandomness::default())?;
    let database_url = database_url.unwrap_or_else(|| format!("sqlite://{}", files.database.display()));
    let clock: std::sync::Arc<dyn domain::Clock> = std::sync::Arc::new(web::SystemClock);
    let random: std::sync::Arc<dyn domain::Randomness> = std::sync::Arc::new(web::SystemRandomness::default());
    // The channel profiles live beside the catalog: `channels/` next to `catalog/`.
    let channels_dir = catalog.parent().unwrap_or_else(|| std::path::Path::new(".")).join("channels");
    let (simulators, channels) = demo::start_simulators(&files, &channels_dir, clock.clone(), random.clone()).await?;
    let settings = Settings {
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        database_url: database_url.clone(),
        catalog_dir: catalog,
        tls: files.tls_material()?,
        card_profile: CardProfile::default(),
        sessions: Default::default(),
        demo_cards: Some(demo::chooser_cards(&files)?),
        front: web::tls::Front::Direct,
        channels: Some(channels),
        run_worker: true,
        worker: worker_settings(),
        crl_sources: vec![demo::refresh_crl(&files)?.display().to_string()],
        crl_refresh: std::time::Duration::from_secs(300),
        delegation_max_days: 365,
        clock,
        random,
        max_in_flight: web::admission::DEFAULT_IN_FLIGHT,
        store: None,
    };
    let running = sportello::start(&settings).await?;
    let url = format!("https://localhost:{}", running.addr.port());
    let first = &DEMO_CARDS[0];
    println!();
    println!("Sportello demo: {url}");
    println!("  database:         {}", sportello::redact(&database_url));
    println!("  CA certificate:   {}", files.ca_cert.display());
    for ((id, register), sim) in demo::DEMO_INSTITUTIONS.iter().zip(&simulators) {
        println!("  simulated {id:<17} https://{} (protocol register {register})", sim.addr);
    }
    for ((id, office, register), sim) in
        demo::DEMO_OFFICES.iter().zip(simulators.iter().skip(demo::DEMO_INSTITUTIONS.len()))
    {
        println!("  simulated {id}/{office} https://{} (protocol register {register})", sim.addr);
    }
    println!("  test smart cards (PKCS#12 password: {}):", files.card_password);
    for card in &DEMO_CARDS {
        println!(
            "    {} {} ({}), {}: {}  |  {} + {}",
            card.given_name,
            card.surname,
            card.tax_code,
            card.role,
            files.card_p12(card).display(),
            files.card_cert(card).display(),
            files.card_key(card).display()
        );
    }
    println!();
    println!("Try it:");
    println!(
        "  curl --cacert {} --cert {} --key {} {url}/api/v1/services",
        files.ca_cert.display(),
        files.card_cert(first).display(),
        files.card_key(first).display()
    );
    println!("  Without a card in the browser: {url}/demo/cards lets you pick a test card.");
    println!("  The API is described at {url}/api/v1/openapi.json. Stop with Ctrl-C.");
    println!();
    shutdown.await;
    tracing::info!("stopping");
    running.stop().await;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        #[cfg(feature = "demo")]
        Command::Demo { data_dir, port, catalog, database_url } => demo(data_dir, port, catalog, database_url).await?,
        Command::Serve(args) => run_until_signal(&commands::serve_settings(args, worker_settings())?).await?,
        Command::Worker { database_url, catalog, channels } => {
            let channels = Channels::load(&channels)?;
            sportello::run_worker(&database_url, &catalog, &channels, worker_settings(), shutdown_signal()?).await?;
        }
        #[cfg(feature = "demo")]
        Command::AgencySim(args) => commands::agency_sim(args, shutdown_signal()?).await?,
        #[cfg(feature = "demo")]
        Command::Bench { practices, concurrency, catalog, interfaces } => {
            let own = interfaces == "own";
            let report =
                sportello::bench::run(practices.clamp(1, 100_000), concurrency.clamp(1, 256), &catalog, own).await?;
            println!("{report}");
        }
        #[cfg(feature = "demo")]
        Command::BenchSearch { practices, rounds, catalog } => {
            let report =
                sportello::bench::search(practices.clamp(100, 5_000_000), rounds.clamp(1, 1000), &catalog).await?;
            println!("{report}");
        }
        Command::Receipt { command: ReceiptCommand::Verify { file, channels, certificates } } => {
            return commands::verify_receipts(&file, channels.as_deref(), &certificates);
        }
        Command::Audit { command: AuditCommand::Verify { database_url } } => {
            return commands::verify_audit(&database_url).await;
        }
        Command::Audit { command: AuditCommand::Export { database_url } } => {
            commands::export_audit(&database_url).await?
        }
        Command::Migrate { database_url } => {
            let store = storage::connect(&database_url).await?;
            store.migrate().await?;
            println!("database {} is up to date", sportello::redact(&database_url));
        }
        Command::Channels { command: ChannelsCommand::Check { file, catalog, dry_run, sample } } => {
            return commands::check_channels(&file, catalog.as_deref(), dry_run.zip(sample));
        }
        Command::Catalog { command: CatalogCommand::Check { dir } } => return Ok(commands::check_catalog(&dir)),
    }
    Ok(ExitCode::SUCCESS)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
