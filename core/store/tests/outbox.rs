//! Outbox behaviour: order, leases, retries, dead letters.

use std::time::Duration;

use switchboard_store::{Direction, Enqueued};

use crate::support::{LONG, TestDb, enqueue, item, n};

backend_tests!(
    enqueue_claim_complete_in_order,
    directions_are_separate_outboxes,
    head_of_line_blocks_only_its_consumer,
    free_heads_behind_long_queues_are_claimed_oldest_first,
    a_consumers_next_item_is_claimed_directly,
    expired_lease_can_be_reclaimed,
    lost_lease_cannot_complete_or_change,
    a_renewed_lease_is_not_taken_over,
    retry_later_delays_and_counts_attempts,
    update_payload_is_kept,
    dead_letter_frees_the_queue_and_can_be_retried,
    retry_dead_letter_of_unknown_id_is_false,
    data_survives_reopening,
    the_trace_context_travels_with_the_item,
);

/// After an outage a few consumers' long queues fill the oldest rows of the outbox (the
/// PostgreSQL claim searches a window of them first): the free heads behind them are still
/// claimed, in the order they came, and never an item that is not its consumer's head.
async fn free_heads_behind_long_queues_are_claimed_oldest_first(db: &TestDb) {
    let store = &db.store;
    let dir = Direction::ToLivePerson;
    let long: Vec<_> = (0..1500)
        .map(|n| item(&format!("long{}", n % 3), n))
        .collect();
    for chunk in long.chunks(500) {
        enqueue(store, dir, chunk).await;
    }
    let busy = store.claim(dir, "busy", 3, LONG).await.unwrap();
    assert_eq!(busy.len(), 3, "the long queues' heads are in flight");
    let behind = enqueue(
        store,
        dir,
        &[item("late1", 0), item("late2", 0), item("late1", 1)],
    )
    .await;
    let claimed = store.claim(dir, "w", 10, LONG).await.unwrap();
    let ids: Vec<i64> = claimed.iter().map(|i| i.id).collect();
    assert_eq!(
        ids,
        vec![behind[0], behind[1]],
        "the two free heads, oldest first"
    );
    assert!(store.complete(behind[0], "w").await.unwrap());
    let next = store.claim(dir, "w", 10, LONG).await.unwrap();
    assert_eq!(
        next.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![behind[2]]
    );
}

async fn enqueue_claim_complete_in_order(db: &TestDb) {
    let store = &db.store;
    let ids = enqueue(
        store,
        Direction::ToLivePerson,
        &[item("a", 0), item("b", 0)],
    )
    .await;
    let more = enqueue(store, Direction::ToLivePerson, &[item("c", 0)]).await;
    assert_eq!(ids.len(), 2);
    assert!(
        ids[0] < ids[1] && ids[1] < more[0],
        "ids increase: {ids:?} {more:?}"
    );
    assert_eq!(store.pending(Direction::ToLivePerson).await.unwrap(), 3);

    let claimed = store
        .claim(Direction::ToLivePerson, "w1", 10, LONG)
        .await
        .unwrap();
    let keys: Vec<_> = claimed.iter().map(|i| i.consumer_key.as_str()).collect();
    assert_eq!(keys, ["a", "b", "c"]);
    assert_eq!(claimed[0].id, ids[0]);
    assert_eq!(claimed[0].direction, Direction::ToLivePerson);
    assert_eq!(claimed[0].payload, serde_json::json!({ "n": 0 }));
    assert_eq!(claimed[0].attempts, 0);
    assert_eq!(claimed[0].last_error, None);
    assert!(claimed[0].created_at_ms > 1_600_000_000_000);

    // Everything is leased: nothing more to claim.
    assert!(
        store
            .claim(Direction::ToLivePerson, "w2", 10, LONG)
            .await
            .unwrap()
            .is_empty()
    );

    for item in &claimed {
        assert!(store.complete(item.id, "w1").await.unwrap());
    }
    assert_eq!(store.pending(Direction::ToLivePerson).await.unwrap(), 0);
    // Completing twice finds nothing.
    assert!(!store.complete(claimed[0].id, "w1").await.unwrap());
}

async fn directions_are_separate_outboxes(db: &TestDb) {
    let store = &db.store;
    enqueue(store, Direction::ToLivePerson, &[item("a", 1)]).await;
    enqueue(store, Direction::ToChannel, &[item("a", 2)]).await;
    assert_eq!(store.pending(Direction::ToLivePerson).await.unwrap(), 1);
    assert_eq!(store.pending(Direction::ToChannel).await.unwrap(), 1);

    // The same consumer key in the other direction is an independent queue.
    let to_lp = store
        .claim(Direction::ToLivePerson, "w", 10, LONG)
        .await
        .unwrap();
    let to_channel = store
        .claim(Direction::ToChannel, "w", 10, LONG)
        .await
        .unwrap();
    assert_eq!(to_lp.len(), 1);
    assert_eq!(n(&to_lp[0]), 1);
    assert_eq!(to_channel.len(), 1);
    assert_eq!(n(&to_channel[0]), 2);
    assert_eq!(to_channel[0].direction, Direction::ToChannel);
}

async fn head_of_line_blocks_only_its_consumer(db: &TestDb) {
    let store = &db.store;
    let dir = Direction::ToChannel;
    enqueue(
        store,
        dir,
        &[item("a", 0), item("a", 1), item("b", 0), item("a", 2)],
    )
    .await;
    enqueue(store, dir, &[item("b", 1), item("c", 0)]).await;

    // One claim hands out the head of each consumer, never two items of one consumer.
    let first = store.claim(dir, "w1", 10, LONG).await.unwrap();
    let heads: Vec<_> = first
        .iter()
        .map(|i| (i.consumer_key.as_str(), n(i)))
        .collect();
    assert_eq!(heads, [("a", 0), ("b", 0), ("c", 0)]);

    // While the heads are leased, no other worker gets the consumers' next items.
    assert!(store.claim(dir, "w2", 10, LONG).await.unwrap().is_empty());

    // Completing a's head makes a's next item (and only it) claimable.
    assert!(store.complete(first[0].id, "w1").await.unwrap());
    let next = store.claim(dir, "w2", 10, LONG).await.unwrap();
    let heads: Vec<_> = next
        .iter()
        .map(|i| (i.consumer_key.as_str(), n(i)))
        .collect();
    assert_eq!(heads, [("a", 1)]);

    // A limit smaller than the number of consumers is respected, oldest first.
    assert!(store.complete(next[0].id, "w2").await.unwrap());
    assert!(store.complete(first[1].id, "w1").await.unwrap());
    let limited = store.claim(dir, "w3", 1, LONG).await.unwrap();
    assert_eq!(limited.len(), 1);
    assert_eq!((limited[0].consumer_key.as_str(), n(&limited[0])), ("a", 2));
    assert!(store.claim(dir, "w3", 0, LONG).await.unwrap().is_empty());
}

async fn expired_lease_can_be_reclaimed(db: &TestDb) {
    let store = &db.store;
    let dir = Direction::ToLivePerson;
    let ids = enqueue(store, dir, &[item("a", 0), item("a", 1)]).await;

    let lease = Duration::from_millis(500);
    let claimed = store.claim(dir, "dead-worker", 10, lease).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(store.claim(dir, "w2", 10, lease).await.unwrap().is_empty());

    tokio::time::sleep(Duration::from_millis(700)).await;
    // The lease expired: the same head item goes to the next worker, the second still waits.
    let reclaimed = store.claim(dir, "w2", 10, LONG).await.unwrap();
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(reclaimed[0].id, ids[0]);
    assert_eq!(reclaimed[0].attempts, 0, "claiming does not count attempts");
}

async fn lost_lease_cannot_complete_or_change(db: &TestDb) {
    let store = &db.store;
    let dir = Direction::ToLivePerson;
    let ids = enqueue(store, dir, &[item("a", 0)]).await;
    let id = ids[0];

    // Not leased at all: nobody can complete it.
    assert!(!store.complete(id, "w1").await.unwrap());

    store
        .claim(dir, "w1", 1, Duration::from_millis(300))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;
    let taken = store.claim(dir, "w2", 1, LONG).await.unwrap();
    assert_eq!(taken[0].id, id);

    // w1's lease was taken over: every operation of w1 is refused and changes nothing.
    assert!(!store.complete(id, "w1").await.unwrap());
    assert!(
        !store
            .retry_later(id, "w1", Duration::ZERO, "x")
            .await
            .unwrap()
    );
    assert!(
        !store
            .update_payload(id, "w1", &serde_json::json!({"n": 9}))
            .await
            .unwrap()
    );
    assert!(!store.dead_letter(id, "w1", "x").await.unwrap());
    assert_eq!(store.pending(dir).await.unwrap(), 1);
    assert_eq!(store.dead_letter_count().await.unwrap(), 0);

    assert!(store.complete(id, "w2").await.unwrap());
    assert_eq!(store.pending(dir).await.unwrap(), 0);
}

async fn a_renewed_lease_is_not_taken_over(db: &TestDb) {
    let store = &db.store;
    let dir = Direction::ToChannel;
    let ids = enqueue(store, dir, &[item("a", 0)]).await;
    let lease = Duration::from_secs(1);
    assert_eq!(store.claim(dir, "w1", 1, lease).await.unwrap().len(), 1);
    // w1 keeps working on it well past the first lease, renewing as it goes.
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(store.renew_lease(ids[0], "w1", lease).await.unwrap());
    }
    assert!(
        store.claim(dir, "w2", 1, LONG).await.unwrap().is_empty(),
        "a renewed lease is still w1's"
    );
    // w1 stops renewing (it died): the lease runs out and w2 takes the item over.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(store.claim(dir, "w2", 1, LONG).await.unwrap()[0].id, ids[0]);
    assert!(!store.renew_lease(ids[0], "w1", lease).await.unwrap());
    assert!(store.complete(ids[0], "w2").await.unwrap());
}

async fn retry_later_delays_and_counts_attempts(db: &TestDb) {
    let store = &db.store;
    let dir = Direction::ToChannel;
    let ids = enqueue(store, dir, &[item("a", 0), item("a", 1), item("b", 0)]).await;

    let claimed = store.claim(dir, "w", 10, LONG).await.unwrap();
    assert_eq!(claimed.len(), 2);
    assert!(
        store
            .retry_later(ids[0], "w", Duration::from_millis(600), "503 from channel")
            .await
            .unwrap()
    );
    assert!(store.complete(ids[2], "w").await.unwrap());

    // The failed head is not available yet, and a's second item waits behind it.
    assert!(store.claim(dir, "w", 10, LONG).await.unwrap().is_empty());

    tokio::time::sleep(Duration::from_millis(800)).await;
    let again = store.claim(dir, "w", 10, LONG).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, ids[0]);
    assert_eq!(again[0].attempts, 1);
    assert_eq!(again[0].last_error.as_deref(), Some("503 from channel"));

    // A second failure counts again; retry with no delay is claimable at once.
    assert!(
        store
            .retry_later(ids[0], "w", Duration::ZERO, "timeout")
            .await
            .unwrap()
    );
    let third = store.claim(dir, "w", 10, LONG).await.unwrap();
    assert_eq!(third[0].id, ids[0]);
    assert_eq!(third[0].attempts, 2);
    assert_eq!(third[0].last_error.as_deref(), Some("timeout"));
}

async fn update_payload_is_kept(db: &TestDb) {
    let store = &db.store;
    let dir = Direction::ToLivePerson;
    let ids = enqueue(store, dir, &[item("a", 0)]).await;
    store.claim(dir, "w", 1, LONG).await.unwrap();

    let progress = serde_json::json!({ "n": 0, "conversation_id": "conv-1" });
    assert!(store.update_payload(ids[0], "w", &progress).await.unwrap());
    assert!(
        store
            .retry_later(ids[0], "w", Duration::ZERO, "later")
            .await
            .unwrap()
    );

    let claimed = store.claim(dir, "w", 1, LONG).await.unwrap();
    assert_eq!(claimed[0].payload, progress);
}

async fn dead_letter_frees_the_queue_and_can_be_retried(db: &TestDb) {
    let store = &db.store;
    let dir = Direction::ToChannel;
    let ids = enqueue(store, dir, &[item("a", 0), item("a", 1)]).await;

    store.claim(dir, "w", 1, LONG).await.unwrap();
    assert!(
        store
            .retry_later(ids[0], "w", Duration::ZERO, "flaky")
            .await
            .unwrap()
    );
    store.claim(dir, "w", 1, LONG).await.unwrap();
    assert!(
        store
            .dead_letter(ids[0], "w", "400 invalid recipient")
            .await
            .unwrap()
    );

    // The consumer's next item proceeds.
    let next = store.claim(dir, "w", 10, LONG).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].id, ids[1]);
    assert_eq!(store.pending(dir).await.unwrap(), 1);

    assert_eq!(store.dead_letter_count().await.unwrap(), 1);
    let letters = store.dead_letters(10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.direction, dir);
    assert_eq!(letter.consumer_key, "a");
    assert_eq!(letter.payload, serde_json::json!({ "n": 0 }));
    assert_eq!(letter.attempts, 1);
    assert_eq!(letter.reason, "400 invalid recipient");
    assert!(letter.failed_at_ms > 1_600_000_000_000);

    // Requeued at the end of a's queue, with a new id.
    assert!(store.retry_dead_letter(letter.id).await.unwrap());
    assert_eq!(store.dead_letter_count().await.unwrap(), 0);
    assert!(store.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(store.pending(dir).await.unwrap(), 2);
    assert!(
        !store.retry_dead_letter(letter.id).await.unwrap(),
        "already requeued"
    );

    assert!(
        store.claim(dir, "w2", 10, LONG).await.unwrap().is_empty(),
        "a's item 1 is leased"
    );
    assert!(store.complete(ids[1], "w").await.unwrap());
    let requeued = store.claim(dir, "w2", 10, LONG).await.unwrap();
    assert_eq!(requeued.len(), 1);
    assert!(requeued[0].id > ids[1]);
    assert_eq!(requeued[0].consumer_key, "a");
    assert_eq!(requeued[0].payload, serde_json::json!({ "n": 0 }));
}

async fn retry_dead_letter_of_unknown_id_is_false(db: &TestDb) {
    assert!(!db.store.retry_dead_letter(424_242).await.unwrap());
    assert!(db.store.dead_letters(10).await.unwrap().is_empty());
}

async fn data_survives_reopening(db: &TestDb) {
    let store = &db.store;
    let ids = enqueue(
        store,
        Direction::ToLivePerson,
        &[item("a", 0), item("a", 1)],
    )
    .await;
    assert!(store.remember("evt-1", LONG).await.unwrap());
    store.save_state("telegram", "offset", "42").await.unwrap();
    store.open_conversation("a", "conv-1", "").await.unwrap();
    store
        .claim(Direction::ToLivePerson, "w", 1, LONG)
        .await
        .unwrap();
    assert!(store.dead_letter(ids[0], "w", "gone").await.unwrap());
    store.close().await;

    let reopened = db.reopen().await;
    assert_eq!(reopened.pending(Direction::ToLivePerson).await.unwrap(), 1);
    assert_eq!(reopened.dead_letter_count().await.unwrap(), 1);
    assert!(!reopened.remember("evt-1", LONG).await.unwrap());
    assert_eq!(
        reopened
            .load_state("telegram", "offset")
            .await
            .unwrap()
            .as_deref(),
        Some("42")
    );
    let consumer = reopened
        .consumer("a")
        .await
        .unwrap()
        .expect("consumer kept");
    assert_eq!(consumer.conversation_id.as_deref(), Some("conv-1"));
    let claimed = reopened
        .claim(Direction::ToLivePerson, "w", 10, LONG)
        .await
        .unwrap();
    assert_eq!(claimed[0].id, ids[1]);
    // Ids keep increasing after a restart.
    let later = enqueue(&reopened, Direction::ToLivePerson, &[item("b", 0)]).await;
    assert!(later[0] > ids[1]);
    match reopened
        .enqueue(Direction::ToLivePerson, &[], Some(("evt-1", LONG)))
        .await
        .unwrap()
    {
        Enqueued::Duplicate => {}
        other => panic!("expected a duplicate, got {other:?}"),
    }
}

async fn a_consumers_next_item_is_claimed_directly(db: &TestDb) {
    let store = &db.store;
    let dir = Direction::ToLivePerson;
    let ids = enqueue(store, dir, &[item("a", 1), item("a", 2), item("b", 1)]).await;
    let first = store
        .claim_next_of(dir, "w1", "a", LONG)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((first.id, n(&first)), (ids[0], 1));
    // Its head is leased: nothing more of `a`, for this worker or another.
    assert!(
        store
            .claim_next_of(dir, "w1", "a", LONG)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .claim_next_of(dir, "w2", "a", LONG)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.complete(first.id, "w1").await.unwrap());
    let second = store
        .claim_next_of(dir, "w1", "a", LONG)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.id, n(&second)), (ids[1], 2));
    // A head waiting for its retry is not claimable yet.
    assert!(
        store
            .retry_later(second.id, "w1", LONG, "later")
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_next_of(dir, "w1", "a", LONG)
            .await
            .unwrap()
            .is_none()
    );
    // Other consumers and directions are untouched.
    assert!(
        store
            .claim_next_of(Direction::ToChannel, "w1", "b", LONG)
            .await
            .unwrap()
            .is_none()
    );
    let b = store
        .claim_next_of(dir, "w1", "b", LONG)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(b.id, ids[2]);
    assert!(
        store
            .claim_next_of(dir, "w1", "nobody", LONG)
            .await
            .unwrap()
            .is_none()
    );
}

/// Issue #25: the W3C trace context an item is stored with comes back with every claim of it
/// (on any instance), through a retry, and stays absent for an item stored without one.
async fn the_trace_context_travels_with_the_item(db: &TestDb) {
    let store = &db.store;
    const CONTEXT: &str =
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 congo=t61rcWkgMzE";
    let mut traced = item("a", 1);
    traced.trace_context = Some(CONTEXT.to_owned());
    let mut next = item("a", 2);
    next.trace_context = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    // Several enqueues at once go into one group commit on SQLite.
    let (a_items, b_items) = ([traced, next], [item("b", 1)]);
    let (first, second) = tokio::join!(
        enqueue(store, Direction::ToLivePerson, &a_items),
        enqueue(store, Direction::ToLivePerson, &b_items),
    );
    assert_eq!((first.len(), second.len()), (2, 1));
    let claimed = store
        .claim(Direction::ToLivePerson, "w1", 10, LONG)
        .await
        .unwrap();
    let of = |key: &str| claimed.iter().find(|i| i.consumer_key == key).unwrap();
    assert_eq!(of("a").trace_context.as_deref(), Some(CONTEXT));
    assert_eq!(of("b").trace_context, None);
    assert!(
        store
            .retry_later(of("a").id, "w1", Duration::ZERO, "503")
            .await
            .unwrap()
    );
    let again = store
        .claim_next_of(Direction::ToLivePerson, "w2", "a", LONG)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.trace_context.as_deref(), Some(CONTEXT));
    assert!(store.complete(again.id, "w2").await.unwrap());
    let last = store
        .claim_next_of(Direction::ToLivePerson, "w2", "a", LONG)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n(&last), 2);
    assert_eq!(
        last.trace_context.as_deref(),
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    );
}
