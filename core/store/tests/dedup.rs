//! Dedup keys, inside and outside `enqueue`.

use std::time::Duration;

use switchboard_store::{Direction, Enqueued};

use crate::support::{LONG, TestDb, item};

backend_tests!(
    enqueue_with_dedup_stores_once,
    expired_keys_can_be_reused_and_purged,
    remember_is_shared_with_enqueue,
);

async fn enqueue_with_dedup_stores_once(db: &TestDb) {
    let store = &db.store;
    let dir = Direction::ToChannel;
    let items = [item("a", 0), item("a", 1)];

    let first = store
        .enqueue(dir, &items, Some(("lp:evt-1", LONG)))
        .await
        .unwrap();
    let Enqueued::Stored(ids) = first else {
        panic!("first enqueue must store: {first:?}")
    };
    assert_eq!(ids.len(), 2);

    let second = store
        .enqueue(dir, &items, Some(("lp:evt-1", LONG)))
        .await
        .unwrap();
    assert_eq!(second, Enqueued::Duplicate);
    assert_eq!(
        store.pending(dir).await.unwrap(),
        2,
        "a duplicate inserts nothing"
    );

    // Another key is not a duplicate, even with the same items.
    let third = store
        .enqueue(dir, &items[..1], Some(("lp:evt-2", LONG)))
        .await
        .unwrap();
    assert!(matches!(third, Enqueued::Stored(ref ids) if ids.len() == 1));
    assert_eq!(store.pending(dir).await.unwrap(), 3);
}

async fn expired_keys_can_be_reused_and_purged(db: &TestDb) {
    let store = &db.store;
    let dir = Direction::ToLivePerson;
    let short = Duration::from_millis(300);

    assert!(store.remember("k1", short).await.unwrap());
    assert!(store.remember("k2", short).await.unwrap());
    assert!(store.remember("k3", LONG).await.unwrap());
    assert!(!store.remember("k1", short).await.unwrap());
    let enq = store
        .enqueue(dir, &[item("a", 0)], Some(("k2", short)))
        .await
        .unwrap();
    assert_eq!(enq, Enqueued::Duplicate);
    assert_eq!(
        store.purge_expired().await.unwrap(),
        0,
        "nothing expired yet"
    );

    tokio::time::sleep(Duration::from_millis(450)).await;
    // Expired keys count as new again.
    assert!(store.remember("k1", short).await.unwrap());
    let enq = store
        .enqueue(dir, &[item("a", 0)], Some(("k2", LONG)))
        .await
        .unwrap();
    assert!(matches!(enq, Enqueued::Stored(_)));
    assert!(
        !store.remember("k3", LONG).await.unwrap(),
        "k3 is still live"
    );

    // Only k1 (re-remembered with a short ttl) remains to expire; k2 and k3 are live.
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(store.purge_expired().await.unwrap(), 1);
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    assert!(store.remember("k1", LONG).await.unwrap());
    assert!(!store.remember("k2", LONG).await.unwrap());
}

async fn remember_is_shared_with_enqueue(db: &TestDb) {
    let store = &db.store;
    assert!(store.remember("shared", LONG).await.unwrap());
    let enq = store
        .enqueue(
            Direction::ToChannel,
            &[item("a", 0)],
            Some(("shared", LONG)),
        )
        .await;
    assert_eq!(enq.unwrap(), Enqueued::Duplicate);
    // And a second handle (another instance) sees the same keys.
    let other = db.reopen().await;
    assert!(!other.remember("shared", LONG).await.unwrap());
    assert_eq!(other.pending(Direction::ToChannel).await.unwrap(), 0);
}
