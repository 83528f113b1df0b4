//! Password rotation without a restart: the password file is read again every few seconds
//! and, once it changes, new connections log in with the new password. Connections already
//! open stay logged in (PostgreSQL checks a password only when a connection starts), so
//! requests keep being served while the password changes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::Database;
use crate::config::{DatabaseConfig, DatabaseSettings, read_password_file};
use crate::telemetry::error_chain;

/// The watch of the password file, when the settings name one (PostgreSQL with
/// `DB_PASSWORD_FILE`): it runs until dropped, so the caller runs it until it stops.
pub(crate) fn watch(
    db: &Database,
    settings: &DatabaseSettings,
) -> Option<impl Future<Output = ()> + Send + 'static> {
    let DatabaseConfig::Postgres(pg) = &settings.database else {
        return None;
    };
    let path = pg.password_file.clone()?;
    // The value in use is the one read at start; compare later reads with it.
    let current = read_password_file(&path).ok()?;
    let watcher = Watcher {
        db: db.clone(),
        path,
        current,
        unreadable: false,
    };
    Some(watcher.run(settings.password_check_interval))
}

struct Watcher {
    db: Database,
    path: PathBuf,
    current: SecretString,
    /// Whether the last read failed, so a lasting problem is logged once, not every interval.
    unreadable: bool,
}

impl Watcher {
    async fn run(mut self, interval: Duration) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        loop {
            ticks.tick().await;
            self.check();
        }
    }

    fn check(&mut self) {
        match read_password_file(&self.path) {
            Ok(password) => {
                if self.unreadable {
                    self.unreadable = false;
                    tracing::info!(path = %self.path.display(), "password file readable again");
                }
                if password.expose_secret() != self.current.expose_secret() {
                    self.db.set_password(&password);
                    self.current = password;
                    tracing::info!(
                        path = %self.path.display(),
                        "database password file changed: new connections use the new password"
                    );
                }
            }
            // A file caught half-rewritten (empty) or briefly missing: keep the password in use.
            Err(e) if !self.unreadable => {
                self.unreadable = true;
                log_unreadable(&self.path, &e);
            }
            Err(_) => {}
        }
    }
}

fn log_unreadable(path: &Path, error: &crate::config::ConfigError) {
    tracing::warn!(
        path = %path.display(),
        error = %error_chain(error),
        "cannot read the password file again: new connections keep the password read before"
    );
}
