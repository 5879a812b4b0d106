//! Test databases: a temporary SQLite file, or a fresh schema in the PostgreSQL database named
//! by `SWITCHBOARD_TEST_POSTGRES_URL`, dropped when the test ends (even on panic).

use std::time::Duration;

use sqlx::Connection;
use switchboard_store::{Direction, NewItem, OutboxItem, Store};

/// The environment variable naming the PostgreSQL database the tests may use.
pub(crate) const POSTGRES_URL_VAR: &str = "SWITCHBOARD_TEST_POSTGRES_URL";

/// A store on a private database, plus what it takes to reopen and clean it up.
pub(crate) struct TestDb {
    pub(crate) store: Store,
    url: String,
    _guard: Guard,
}

enum Guard {
    Sqlite(#[allow(dead_code)] tempfile::TempDir),
    Postgres { admin_url: String, schema: String },
}

impl TestDb {
    pub(crate) async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temporary directory");
        // A missing sub-directory checks that `connect` creates it.
        let path = dir.path().join("data").join("store.db");
        let url = format!("sqlite://{}", path.display());
        let store = Store::connect(&url).await.expect("open SQLite store");
        TestDb {
            store,
            url,
            _guard: Guard::Sqlite(dir),
        }
    }

    /// `None` (after saying so) when the variable is unset outside CI.
    pub(crate) async fn postgres() -> Option<TestDb> {
        let admin_url = postgres_url()?;
        let schema = format!("sb_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {POSTGRES_URL_VAR}: {e}"));
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut admin)
            .await
            .expect("create test schema");
        admin.close().await.ok();
        let separator = if admin_url.contains('?') { '&' } else { '?' };
        let url = format!("{admin_url}{separator}options=-c%20search_path%3D{schema}");
        let guard = Guard::Postgres { admin_url, schema };
        let store = Store::connect(&url).await.expect("open PostgreSQL store");
        Some(TestDb {
            store,
            url,
            _guard: guard,
        })
    }

    /// The database's URL (on PostgreSQL, with the test schema as its search path).
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The SQLite file, `None` on PostgreSQL.
    pub(crate) fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        self.url
            .strip_prefix("sqlite://")
            .map(std::path::PathBuf::from)
    }

    /// Opens the same database again, as a restarted process (or a second instance) would.
    pub(crate) async fn reopen(&self) -> Store {
        Store::connect(&self.url).await.expect("reopen store")
    }

    /// Opens the same database again with `options`, as another instance set up otherwise.
    pub(crate) async fn reopen_with(&self, options: switchboard_store::StoreOptions) -> Store {
        Store::connect_with(&self.url, options)
            .await
            .expect("reopen store")
    }
}

/// The PostgreSQL URL, `None` if unset outside CI; panics if unset under `CI=true`.
pub(crate) fn postgres_url() -> Option<String> {
    match std::env::var(POSTGRES_URL_VAR) {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{POSTGRES_URL_VAR} must be set when CI=true: the PostgreSQL tests must run")
        }
        _ => {
            eprintln!(
                "skipping: set {POSTGRES_URL_VAR} (e.g. postgres://postgres@127.0.0.1:5432/test) \
                 to run the PostgreSQL variant of this test"
            );
            None
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::Postgres { admin_url, schema } = self {
            let (admin_url, schema) = (admin_url.clone(), schema.clone());
            // Drop may run inside the test's runtime: do the async cleanup on a thread of its own.
            let cleanup = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("cleanup runtime");
                runtime.block_on(async {
                    if let Ok(mut admin) = sqlx::PgConnection::connect(&admin_url).await {
                        let drop = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                        if let Err(e) = sqlx::query(&drop).execute(&mut admin).await {
                            eprintln!("could not drop test schema {schema}: {e}");
                        }
                        admin.close().await.ok();
                    }
                });
            });
            cleanup.join().ok();
        }
    }
}

/// An item for `consumer` with payload `{"n": n}`.
pub(crate) fn item(consumer: &str, n: i64) -> NewItem {
    NewItem::new(consumer, serde_json::json!({ "n": n }))
}

/// The `n` of an item made by [`item`].
pub(crate) fn n(item: &OutboxItem) -> i64 {
    item.payload["n"].as_i64().expect("payload with n")
}

/// Enqueues `items` without dedup and returns their ids.
pub(crate) async fn enqueue(store: &Store, direction: Direction, items: &[NewItem]) -> Vec<i64> {
    match store
        .enqueue(direction, items, None)
        .await
        .expect("enqueue")
    {
        switchboard_store::Enqueued::Stored(ids) => ids,
        switchboard_store::Enqueued::Duplicate => panic!("unexpected duplicate"),
    }
}

/// A lease long enough never to expire during a test.
pub(crate) const LONG: Duration = Duration::from_secs(60);
