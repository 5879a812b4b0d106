//! Messages in parts reassembled in the store: one row per part, complete once, claimed by
//! exactly one caller, given up with what came when parts stop coming.

use std::time::Duration;

use switchboard_store::{NewPart, PartAdded, Store};

use crate::support::TestDb;

backend_tests!(
    parts_in_any_order_complete_the_message_once,
    a_released_claim_is_claimed_again_by_the_gateways_retry,
    a_finished_message_knows_repeated_and_late_parts,
    a_message_missing_parts_is_given_up_with_what_came,
    three_instances_receiving_the_parts_at_once_complete_each_message_once,
    parts_that_do_not_exist_are_refused,
);

const WAIT: Duration = Duration::from_secs(600);

/// Part `part` of `total` of message `group`, whose gateway id is the body with `-id`.
fn part<'a>(group: &'a str, part: u32, total: u32, body: &'a str) -> NewPart<'a> {
    NewPart {
        instance: "sms-vonage",
        group,
        part,
        id: body,
        total,
        body,
        wait: WAIT,
    }
}

fn complete(parts: &[&str]) -> PartAdded {
    PartAdded::Complete {
        parts: parts.iter().map(|p| (*p).to_owned()).collect(),
        id: parts[0].to_owned(),
    }
}

async fn parts_in_any_order_complete_the_message_once(db: &TestDb) {
    let s = &db.store;
    assert_eq!(
        s.add_part(&part("g", 3, 3, "c")).await.unwrap(),
        PartAdded::Waiting
    );
    assert_eq!(
        s.add_part(&part("g", 1, 3, "a")).await.unwrap(),
        PartAdded::Waiting
    );
    // The gateway's retry of a part already kept changes nothing.
    assert_eq!(
        s.add_part(&part("g", 1, 3, "a")).await.unwrap(),
        PartAdded::Waiting
    );
    assert_eq!(
        s.add_part(&part("g", 2, 3, "b")).await.unwrap(),
        complete(&["a", "b", "c"])
    );
    // Claimed: a retry of the last part while the claimer submits does not claim it again.
    assert_eq!(
        s.add_part(&part("g", 2, 3, "b")).await.unwrap(),
        PartAdded::Waiting
    );
    // Another message (another instance name or group) is its own.
    let other = NewPart {
        instance: "sms-other",
        ..part("g", 1, 1, "x")
    };
    assert_eq!(s.add_part(&other).await.unwrap(), complete(&["x"]));
}

async fn a_released_claim_is_claimed_again_by_the_gateways_retry(db: &TestDb) {
    let s = &db.store;
    s.add_part(&part("g", 1, 2, "a")).await.unwrap();
    assert_eq!(
        s.add_part(&part("g", 2, 2, "b")).await.unwrap(),
        complete(&["a", "b"])
    );
    // The submit failed (the caller answered 503): the claim is released, the retry takes it.
    s.finish_parts("sms-vonage", "g", false).await.unwrap();
    assert_eq!(
        s.add_part(&part("g", 2, 2, "b")).await.unwrap(),
        complete(&["a", "b"])
    );
}

async fn a_finished_message_knows_repeated_and_late_parts(db: &TestDb) {
    let s = &db.store;
    s.add_part(&part("g", 1, 2, "a")).await.unwrap();
    s.add_part(&part("g", 2, 2, "b")).await.unwrap();
    s.finish_parts("sms-vonage", "g", true).await.unwrap();
    // Retried hours later: already in the submitted message.
    assert_eq!(
        s.add_part(&part("g", 2, 2, "b")).await.unwrap(),
        PartAdded::Waiting
    );
    // A restart changes nothing: it is all in the database.
    let again = db.reopen().await;
    assert_eq!(
        again.add_part(&part("g", 1, 2, "a")).await.unwrap(),
        PartAdded::Waiting
    );
    // The sender's next message reuses the reference (8-bit references come round): its
    // parts have other ids, and it is a message of its own.
    assert_eq!(
        again.add_part(&part("g", 2, 2, "y")).await.unwrap(),
        PartAdded::Waiting
    );
    assert_eq!(
        again.add_part(&part("g", 1, 2, "x")).await.unwrap(),
        complete(&["x", "y"])
    );
    // While that one is open, a third message reusing it again is delivered on its own.
    assert_eq!(
        again.add_part(&part("g", 1, 2, "z")).await.unwrap(),
        PartAdded::Late
    );
}

async fn a_message_missing_parts_is_given_up_with_what_came(db: &TestDb) {
    let s = &db.store;
    let quick = |n: u32, body: &'static str| NewPart {
        wait: Duration::ZERO,
        ..part("g", n, 3, body)
    };
    s.add_part(&quick(1, "a")).await.unwrap();
    s.add_part(&quick(3, "c")).await.unwrap();
    let expired = s.take_expired_parts("sms-vonage", 10).await.unwrap();
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0].group, "g");
    assert_eq!(expired[0].total, 3);
    assert_eq!(expired[0].parts, [(1, "a".into()), (3, "c".into())]);
    assert_eq!(expired[0].id, "a");
    // Claimed: another sweep (another instance) does not get it.
    assert!(
        db.reopen()
            .await
            .take_expired_parts("sms-vonage", 10)
            .await
            .unwrap()
            .is_empty()
    );
    s.finish_parts("sms-vonage", "g", true).await.unwrap();
    // The missing part arrives after all: too late to join, and known as new.
    assert_eq!(s.add_part(&quick(2, "b")).await.unwrap(), PartAdded::Late);
    assert_eq!(
        s.add_part(&quick(2, "b")).await.unwrap(),
        PartAdded::Waiting
    );
    assert!(
        s.take_expired_parts("sms-vonage", 10)
            .await
            .unwrap()
            .is_empty()
    );
    // A message that is still within its wait is not handed out.
    s.add_part(&part("h", 1, 2, "x")).await.unwrap();
    assert!(
        s.take_expired_parts("sms-vonage", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Issue #21 item 2: three instances on one database receive the parts of the same
/// messages at once, each part at whichever instance the gateway called: every message is
/// complete exactly once, with its parts in order.
async fn three_instances_receiving_the_parts_at_once_complete_each_message_once(db: &TestDb) {
    let stores: Vec<Store> = vec![db.store.clone(), db.reopen().await, db.reopen().await];
    let messages = 40u32;
    let mut tasks = Vec::new();
    for m in 0..messages {
        for p in 1..=3u32 {
            // Part p of message m goes to instance (m + p) % 3: all three see each message.
            let store = stores[((m + p) % 3) as usize].clone();
            tasks.push(tokio::spawn(async move {
                let group = format!("msg-{m}");
                let body = format!("{m}.{p}");
                let added = store
                    .add_part(&NewPart {
                        instance: "sms-vonage",
                        group: &group,
                        part: p,
                        id: &body,
                        total: 3,
                        body: &body,
                        wait: WAIT,
                    })
                    .await
                    .unwrap();
                (m, added)
            }));
        }
    }
    let mut completed = vec![Vec::new(); messages as usize];
    for task in tasks {
        let (m, added) = task.await.unwrap();
        if let PartAdded::Complete { parts, .. } = added {
            completed[m as usize].push(parts);
        }
    }
    for (m, got) in completed.iter().enumerate() {
        assert_eq!(
            got,
            &vec![vec![format!("{m}.1"), format!("{m}.2"), format!("{m}.3")]],
            "message {m}"
        );
    }
}

async fn parts_that_do_not_exist_are_refused(db: &TestDb) {
    assert!(db.store.add_part(&part("g", 0, 3, "a")).await.is_err());
    assert!(db.store.add_part(&part("g", 4, 3, "a")).await.is_err());
}
