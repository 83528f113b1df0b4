//! Upgrades never run a migration on tasks that are not backed up: a database of the current
//! release holding tasks meets a "next release" (this binary's migrations plus one more), and
//! the server writes a backup before migrating, refuses to migrate (not ready) when it cannot,
//! and skips the backup only when told to. `task-api migrate` does the same on the previous
//! release's schema, and both copy the backup off site when BACKUP_REMOTE is set.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use sqlx::migrate::Migrator;
use task_api::backup;
use task_api::config::{Config, DatabaseConfig, DatabaseSettings};
use task_api::domain::{self, NewTask, TaskDescription, TaskStatus, TaskTitle};
use task_api::startup::Application;
use task_api::storage::Database;

use crate::helpers::{Backend, TestApp};
use crate::pg;
use crate::s3::S3Server;

const TASKS: usize = 3;
/// The next release's extra migration; its table shows whether it ran.
const PROBE_MIGRATION: &str = "29991231000000_upgrade_probe.sql";

/// A database of the current release with tasks in it, and where its files live.
struct OldRelease {
    settings: DatabaseSettings,
    dir: tempfile::TempDir,
    pg_name: Option<String>,
}

impl Drop for OldRelease {
    fn drop(&mut self) {
        if let Some(name) = &self.pg_name {
            pg::shared().drop_database_blocking(name);
        }
    }
}

impl OldRelease {
    async fn create(backend: Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (database, pg_name) = match backend {
            Backend::Sqlite => (
                DatabaseConfig::Sqlite {
                    path: dir.path().join("tasks.db"),
                },
                None,
            ),
            Backend::Postgres => {
                let name = pg::shared().create_database().await;
                (
                    DatabaseConfig::Postgres(pg::shared().config(&name)),
                    Some(name),
                )
            }
        };
        let settings = DatabaseSettings::new(database);
        let db = Database::connect_lazy(&settings).unwrap();
        db.migrate().await.unwrap();
        for i in 0..TASKS {
            let task = NewTask {
                title: TaskTitle::parse(&format!("Kept across the upgrade {i}")).unwrap(),
                description: TaskDescription::parse("").unwrap(),
                status: TaskStatus::Pending,
            };
            db.create_task(&task, domain::now()).await.unwrap();
        }
        db.close().await;
        Self {
            settings,
            dir,
            pg_name,
        }
    }

    fn backup_dir(&self) -> PathBuf {
        self.dir.path().join("backups")
    }

    /// The next release: this binary's migrations for the backend, plus the probe.
    async fn next_release_migrator(&self) -> &'static Migrator {
        let source = match self.settings.database {
            DatabaseConfig::Postgres(_) => "postgres",
            DatabaseConfig::Sqlite { .. } => "sqlite",
        };
        let migrations = self.dir.path().join("next-release-migrations");
        std::fs::create_dir_all(&migrations).unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(source);
        for entry in std::fs::read_dir(shipped).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), migrations.join(entry.file_name())).unwrap();
        }
        std::fs::write(
            migrations.join(PROBE_MIGRATION),
            "CREATE TABLE upgrade_probe (id INTEGER PRIMARY KEY);\n",
        )
        .unwrap();
        let migrator = Migrator::new(migrations.as_path()).await.unwrap();
        Box::leak(Box::new(migrator))
    }

    /// Starts the next release's server on this database; does not wait for readiness.
    async fn upgrade(&self, adjust: impl FnOnce(&mut Config)) -> TestApp {
        let migrator = self.next_release_migrator().await;
        let db = Database::connect_lazy(&self.settings)
            .unwrap()
            .with_migrator(migrator);
        let mut config = Config::new(self.settings.database.clone());
        config.port = 0;
        config.backup_dir = self.backup_dir();
        adjust(&mut config);
        let app = Application::build_with_database(config, db).await.unwrap();
        crate::helpers::start_built(app).await
    }

    /// Whether the probe migration ran, asked of the database directly.
    async fn probe_applied(&self) -> bool {
        let db = Database::connect_lazy(&self.settings).unwrap();
        let migrator = self.next_release_migrator().await;
        let status = db.with_migrator(migrator).schema_status().await.unwrap();
        status.is_current()
    }
}

fn backups_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(backup::PREFIX))
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn a_pending_migration_on_tasks_is_preceded_by_a_backup(backend: Backend) {
    let old = OldRelease::create(backend).await;
    assert!(
        !old.probe_applied().await,
        "the probe ran before the upgrade"
    );
    let app = old.upgrade(|_| {}).await;
    app.wait_until_ready().await;

    let written = migrated_after_one_backup(&old).await;
    let backup::Verification::Full(verified) = backup::verify(&written, None).await.unwrap() else {
        panic!("a plaintext backup is checked in full");
    };
    assert_eq!(verified.trailer.rows, TASKS as u64);
    assert_eq!(app.total().await, TASKS as i64);

    // Restarting the upgraded release finds nothing pending: no second backup.
    drop(app);
    let again = old.upgrade(|_| {}).await;
    again.wait_until_ready().await;
    assert_eq!(backups_in(&old.backup_dir()).len(), 1);
}

/// The pending migration ran, and exactly one backup was written before it: its path.
async fn migrated_after_one_backup(old: &OldRelease) -> PathBuf {
    assert!(
        old.probe_applied().await,
        "the pending migration did not run"
    );
    let mut written = backups_in(&old.backup_dir());
    assert_eq!(written.len(), 1, "expected one backup: {written:?}");
    written.remove(0)
}

async fn a_failed_backup_keeps_the_migration_from_running(backend: Backend) {
    let old = OldRelease::create(backend).await;
    // A path below a regular file: no user, root included, can create it.
    let blocker = old.dir.path().join("not-a-directory");
    std::fs::write(&blocker, "").unwrap();
    let app = old
        .upgrade(|c| c.backup_dir = blocker.join("backups"))
        .await;

    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(2) {
        let ready = app.get("/readyz").await;
        assert_eq!(
            ready.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            ready.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.get("/livez").await.status, StatusCode::OK);
    assert!(
        !old.probe_applied().await,
        "a migration ran although its backup failed"
    );
}

async fn the_backup_is_skipped_only_when_disabled(backend: Backend) {
    let old = OldRelease::create(backend).await;
    let app = old.upgrade(|c| c.backup_before_migrate = false).await;
    app.wait_until_ready().await;
    assert!(old.probe_applied().await);
    assert!(backups_in(&old.backup_dir()).is_empty());
}

/// With BACKUP_REMOTE set, the backup before migrating is copied off site before the
/// migration runs: it is in the store, byte for byte, by the time the service is ready.
async fn the_backup_before_migrating_is_copied_off_site(backend: Backend) {
    let s3 = S3Server::start(&["task-backups"]).await;
    let old = OldRelease::create(backend).await;
    let app = old
        .upgrade(|c| c.backup_remote = Some(s3.settings("s3://task-backups/upgrades")))
        .await;
    app.wait_until_ready().await;
    let written = migrated_after_one_backup(&old).await;
    let name = written.file_name().unwrap();
    let stored = s3.root.path().join("task-backups/upgrades").join(name);
    assert_eq!(
        std::fs::read(&stored).ok(),
        std::fs::read(&written).ok(),
        "{} is not in the store as written",
        stored.display()
    );
}

/// A new database has no tasks to protect: the first start writes no backup.
async fn a_new_database_needs_no_backup(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let backup_dir = dir.path().join("backups");
    let app = crate::helpers::spawn_app_with(backend, |c| c.backup_dir = backup_dir.clone()).await;
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    assert!(backups_in(&backup_dir).is_empty());
}

for_each_backend!(
    a_pending_migration_on_tasks_is_preceded_by_a_backup,
    a_failed_backup_keeps_the_migration_from_running,
    the_backup_is_skipped_only_when_disabled,
    a_new_database_needs_no_backup,
    the_backup_before_migrating_is_copied_off_site,
);

#[tokio::test]
async fn migrate_says_whether_it_backed_up_first() {
    let dir = tempfile::tempdir().unwrap();
    let first = crate::process::run(dir.path(), &["migrate"], &[]).await;
    assert!(first.status.success(), "{}", first.stderr);
    assert!(
        first.stdout.contains("backup before migrating: not needed"),
        "{}",
        first.stdout
    );
    let disabled = crate::process::run(
        dir.path(),
        &["migrate"],
        &[("NO_BACKUP_BEFORE_MIGRATE", "true")],
    )
    .await;
    assert!(disabled.status.success(), "{}", disabled.stderr);
    assert!(disabled.stdout.contains("disabled"), "{}", disabled.stdout);
    let bad_remote = crate::process::run(
        dir.path(),
        &["migrate"],
        &[("BACKUP_REMOTE", "s3://Not_A_Bucket")],
    )
    .await;
    bad_remote.assert_exit_naming(2, "BACKUP_REMOTE");
    let bad = crate::process::run(
        dir.path(),
        &["serve"],
        &[("DB_PASSWORD_CHECK_INTERVAL", "1ms")],
    )
    .await;
    bad.assert_exit_naming(2, "--db-password-check-interval");
}

/// `task-api migrate` on the previous release's schema (every shipped SQLite migration but the
/// newest) holding tasks: the backup before migrating is written, copied to BACKUP_REMOTE byte
/// for byte, and said so; then the newest migration runs.
#[tokio::test]
async fn migrate_backs_up_the_previous_release_and_copies_it_off_site() {
    let s3 = S3Server::start(&["task-backups"]).await;
    let dir = tempfile::tempdir().unwrap();
    let previous = dir.path().join("previous-release-migrations");
    std::fs::create_dir_all(&previous).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&shipped)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let newest = files.pop().unwrap();
    for file in &files {
        std::fs::copy(file, previous.join(file.file_name().unwrap())).unwrap();
    }
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("tasks.db").display()
    );
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    Migrator::new(previous.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    for title in ["one", "two", "three"] {
        sqlx::query(
            "INSERT INTO tasks (title, description, status, created_at, updated_at) \
             VALUES (?1, '', 'pending', 1764720000000, 1764720000000)",
        )
        .bind(title)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;

    let mut envs = s3.env("s3://task-backups/upgrades");
    envs.push(("DATABASE_URL".into(), url));
    envs.push(("BACKUP_DIR".into(), "backups".into()));
    let borrowed: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out = crate::process::run(dir.path(), &["migrate"], &borrowed).await;
    out.assert_success("migrate");
    assert!(
        out.stdout.contains("backup before migrating: backups/")
            && out.stdout.contains("(3 tasks)"),
        "{}",
        out.stdout
    );
    let written = backups_in(&dir.path().join("backups"));
    assert_eq!(written.len(), 1, "{written:?}");
    let name = written[0].file_name().unwrap();
    assert!(
        out.stdout.contains(&format!(
            "uploaded to s3://task-backups/upgrades: {}",
            name.to_string_lossy()
        )),
        "{}",
        out.stdout
    );
    assert_eq!(
        std::fs::read(s3.root.path().join("task-backups/upgrades").join(name)).ok(),
        std::fs::read(&written[0]).ok(),
        "the backup is not in the store as written"
    );
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("tasks.db").display()
    ))
    .await
    .unwrap();
    let newest_version: i64 = newest.file_name().unwrap().to_string_lossy()[..14]
        .parse()
        .unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied, newest_version, "the newest migration did not run");
}
