//! Per-channel key/value state.

use crate::support::TestDb;

backend_tests!(state_is_saved_loaded_and_replaced);

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
