//! Several workers (as several instances would) claiming from one outbox at once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use switchboard_store::{Direction, Store};

use crate::support::{LONG, TestDb, enqueue, item, n};

backend_tests!(concurrent_claims_never_overlap_and_keep_order);

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
