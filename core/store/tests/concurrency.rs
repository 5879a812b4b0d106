//! Several workers (as several instances would) claiming from one outbox at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use switchboard_store::{Direction, Enqueued, Store};

use crate::support::{LONG, TestDb, enqueue, item, n};

backend_tests!(
    concurrent_claims_never_overlap_and_keep_order,
    concurrent_enqueues_each_keep_their_meaning,
);

const CONSUMERS: i64 = 20;
const PER_CONSUMER: i64 = 10;
const WORKERS: usize = 4;

#[derive(Default)]
struct Seen {
    ids: HashSet<i64>,
    in_flight: HashSet<String>,
    order: HashMap<String, Vec<i64>>,
}

async fn concurrent_claims_never_overlap_and_keep_order(db: &TestDb) {
    let dir = Direction::ToLivePerson;
    // Interleaved, so consumers' items are spread over the whole id range.
    let items: Vec<_> = (0..PER_CONSUMER)
        .flat_map(|n| (0..CONSUMERS).map(move |c| item(&format!("c{c}"), n)))
        .collect();
    enqueue(&db.store, dir, &items).await;

    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        // Half the workers use their own connection pool, like separate processes.
        let store = if w % 2 == 0 {
            db.store.clone()
        } else {
            db.reopen().await
        };
        let seen = Arc::clone(&seen);
        tasks.push(tokio::spawn(work(store, format!("worker-{w}"), seen)));
    }
    for task in tasks {
        task.await.expect("worker task");
    }

    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.ids.len(),
        items.len(),
        "every item delivered exactly once"
    );
    assert_eq!(seen.order.len(), CONSUMERS as usize);
    for (consumer, order) in &seen.order {
        let expected: Vec<i64> = (0..PER_CONSUMER).collect();
        assert_eq!(order, &expected, "order of {consumer}");
    }
}

async fn work(store: Store, worker: String, seen: Arc<Mutex<Seen>>) {
    let dir = Direction::ToLivePerson;
    let mut idle_rounds = 0;
    loop {
        let claimed = store.claim(dir, &worker, 5, LONG).await.expect("claim");
        if claimed.is_empty() {
            if store.pending(dir).await.expect("pending") == 0 {
                return;
            }
            idle_rounds += 1;
            assert!(idle_rounds < 10_000, "{worker} starved");
            tokio::task::yield_now().await;
            continue;
        }
        {
            let mut seen = seen.lock().unwrap();
            for item in &claimed {
                assert!(seen.ids.insert(item.id), "item {} claimed twice", item.id);
                assert!(
                    seen.in_flight.insert(item.consumer_key.clone()),
                    "two items of {} in flight at once",
                    item.consumer_key
                );
                seen.order
                    .entry(item.consumer_key.clone())
                    .or_default()
                    .push(n(item));
            }
        }
        for item in claimed {
            // Leave the consumer before completing: its next item is claimable only after.
            seen.lock().unwrap().in_flight.remove(&item.consumer_key);
            assert!(
                store.complete(item.id, &worker).await.expect("complete"),
                "lease lost"
            );
        }
    }
}

/// Many enqueues at once (on SQLite they share transactions): each call's items are stored
/// together and in order, a dedup key stores once however many calls race with it, and a
/// call that fails alone (nothing here) would not fail the others.
async fn concurrent_enqueues_each_keep_their_meaning(db: &TestDb) {
    let dir = Direction::ToChannel;
    let mut tasks = Vec::new();
    for c in 0..50 {
        let store = db.store.clone();
        tasks.push(tokio::spawn(async move {
            let consumer = format!("c{c}");
            let items = [item(&consumer, 0), item(&consumer, 1), item(&consumer, 2)];
            // Every fifth call races with the others on one dedup key.
            let dedup = (c % 5 == 0).then_some(("shared-key", LONG));
            (c, store.enqueue(dir, &items, dedup).await.expect("enqueue"))
        }));
    }
    let mut stored_with_key = 0;
    let mut all_ids = HashSet::new();
    for task in tasks {
        let (c, outcome) = task.await.expect("task");
        match outcome {
            Enqueued::Stored(ids) => {
                assert_eq!(ids.len(), 3);
                assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order: {ids:?}");
                assert!(ids.iter().all(|id| all_ids.insert(*id)));
                if c % 5 == 0 {
                    stored_with_key += 1;
                }
            }
            Enqueued::Duplicate => assert_eq!(c % 5, 0, "only keyed calls can be duplicates"),
        }
    }
    assert_eq!(stored_with_key, 1, "the shared key stored once");
    assert_eq!(db.store.pending(dir).await.unwrap(), 3 * (40 + 1));
    let claimed = db.store.claim(dir, "w", 100, LONG).await.unwrap();
    assert_eq!(claimed.len(), 41, "one head per consumer");
    assert!(claimed.iter().all(|i| n(i) == 0));
}

/// An instance that stops in the middle of a transaction (a paused VM, SIGSTOP) holds its row
/// locks for as long as it is stopped, and every other instance's claim skips the row it was
/// updating: the lease hands its work to nobody. The store's sessions carry an idle-in-
/// transaction timeout, so PostgreSQL ends the stalled session and another instance claims
/// the item. (The stalled instance is played by a connection with the store's own session
/// settings that updates the item's row and then waits.)
#[tokio::test]
async fn a_transaction_left_open_by_a_stalled_instance_does_not_hold_its_item() {
    use sqlx::{ConnectOptions, Connection};
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let dir = Direction::ToLivePerson;
    let ids = enqueue(&db.store, dir, &[item("c1", 0)]).await;
    let options = switchboard_store::postgres_options(db.url()).expect("session options");
    let mut stalled = options
        .connect()
        .await
        .expect("connect the stalled session");
    let mut tx = stalled.begin().await.expect("begin");
    sqlx::query("UPDATE outbox SET attempts = attempts WHERE id = $1")
        .bind(ids[0])
        .execute(&mut *tx)
        .await
        .expect("lock the item's row");
    // Without the timeout the row stays locked as long as the session waits: give up only
    // well after the timeout would have ended it.
    let give_up = tokio::time::Instant::now() + switchboard_store::STALLED_TRANSACTION_TIMEOUT * 12;
    let claimed = loop {
        let got = db
            .store
            .claim(dir, "survivor", 1, LONG)
            .await
            .expect("claim");
        if !got.is_empty() {
            break got;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "the item stayed locked by the stalled session"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(claimed[0].id, ids[0]);
    // The stalled instance wakes to a closed session: its write was never committed.
    let woke = sqlx::query("SELECT 1").execute(&mut *tx).await;
    assert!(woke.is_err(), "the stalled session should have been ended");
    drop(tx);
    drop(stalled);
}
