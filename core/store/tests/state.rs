//! Per-channel key/value state.

use crate::support::{TestDb, item};
use std::time::Duration;
use switchboard_store::{Direction, Enqueued};

backend_tests!(
    state_is_saved_loaded_and_replaced,
    states_are_listed_by_prefix_and_deleted,
    a_raised_number_never_goes_back,
    an_enqueue_raises_its_state_in_the_same_transaction,
    a_time_raised_to_now_is_the_store_clock_and_never_goes_back
);

/// The time `raise_state_to_now` records is the one claims are stamped with (the database's
/// clock on PostgreSQL, whatever the host's says), and it only moves forward.
async fn a_time_raised_to_now_is_the_store_clock_and_never_goes_back(db: &TestDb) {
    let store = &db.store;
    store
        .enqueue(
            switchboard_store::Direction::ToLivePerson,
            &[crate::support::item("c", 1)],
            None,
        )
        .await
        .unwrap();
    let before = store
        .claim(
            switchboard_store::Direction::ToLivePerson,
            "w",
            1,
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap()[0]
        .claimed_at_ms;
    assert!(store.raise_state_to_now("health", "failed").await.unwrap());
    let recorded: i64 = store
        .load_state("health", "failed")
        .await
        .unwrap()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        recorded >= before,
        "{recorded} is before the claim at {before}"
    );
    assert!(
        recorded < before + 60_000,
        "{recorded} is not now ({before})"
    );
    // A later time recorded by another instance is kept.
    store
        .raise_state("health", "failed", recorded + 3_600_000)
        .await
        .unwrap();
    assert!(!store.raise_state_to_now("health", "failed").await.unwrap());
}

async fn a_raised_number_never_goes_back(db: &TestDb) {
    let store = &db.store;
    assert!(store.raise_state("lp-next", "c:d", 3).await.unwrap());
    assert!(store.raise_state("lp-next", "c:d", 12).await.unwrap());
    // Compared as numbers, not as text ("9" > "12").
    assert!(!store.raise_state("lp-next", "c:d", 9).await.unwrap());
    assert!(!store.raise_state("lp-next", "c:d", 12).await.unwrap());
    assert_eq!(
        store.load_state("lp-next", "c:d").await.unwrap().as_deref(),
        Some("12")
    );
    // Two processes racing: the greatest wins, whatever the order.
    let other = db.reopen().await;
    let (a, b) = tokio::join!(
        store.raise_state("lp-next", "c:d", 40),
        other.raise_state("lp-next", "c:d", 20)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(
        store.load_state("lp-next", "c:d").await.unwrap().as_deref(),
        Some("40")
    );
    other.close().await;
}

async fn state_is_saved_loaded_and_replaced(db: &TestDb) {
    let store = &db.store;
    assert_eq!(
        store.load_state("telegram:main", "offset").await.unwrap(),
        None
    );
    store
        .save_state("telegram:main", "offset", "100")
        .await
        .unwrap();
    store
        .save_state("telegram:other", "offset", "7")
        .await
        .unwrap();
    assert_eq!(
        store
            .load_state("telegram:main", "offset")
            .await
            .unwrap()
            .as_deref(),
        Some("100")
    );

    store
        .save_state("telegram:main", "offset", "101")
        .await
        .unwrap();
    assert_eq!(
        store
            .load_state("telegram:main", "offset")
            .await
            .unwrap()
            .as_deref(),
        Some("101")
    );
    // Scopes are separate.
    assert_eq!(
        store
            .load_state("telegram:other", "offset")
            .await
            .unwrap()
            .as_deref(),
        Some("7")
    );
    assert_eq!(
        store.load_state("telegram:main", "other").await.unwrap(),
        None
    );
}

async fn states_are_listed_by_prefix_and_deleted(db: &TestDb) {
    let store = &db.store;
    for (key, value) in [
        ("c1:d1:2", "b"),
        ("c1:d1:1", "a"),
        ("c1:d2:1", "x"),
        ("c10:d1:1", "y"),
    ] {
        store.save_state("park", key, value).await.unwrap();
    }
    store.save_state("other", "c1:d1:3", "z").await.unwrap();
    let listed = store.states_with_prefix("park", "c1:d1:").await.unwrap();
    assert_eq!(
        listed,
        vec![
            ("c1:d1:1".to_owned(), "a".to_owned()),
            ("c1:d1:2".to_owned(), "b".to_owned())
        ]
    );
    // Characters LIKE would treat specially are plain here.
    assert!(
        store
            .states_with_prefix("park", "c1%")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.states_with_prefix("park", "").await.unwrap().len(), 4);
    assert!(store.delete_state("park", "c1:d1:1").await.unwrap());
    assert!(!store.delete_state("park", "c1:d1:1").await.unwrap());
    assert_eq!(
        store.states_with_prefix("park", "c1:d1:").await.unwrap(),
        vec![("c1:d1:2".to_owned(), "b".to_owned())]
    );
}

/// An event stored with the progress it makes (a dialog's next expected sequence): the state
/// is raised with the items, also when they are a duplicate, and never lowered.
async fn an_enqueue_raises_its_state_in_the_same_transaction(db: &TestDb) {
    let store = &db.store;
    let dedup = Some(("lp:conv-1:0", Duration::from_secs(60)));
    let enqueue = |n: i64, dedup, next: i64| async move {
        store
            .enqueue_raising(
                Direction::ToChannel,
                &[item("c", n)],
                dedup,
                Some(("lp-next", "conv-1:main", next)),
            )
            .await
            .unwrap()
    };
    let next = || async { store.load_state("lp-next", "conv-1:main").await.unwrap() };
    let first = enqueue(0, dedup, 1).await;
    assert!(matches!(first, Enqueued::Stored(ref ids) if ids.len() == 1));
    assert_eq!(next().await.as_deref(), Some("1"));
    // LivePerson's retry of the same event: nothing stored, the state still raised.
    let again = enqueue(0, dedup, 5).await;
    assert!(matches!(again, Enqueued::Duplicate));
    assert_eq!(next().await.as_deref(), Some("5"));
    // Never lowered.
    enqueue(1, None, 2).await;
    assert_eq!(next().await.as_deref(), Some("5"));
    assert_eq!(store.pending(Direction::ToChannel).await.unwrap(), 2);
}
