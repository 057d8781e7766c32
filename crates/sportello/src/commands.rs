//! What the longer subcommands of `sportello` do, one function each; `main.rs` holds the
//! command line and dispatches.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use delivery::channels::Channels;
use delivery::worker::WorkerSettings;
use identity::CardProfile;
use sportello::{catalog_files, Settings};
use web::tls::TlsMaterial;

#[cfg(feature = "demo")]
fn parse_interface(s: &str) -> Result<simulator::Interface, String> {
    simulator::Interface::parse(s)
        .ok_or_else(|| format!("`{s}`: expected sportello, registro-block, inail-pull or inps-xml"))
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// `sportello serve`: the portal with explicit settings.
#[derive(Debug, clap::Args)]
pub(crate) struct ServeArgs {
    #[arg(long, env = "SPORTELLO_LISTEN", default_value = "127.0.0.1:8443")]
    pub(crate) listen: SocketAddr,
    #[arg(long, env = "SPORTELLO_DATABASE_URL")]
    pub(crate) database_url: String,
    #[arg(long, env = "SPORTELLO_CATALOG", default_value = "catalog")]
    pub(crate) catalog: PathBuf,
    /// The server's certificate chain (PEM).
    #[arg(long, env = "SPORTELLO_TLS_CERT")]
    pub(crate) tls_cert: PathBuf,
    /// The server's private key (PEM).
    #[arg(long, env = "SPORTELLO_TLS_KEY")]
    pub(crate) tls_key: PathBuf,
    /// The certifiers whose smart cards are accepted (PEM bundle).
    #[arg(long, env = "SPORTELLO_CLIENT_CA")]
    pub(crate) client_ca: PathBuf,
    /// Delivery channels to the institutions (TOML). Without it filings stay queued.
    #[arg(long, env = "SPORTELLO_CHANNELS")]
    pub(crate) channels: Option<PathBuf>,
    /// Do not run the delivery worker in this process (run `sportello worker` instead).
    #[arg(long)]
    pub(crate) no_worker: bool,
    /// A certifier's CRL: file or http(s) URL, PEM or DER; repeat for several. Re-read every
    /// --crl-refresh-secs.
    #[arg(long = "crl", env = "SPORTELLO_CRLS", value_delimiter = ',')]
    pub(crate) crls: Vec<String>,
    /// Certificate policy OIDs a card must carry (one of them); default: CNS, CIE and the
    /// regional service cards.
    #[arg(long = "card-policy", value_delimiter = ',')]
    pub(crate) card_policies: Vec<String>,
    #[arg(long, default_value_t = 300)]
    pub(crate) crl_refresh_secs: u64,
    /// Hours a CRL past its nextUpdate is still used before its certifier's cards are refused.
    #[arg(long, default_value_t = 24)]
    pub(crate) crl_grace_hours: u64,
    /// Run behind a TLS-terminating proxy at this address (repeat for several): the listener
    /// speaks plain HTTP, accepts connections only from these addresses, and reads the
    /// client certificate from X-SSL-Client-Cert (see docs/nginx.md).
    #[arg(long = "trusted-proxy", value_delimiter = ',')]
    pub(crate) trusted_proxies: Vec<std::net::IpAddr>,
    /// Longest validity of a sub-delegation to a collaborator, in days.
    #[arg(long, env = "SPORTELLO_DELEGATION_MAX_DAYS", default_value_t = 365)]
    pub(crate) delegation_max_days: i64,
    /// Requests worked on at once; past it the portal answers 503 with Retry-After.
    #[arg(long, env = "SPORTELLO_MAX_IN_FLIGHT", default_value_t = web::admission::DEFAULT_IN_FLIGHT)]
    pub(crate) max_in_flight: usize,
}

/// `sportello agency-sim`: one simulated institution.
#[cfg(feature = "demo")]
#[derive(Debug, clap::Args)]
pub(crate) struct AgencySimArgs {
    /// The institution's id in the catalog, e.g. `inps`.
    #[arg(long)]
    pub(crate) institution: String,
    /// Code of its protocol register, e.g. `INPS-AOO1`.
    #[arg(long)]
    pub(crate) register: String,
    #[arg(long, default_value = "127.0.0.1:9101")]
    pub(crate) listen: SocketAddr,
    /// Its TLS and signing certificate and key (PEM).
    #[arg(long)]
    pub(crate) cert: PathBuf,
    #[arg(long)]
    pub(crate) key: PathBuf,
    /// The portal's certificate, to check its signatures.
    #[arg(long)]
    pub(crate) portal_cert: PathBuf,
    /// The CA of the portal's server certificate, for callbacks.
    #[arg(long)]
    pub(crate) portal_ca: PathBuf,
    #[arg(long, default_value = "sportello")]
    pub(crate) portal_id: String,
    /// Behaviour (JSON): down, failure_rate, delay_ms, protocol_in_answer, callbacks,
    /// callback_delay_ms, rules.
    #[arg(long)]
    pub(crate) behaviour: Option<PathBuf>,
    /// The interface it speaks: `sportello`, `registro-block` (BLOCK_REST), `inail-pull`
    /// (NONBLOCK_PULL_REST) or `inps-xml` (XML, NONBLOCK_PUSH_REST); see `channels/` for
    /// the profiles that speak them.
    #[arg(long, default_value = "sportello", value_parser = parse_interface)]
    pub(crate) interface: simulator::Interface,
    /// Where it keeps its ledger across restarts (JSON).
    #[arg(long)]
    pub(crate) ledger: Option<PathBuf>,
    /// Behind PDND: the certificate PDND signs vouchers with (PEM); filings must then carry
    /// a voucher for this institution.
    #[arg(long)]
    pub(crate) pdnd_cert: Option<PathBuf>,
}

/// The portal's settings from `sportello serve`'s arguments (files read, limits applied).
pub(crate) fn serve_settings(args: ServeArgs, worker: WorkerSettings) -> anyhow::Result<Settings> {
    let ServeArgs {
        listen,
        database_url,
        catalog,
        tls_cert,
        tls_key,
        client_ca,
        channels,
        no_worker,
        crls,
        crl_refresh_secs,
        crl_grace_hours,
        trusted_proxies,
        card_policies,
        delegation_max_days,
        max_in_flight,
    } = args;
    Ok(Settings {
        max_in_flight,
        store: None,
        listen,
        database_url,
        catalog_dir: catalog,
        tls: TlsMaterial {
            cert_chain_pem: read(&tls_cert)?,
            key_pem: read(&tls_key)?,
            client_ca_pem: read(&client_ca)?,
            crl_pems: Vec::new(),
            crl_grace: std::time::Duration::from_secs(crl_grace_hours.saturating_mul(3600)),
        },
        sessions: Default::default(),
        demo_cards: None,
        delegation_max_days: delegation_max_days.clamp(1, 3650),
        card_profile: if card_policies.is_empty() {
            CardProfile::default()
        } else {
            CardProfile { accepted_policies: card_policies }
        },
        front: if trusted_proxies.is_empty() {
            web::tls::Front::Direct
        } else {
            web::tls::Front::BehindProxy { trusted: trusted_proxies }
        },
        channels: channels.as_deref().map(Channels::load).transpose()?,
        run_worker: !no_worker,
        worker,
        crl_sources: crls,
        crl_refresh: std::time::Duration::from_secs(crl_refresh_secs.max(1)),
        clock: std::sync::Arc::new(web::SystemClock),
        random: std::sync::Arc::new(web::SystemRandomness::default()),
    })
}

/// `sportello agency-sim`: serves one simulated institution until `shutdown`.
#[cfg(feature = "demo")]
pub(crate) async fn agency_sim(
    args: AgencySimArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let AgencySimArgs {
        institution,
        register,
        listen,
        cert,
        key,
        portal_cert,
        portal_ca,
        portal_id,
        behaviour,
        interface,
        ledger,
        pdnd_cert,
    } = args;
    let behaviour = match behaviour {
        Some(path) => serde_json::from_str(&read(&path)?).with_context(|| format!("reading {}", path.display()))?,
        None => simulator::Behaviour::default(),
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let settings = simulator::SimSettings {
        institution: institution.clone(),
        register,
        portal_id,
        portal_cert_pem: read(&portal_cert)?,
        portal_ca_pem: read(&portal_ca)?,
        cert_pem: read(&cert)?,
        key_pem: read(&key)?,
        behaviour,
        interface,
        ledger_path: ledger,
        pdnd_cert_pem: pdnd_cert.as_deref().map(read).transpose()?,
        clock: std::sync::Arc::new(web::SystemClock),
        random: std::sync::Arc::new(web::SystemRandomness::default()),
    };
    let handle = simulator::start(listener, settings).await?;
    println!("simulated {institution} on https://{}", handle.addr);
    shutdown.await;
    Ok(())
}

/// `sportello receipt verify`: each institution's signed answer in an export, checked offline.
pub(crate) fn verify_receipts(file: &Path, channels: Option<&Path>, certificates: &Path) -> anyhow::Result<ExitCode> {
    let text = read(file)?;
    let certificates = match channels {
        Some(path) => sportello::receipt::certificates_of_channels(&Channels::load(path)?),
        None => {
            let export: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let named = sportello::receipt::institutions_named(&export);
            let named: Vec<&str> = named.iter().map(String::as_str).collect();
            sportello::receipt::certificates_in(certificates, &named)
        }
    };
    let report =
        sportello::receipt::verify(&text, &certificates).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    for line in &report.lines {
        println!("{line}");
    }
    println!("{} verified, {} failed", report.verified, report.failed);
    Ok(if report.failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `sportello audit verify`: the audit trail's hash chain, from the first record.
pub(crate) async fn verify_audit(database_url: &str) -> anyhow::Result<ExitCode> {
    let store = storage::connect(database_url).await?;
    store.migrate().await?;
    Ok(match storage::audit::verify(store.as_ref()).await? {
        Ok(count) => {
            println!("audit trail intact: {count} records");
            ExitCode::SUCCESS
        }
        Err(broken) => {
            eprintln!("audit trail broken at record {}: {broken}", broken.seq());
            ExitCode::from(1)
        }
    })
}

/// `sportello audit export`: every record as JSON lines on standard output.
pub(crate) async fn export_audit(database_url: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let store = storage::connect(database_url).await?;
    store.migrate().await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut after = 0;
    loop {
        let page = store.audit_page(after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for record in &page {
            serde_json::to_writer(&mut out, record)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    Ok(())
}

/// `sportello channels check`: the channel profiles against the catalog, and with a sample
/// the request one institution would get.
pub(crate) fn check_channels(
    file: &Path,
    catalog: Option<&Path>,
    dry_run: Option<(String, PathBuf)>,
) -> anyhow::Result<ExitCode> {
    let catalog = match catalog.map(catalog_files::load_dir) {
        Some(Err(problems)) => {
            eprint!("{problems}");
            return Ok(ExitCode::from(1));
        }
        Some(Ok(c)) => Some(c),
        None => None,
    };
    let (channels, summary) = match sportello::channels_check::check(file, catalog.as_ref()) {
        Ok(found) => found,
        Err(problems) => {
            eprintln!("{problems}");
            return Ok(ExitCode::from(1));
        }
    };
    print!("{summary}");
    if let Some((institution, sample)) = dry_run {
        let payload = serde_json::from_str(&read(&sample)?).with_context(|| format!("reading {}", sample.display()))?;
        match sportello::channels_check::dry_run(&channels, &institution, payload) {
            Ok(request) => print!("\n{request}"),
            Err(problem) => {
                eprintln!("{}: {problem}", file.display());
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `sportello catalog check`: the catalog's files, every mistake with its place.
pub(crate) fn check_catalog(dir: &Path) -> ExitCode {
    match catalog_files::load_dir(dir) {
        Ok(catalog) => {
            println!(
                "the catalog in {} is valid: {} institutions, {} services, {} common fields",
                dir.display(),
                catalog.institutions.len(),
                catalog.services.len(),
                catalog.dictionary.len()
            );
            ExitCode::SUCCESS
        }
        Err(problems) => {
            eprint!("{problems}");
            ExitCode::from(1)
        }
    }
}
