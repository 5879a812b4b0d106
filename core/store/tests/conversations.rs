//! The conversation map and the conversation clock.

use switchboard_store::{ConsumerRecord, ConversationState, Identity};

use crate::support::TestDb;

backend_tests!(
    conversation_lifecycle,
    identity_is_kept_across_conversations,
    conversation_clock_only_moves_forward
);

fn identity(n: u32) -> Identity {
    Identity {
        ext_consumer_id: format!("ext-{n}"),
        lp_consumer_id: format!("lp-{n}"),
        jws: format!("jws-{n}"),
    }
}

async fn conversation_lifecycle(db: &TestDb) {
    let store = &db.store;
    assert_eq!(store.consumer("sms:+1555").await.unwrap(), None);
    assert_eq!(store.conversation_count().await.unwrap(), 0);

    store
        .save_identity("sms:+1555", &identity(1))
        .await
        .unwrap();
    assert_eq!(
        store.consumer("sms:+1555").await.unwrap(),
        Some(ConsumerRecord {
            key: "sms:+1555".into(),
            identity: Some(identity(1)),
            conversation_id: None,
            dialog_id: None,
            state: ConversationState::None,
        })
    );

    // Dialog defaults to the conversation id.
    store
        .open_conversation("sms:+1555", "conv-1", "")
        .await
        .unwrap();
    let record = store.consumer("sms:+1555").await.unwrap().unwrap();
    assert_eq!(
        record.identity,
        Some(identity(1)),
        "opening keeps the identity"
    );
    assert_eq!(record.conversation_id.as_deref(), Some("conv-1"));
    assert_eq!(record.dialog_id.as_deref(), Some("conv-1"));
    assert_eq!(record.state, ConversationState::Open);
    assert_eq!(store.conversation_count().await.unwrap(), 1);

    assert_eq!(
        store.consumer_by_conversation("conv-1").await.unwrap(),
        Some(record.clone())
    );
    assert_eq!(store.consumer_by_lp_id("lp-1").await.unwrap(), Some(record));
    assert_eq!(
        store.consumer_by_conversation("conv-x").await.unwrap(),
        None
    );
    assert_eq!(store.consumer_by_lp_id("lp-x").await.unwrap(), None);

    store.set_dialog("conv-1", "dialog-2").await.unwrap();
    let record = store
        .consumer_by_conversation("conv-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.dialog_id.as_deref(), Some("dialog-2"));
    store.set_dialog("conv-unknown", "dialog-9").await.unwrap();

    assert_eq!(
        store.close_conversation("conv-1").await.unwrap().as_deref(),
        Some("sms:+1555")
    );
    assert_eq!(
        store.close_conversation("conv-unknown").await.unwrap(),
        None
    );
    let record = store.consumer("sms:+1555").await.unwrap().unwrap();
    assert_eq!(record.state, ConversationState::Closed);
    assert_eq!(record.conversation_id.as_deref(), Some("conv-1"));
    assert_eq!(store.conversation_count().await.unwrap(), 0);

    // A new conversation replaces the closed one; closing the old id no longer touches it.
    store
        .open_conversation("sms:+1555", "conv-2", "dialog-a")
        .await
        .unwrap();
    let record = store.consumer("sms:+1555").await.unwrap().unwrap();
    assert_eq!(record.state, ConversationState::Open);
    assert_eq!(record.conversation_id.as_deref(), Some("conv-2"));
    assert_eq!(record.dialog_id.as_deref(), Some("dialog-a"));
    assert_eq!(store.close_conversation("conv-1").await.unwrap(), None);
    assert_eq!(
        store.consumer("sms:+1555").await.unwrap().unwrap().state,
        ConversationState::Open
    );
    assert_eq!(
        store.consumer_by_conversation("conv-1").await.unwrap(),
        None
    );
}

async fn identity_is_kept_across_conversations(db: &TestDb) {
    let store = &db.store;
    // A conversation can be recorded before the identity, and saving the identity keeps it.
    store
        .open_conversation("slack:U1", "conv-1", "d-1")
        .await
        .unwrap();
    let record = store.consumer("slack:U1").await.unwrap().unwrap();
    assert_eq!(record.identity, None);
    store.save_identity("slack:U1", &identity(1)).await.unwrap();
    store.save_identity("slack:U1", &identity(2)).await.unwrap();
    let record = store.consumer("slack:U1").await.unwrap().unwrap();
    assert_eq!(
        record.identity,
        Some(identity(2)),
        "the identity is replaced"
    );
    assert_eq!(record.conversation_id.as_deref(), Some("conv-1"));
    assert_eq!(record.dialog_id.as_deref(), Some("d-1"));
    assert_eq!(record.state, ConversationState::Open);
    assert_eq!(
        store.consumer_by_lp_id("lp-2").await.unwrap().unwrap().key,
        "slack:U1"
    );
    assert_eq!(store.consumer_by_lp_id("lp-1").await.unwrap(), None);

    // Consumers are independent.
    store.save_identity("slack:U2", &identity(3)).await.unwrap();
    store
        .open_conversation("slack:U2", "conv-3", "")
        .await
        .unwrap();
    assert_eq!(store.conversation_count().await.unwrap(), 2);
    assert_eq!(
        store
            .consumer_by_conversation("conv-3")
            .await
            .unwrap()
            .unwrap()
            .key,
        "slack:U2"
    );
    assert_eq!(
        store
            .consumer_by_conversation("conv-1")
            .await
            .unwrap()
            .unwrap()
            .key,
        "slack:U1"
    );
}

async fn conversation_clock_only_moves_forward(db: &TestDb) {
    let store = &db.store;
    assert!(
        store
            .advance_conversation_clock("conv-1", 1_000)
            .await
            .unwrap()
    );
    assert!(
        store
            .advance_conversation_clock("conv-1", 1_000)
            .await
            .unwrap(),
        "a repeat is handled again (its first handling may have been interrupted)"
    );
    assert!(
        !store
            .advance_conversation_clock("conv-1", 999)
            .await
            .unwrap(),
        "stale"
    );
    assert!(
        store
            .advance_conversation_clock("conv-1", 1_001)
            .await
            .unwrap()
    );
    assert!(
        !store
            .advance_conversation_clock("conv-1", 1_000)
            .await
            .unwrap(),
        "still stale"
    );
    // Conversations have separate clocks.
    assert!(store.advance_conversation_clock("conv-2", 5).await.unwrap());
}
