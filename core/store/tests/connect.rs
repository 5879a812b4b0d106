//! Opening stores: URLs, errors, backends.

use switchboard_store::{Backend, Direction, Store, StoreError};

use crate::support::{TestDb, item};

#[tokio::test]
async fn in_memory_sqlite_works() {
    let store = Store::connect("sqlite::memory:").await.unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    crate::support::enqueue(&store, Direction::ToChannel, &[item("a", 0)]).await;
    // Clones share the one connection, hence the one database.
    assert_eq!(
        store.clone().pending(Direction::ToChannel).await.unwrap(),
        1
    );
}

#[tokio::test]
async fn ping_answers_while_open_and_fails_once_closed() {
    let sqlite = TestDb::sqlite().await;
    let postgres = TestDb::postgres().await;
    for db in [Some(&sqlite), postgres.as_ref()].into_iter().flatten() {
        db.store.ping().await.unwrap();
        let other = db.reopen().await;
        other.close().await;
        assert!(other.ping().await.is_err(), "a closed store is not ready");
        db.store.ping().await.unwrap();
    }
}

#[tokio::test]
async fn backends_are_reported() {
    let db = TestDb::sqlite().await;
    assert_eq!(db.store.backend(), Backend::Sqlite);
    if let Some(db) = TestDb::postgres().await {
        assert_eq!(db.store.backend(), Backend::Postgres);
    }
}

#[tokio::test]
async fn unsupported_url_is_refused_without_its_password() {
    let err = Store::connect("mysql://root:hunter2@db/app")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::UnsupportedUrl { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("mysql://root:***@db/app"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
}

#[tokio::test]
async fn connection_errors_never_show_the_password() {
    // Nothing listens on port 1.
    let err = Store::connect("postgres://bob:hunter2@127.0.0.1:1/app")
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    let mut chain = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        chain.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    assert!(!chain.contains("hunter2"), "{chain}");
    assert!(
        err.to_string()
            .contains("postgres://bob:***@127.0.0.1:1/app"),
        "{err}"
    );
}

/// PostgreSQL commits must be durable before Switchboard answers an event's sender: a session
/// that commits asynchronously (here turned off through the URL, as a pool's or role's setting
/// could) is refused at connect, with the reason.
#[tokio::test]
async fn postgres_that_commits_asynchronously_is_refused() {
    let Some(admin) = crate::support::postgres_url() else {
        return;
    };
    let separator = if admin.contains('?') { '&' } else { '?' };
    let url = format!("{admin}{separator}options=-c%20synchronous_commit%3Doff");
    match Store::connect(&url).await {
        Err(StoreError::AsynchronousCommit { .. }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// `store.sync` means nothing to PostgreSQL: giving it is an error, never silence.
#[tokio::test]
async fn a_sync_mode_for_postgres_is_an_error() {
    let Some(admin) = crate::support::postgres_url() else {
        return;
    };
    let options = switchboard_store::StoreOptions::default()
        .with_sync(Some(switchboard_store::SyncMode::Normal));
    match Store::connect_with(&admin, options).await {
        Err(StoreError::SyncOnPostgres) => {}
        other => panic!("expected an error, got {other:?}"),
    }
}
