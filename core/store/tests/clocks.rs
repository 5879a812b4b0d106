//! Whose clock leases and retries follow: instances whose host clocks disagree share one
//! PostgreSQL database without taking over each other's work or stalling it.

use std::time::Duration;

use switchboard_store::{Direction, StoreOptions};

use crate::support::{LONG, TestDb, enqueue, item};

backend_tests!(
    a_streak_counts_one_condition_in_a_row,
    a_postponed_item_keeps_its_attempts_and_counts_its_waits
);

/// Ten minutes: far more than any lease or delay of these tests.
const SKEW_MS: i64 = 10 * 60 * 1000;

mod postgres_only {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_host_whose_clock_runs_ahead_does_not_take_over_live_leases() {
        let Some(db) = TestDb::postgres().await else {
            return;
        };
        let ahead = db
            .reopen_with(StoreOptions::default().with_host_clock_offset_ms(SKEW_MS))
            .await;
        enqueue(&db.store, Direction::ToLivePerson, &[item("a", 1)]).await;
        let mine = db
            .store
            .claim(Direction::ToLivePerson, "w-on-time", 10, LONG)
            .await
            .unwrap();
        assert_eq!(mine.len(), 1);
        // By its own clock the lease ran out nine minutes ago; by the database's it has a
        // minute to go.
        let taken = ahead
            .claim(Direction::ToLivePerson, "w-ahead", 10, LONG)
            .await
            .unwrap();
        assert!(taken.is_empty(), "a live lease was taken over: {taken:?}");
        // Renewed by the host that is ahead, the lease still follows the database's clock:
        // the instance whose clock is right cannot take it either.
        let lease = mine[0].id;
        db.store
            .retry_later(lease, "w-on-time", Duration::ZERO, "try again")
            .await
            .unwrap();
        let again = ahead
            .claim(
                Direction::ToLivePerson,
                "w-ahead",
                10,
                Duration::from_secs(30),
            )
            .await
            .unwrap();
        assert_eq!(again.len(), 1, "a due retry is claimable at once");
        assert!(ahead.renew_lease(lease, "w-ahead", LONG).await.unwrap());
        let stolen = db
            .store
            .claim(Direction::ToLivePerson, "w-on-time", 10, LONG)
            .await
            .unwrap();
        assert!(
            stolen.is_empty(),
            "a renewed lease was taken over: {stolen:?}"
        );
        ahead.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn work_queued_or_retried_by_a_host_whose_clock_runs_ahead_is_claimable_at_once() {
        let Some(db) = TestDb::postgres().await else {
            return;
        };
        let ahead = db
            .reopen_with(StoreOptions::default().with_host_clock_offset_ms(SKEW_MS))
            .await;
        enqueue(&ahead, Direction::ToChannel, &[item("a", 1)]).await;
        let claimed = db
            .store
            .claim(Direction::ToChannel, "w-on-time", 10, LONG)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 1, "an item queued ahead of time waits");
        let item = &claimed[0];
        assert!(
            (item.claimed_at_ms - item.created_at_ms).abs() < 60_000,
            "created and claimed by one clock: {item:?}"
        );
        db.store
            .retry_later(item.id, "w-on-time", Duration::ZERO, "again")
            .await
            .unwrap();
        let claimed = ahead
            .claim(Direction::ToChannel, "w-ahead", 10, LONG)
            .await
            .unwrap();
        ahead
            .retry_later(claimed[0].id, "w-ahead", Duration::from_millis(1), "again")
            .await
            .unwrap();
        let mut after_retry = Vec::new();
        for _ in 0..200 {
            after_retry = db
                .store
                .claim(Direction::ToChannel, "w-on-time", 10, LONG)
                .await
                .unwrap();
            if !after_retry.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(
            after_retry.first().map(|i| i.attempts),
            Some(2),
            "a retry by a host ahead waits its delay only, not the clocks' difference"
        );
        ahead.close().await;
    }
}

async fn a_streak_counts_one_condition_in_a_row(db: &TestDb) {
    let store = &db.store;
    enqueue(store, Direction::ToLivePerson, &[item("a", 1)]).await;
    let kinds = [
        Some("conflict"),
        Some("conflict"),
        None,
        Some("conflict"),
        Some("echo"),
    ];
    let mut seen = Vec::new();
    for kind in kinds {
        let item = claim_one(store, "w").await;
        seen.push((item.streak_of("conflict"), item.streak_of("echo")));
        assert!(
            store
                .retry_for(item.id, "w", Duration::ZERO, "failed", kind)
                .await
                .unwrap()
        );
    }
    let item = claim_one(store, "w").await;
    seen.push((item.streak_of("conflict"), item.streak_of("echo")));
    assert_eq!(seen, [(0, 0), (1, 0), (2, 0), (0, 0), (1, 0), (0, 1)]);
    assert_eq!(item.attempts, 5, "every failure counts as an attempt");
}

/// A wait (for LivePerson's echo) is not a failure: `postpone` leaves the attempts alone,
/// keeps the reason as the last error and counts the waits in a row as a streak.
async fn a_postponed_item_keeps_its_attempts_and_counts_its_waits(db: &TestDb) {
    let store = &db.store;
    enqueue(store, Direction::ToLivePerson, &[item("a", 1)]).await;
    let first = claim_one(store, "w").await;
    assert!(
        store
            .retry_for(first.id, "w", Duration::ZERO, "timed out", None)
            .await
            .unwrap()
    );
    for waits in 0..3 {
        let item = claim_one(store, "w").await;
        assert_eq!((item.attempts, item.streak_of("echo")), (1, waits));
        assert!(
            store
                .postpone(item.id, "w", Duration::ZERO, "waiting for the echo", "echo")
                .await
                .unwrap()
        );
    }
    let item = claim_one(store, "w").await;
    assert_eq!((item.attempts, item.streak_of("echo")), (1, 3));
    assert_eq!(item.last_error.as_deref(), Some("waiting for the echo"));
    // Only the holder of the lease may postpone it.
    assert!(
        !store
            .postpone(item.id, "other", Duration::ZERO, "x", "echo")
            .await
            .unwrap()
    );
}

/// The one item of the to-LivePerson outbox, once it is claimable (a retry becomes due).
async fn claim_one(
    store: &switchboard_store::Store,
    worker: &str,
) -> switchboard_store::OutboxItem {
    for _ in 0..200 {
        let mut items = store
            .claim(Direction::ToLivePerson, worker, 1, LONG)
            .await
            .unwrap();
        if let Some(item) = items.pop() {
            return item;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing became claimable");
}
