//! Per-channel key/value state.

use crate::support::TestDb;

backend_tests!(
    state_is_saved_loaded_and_replaced,
    states_are_listed_by_prefix_and_deleted,
    a_raised_number_never_goes_back
);

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
