//! Integration tests of `switchboard-store`. Every test body runs against SQLite (a temporary
//! file) and PostgreSQL (its own schema in the database named by
//! `SWITCHBOARD_TEST_POSTGRES_URL`; without it the PostgreSQL variants skip, or fail under
//! `CI=true`).

/// Declares, for each listed test body `async fn name(db: &TestDb)` of the current module,
/// one `#[tokio::test]` per backend: `sqlite::name` and `postgres::name`.
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = crate::support::TestDb::sqlite().await;
                    super::$name(&db).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = crate::support::TestDb::postgres().await else { return };
                    super::$name(&db).await;
                }
            )*
        }
    };
}

mod clocks;
mod concurrency;
mod connect;
mod conversations;
mod dedup;
mod outbox;
mod parts;
mod power_loss;
mod state;
mod support;
mod trace;
