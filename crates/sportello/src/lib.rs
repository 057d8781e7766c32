//! Wiring: reads the catalog files, opens the store, builds the TLS listener and starts the
//! portal. The `sportello` binary is a thin command-line layer over this library, and the
//! integration tests start the portal through the very same [`start`].

pub mod catalog_files;
pub mod demo;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use domain::Clock;
use identity::CardProfile;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use web::tls::{PeerCheck, TlsMaterial};
use web::{AppState, SystemClock, SystemRandomness};

/// Everything `serve` needs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    /// `sqlite://PATH`, a file path, or `postgres://…`.
    pub database_url: String,
    pub catalog_dir: PathBuf,
    pub tls: TlsMaterial,
    pub card_profile: CardProfile,
}

/// A portal that is running.
#[derive(Debug)]
pub struct Running {
    /// Where it listens (the real port when 0 was asked).
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Running {
    /// Stops accepting connections and waits for open requests to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Waits until the portal stops by itself (it does not, unless the task fails).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

/// Loads the catalog, opens and migrates the store, binds the listener and starts serving.
pub async fn start(settings: &Settings) -> anyhow::Result<Running> {
    let catalog = catalog_files::load_dir(&settings.catalog_dir)?;
    let store = storage::connect(&settings.database_url)
        .await
        .with_context(|| format!("opening the database {}", redact(&settings.database_url)))?;
    store.migrate().await.context("migrating the database")?;
    let tls = web::tls::server_config(&settings.tls).context("setting up TLS")?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let state = AppState {
        store,
        catalog: Arc::new(catalog),
        clock: clock.clone(),
        random: Arc::new(SystemRandomness::default()),
        translations: Arc::new(web::i18n::Translations::load().map_err(anyhow::Error::msg)?),
    };
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("listening on {}", settings.listen))?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let peer_check = PeerCheck {
        profile: settings.card_profile.clone(),
        clock,
    };
    let app = web::router(state);
    let task = tokio::spawn(web::tls::serve(listener, tls, peer_check, app, async {
        let _ = stopped.await;
    }));
    tracing::info!(%addr, "portal listening");
    Ok(Running {
        addr,
        stop: Some(stop),
        task,
    })
}

/// A database URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            super::redact("sportello-data/sportello.db"),
            "sportello-data/sportello.db"
        );
    }
}
