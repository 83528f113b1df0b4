//! Throwaway databases beside the live one, for the recovery drill: a sibling database on the
//! same PostgreSQL server, or a SQLite file in a temporary directory. Whoever makes one never
//! touches the live database through it, and it goes away when it is discarded or dropped.

use tempfile::TempDir;

use super::{Backend, Database, StorageError};
use crate::config::{DatabaseConfig, DatabaseSettings};

/// A database that exists only as long as this value.
pub struct ScratchDatabase {
    database: Database,
    name: String,
    cleanup: Cleanup,
}

enum Cleanup {
    /// The sibling is dropped through the live database's server connection.
    Sibling {
        owner: Database,
    },
    /// The SQLite file goes with its directory.
    Directory(TempDir),
    Done,
}

impl ScratchDatabase {
    /// Creates an empty database beside the one `settings` describe, with the same pool
    /// settings; `owner` is the live database's handle on the same server.
    pub(super) async fn create(
        owner: &Database,
        settings: &DatabaseSettings,
    ) -> Result<Self, StorageError> {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        match &settings.database {
            DatabaseConfig::Postgres(pg) => {
                let Backend::Postgres(store) = &owner.backend else {
                    return Err(StorageError::Unsupported(
                        "a scratch database of another backend",
                    ));
                };
                let name = format!("{}_drill_{}", pg.database(), &suffix[..12]);
                store.create_database(&name).await?;
                let scratch = DatabaseSettings {
                    database: DatabaseConfig::Postgres(pg.with_database(&name)),
                    ..settings.clone()
                };
                let cleanup = Cleanup::Sibling {
                    owner: owner.clone(),
                };
                match Database::connect_lazy(&scratch) {
                    Ok(database) => Ok(Self {
                        database,
                        name,
                        cleanup,
                    }),
                    Err(e) => {
                        drop_sibling(owner, &name).await;
                        Err(e)
                    }
                }
            }
            DatabaseConfig::Sqlite { .. } => {
                let dir = tempfile::tempdir().map_err(StorageError::ScratchDirectory)?;
                let path = dir.path().join("drill.db");
                let name = path.display().to_string();
                let database =
                    Database::connect_lazy(&DatabaseSettings::new(DatabaseConfig::Sqlite {
                        path,
                    }))?;
                Ok(Self {
                    database,
                    name,
                    cleanup: Cleanup::Directory(dir),
                })
            }
        }
    }

    pub fn database(&self) -> &Database {
        &self.database
    }

    /// The database's name (PostgreSQL) or file (SQLite), for reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Closes the scratch database's connections and removes it, waiting until it is gone.
    pub async fn discard(mut self) {
        self.database.close().await;
        match std::mem::replace(&mut self.cleanup, Cleanup::Done) {
            Cleanup::Sibling { owner } => drop_sibling(&owner, &self.name).await,
            Cleanup::Directory(dir) => drop(dir),
            Cleanup::Done => {}
        }
    }
}

impl Drop for ScratchDatabase {
    /// Not discarded (the drill was cancelled or failed early): the removal still happens, in
    /// the background, if a runtime is there to run it.
    fn drop(&mut self) {
        if let Cleanup::Sibling { owner } = std::mem::replace(&mut self.cleanup, Cleanup::Done)
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let name = std::mem::take(&mut self.name);
            let scratch = self.database.clone();
            runtime.spawn(async move {
                scratch.close().await;
                drop_sibling(&owner, &name).await;
            });
        }
    }
}

async fn drop_sibling(owner: &Database, name: &str) {
    if let Backend::Postgres(store) = &owner.backend
        && let Err(e) = store.drop_database(name).await
    {
        tracing::error!(database = %name, error = %e, "could not drop the drill's scratch database");
    }
}
