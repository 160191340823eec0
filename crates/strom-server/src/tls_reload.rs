//! Certificate reload without a restart. The TLS listeners take the acceptor of each new
//! connection from a [`ReloadableAcceptor`]; it is rebuilt from the same settings on SIGHUP
//! and when the keystore or truststore file changes (modification time, length or inode,
//! checked every `ssl.reload.check.interval.ms`). Connections already open keep the
//! configuration they were accepted with. A new file that does not load (a bad PEM, a key
//! that does not match the chain, a half-written file) is logged and the old certificate
//! stays in use; the next change of the file is tried again.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use strom_broker::security::settings::SecuritySettings;
use tokio_rustls::TlsAcceptor;

use crate::shutdown::Shutdown;
use crate::tls::{acceptor, TlsSetupError};

/// What tells a file apart from its previous version without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &PathBuf) -> Option<FileStamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(FileStamp {
        modified: meta.modified().ok(),
        len: meta.len(),
        inode,
    })
}

pub struct ReloadableAcceptor {
    settings: SecuritySettings,
    current: RwLock<TlsAcceptor>,
    /// The files' stamps when a load was last tried (successful or not), so a bad file is
    /// tried once per change rather than at every check.
    tried: Mutex<Vec<Option<FileStamp>>>,
}

impl ReloadableAcceptor {
    pub fn new(settings: &SecuritySettings) -> Result<Arc<ReloadableAcceptor>, TlsSetupError> {
        let watched = ReloadableAcceptor::watched_files(settings);
        let tried = watched.iter().map(stamp).collect();
        Ok(Arc::new(ReloadableAcceptor {
            current: RwLock::new(acceptor(settings)?),
            settings: settings.clone(),
            tried: Mutex::new(tried),
        }))
    }

    fn watched_files(settings: &SecuritySettings) -> Vec<PathBuf> {
        [&settings.keystore_location, &settings.truststore_location]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// The acceptor for a new connection.
    pub fn current(&self) -> TlsAcceptor {
        self.current.read().clone()
    }

    /// Rebuilds the acceptor from the files; on failure logs and keeps the old one.
    pub fn reload(&self, why: &str) -> bool {
        let files = ReloadableAcceptor::watched_files(&self.settings);
        *self.tried.lock() = files.iter().map(stamp).collect();
        match acceptor(&self.settings) {
            Ok(new) => {
                *self.current.write() = new;
                tracing::info!(
                    reason = why,
                    "TLS certificate reloaded; new connections use it"
                );
                true
            }
            Err(e) => {
                tracing::warn!(reason = why, error = %e, "TLS certificate reload failed; keeping the previous certificate");
                false
            }
        }
    }

    /// Reloads if a watched file changed since the last attempt.
    pub fn reload_if_changed(&self) -> bool {
        let files = ReloadableAcceptor::watched_files(&self.settings);
        let now: Vec<_> = files.iter().map(stamp).collect();
        if *self.tried.lock() == now {
            return false;
        }
        self.reload("keystore or truststore file changed")
    }
}

/// Reloads on SIGHUP, and every `check_interval` if a file changed (`None`: SIGHUP only),
/// until shutdown.
pub async fn watch(
    acceptor: Arc<ReloadableAcceptor>,
    check_interval: Option<Duration>,
    mut shutdown: Shutdown,
) {
    #[cfg(unix)]
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; certificates reload only when their files change");
            None
        }
    };
    let mut ticks = check_interval.map(|every| {
        let mut t = tokio::time::interval(every);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    loop {
        let tick = async {
            match ticks.as_mut() {
                Some(t) => {
                    t.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(unix)]
        let signal = async {
            match hangup.as_mut() {
                Some(h) => {
                    h.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let signal = std::future::pending::<()>();
        tokio::select! {
            _ = tick => {
                let a = acceptor.clone();
                // Reading and parsing the files is blocking work.
                let _ = tokio::task::spawn_blocking(move || a.reload_if_changed()).await;
            }
            _ = signal => {
                let a = acceptor.clone();
                let _ = tokio::task::spawn_blocking(move || a.reload("SIGHUP")).await;
            }
            _ = shutdown.wait() => return,
        }
    }
}
