//! The trace (`switchboard trace`): rows recorded, looked up by any key of their event, and
//! pruned in batches; and what a message costs in a SQLite file.

use std::time::Duration;

use serde_json::json;
use switchboard_store::{Direction, TraceEntry, TraceLog, TraceStage};

use crate::support::TestDb;

backend_tests!(
    rows_are_found_by_any_key_of_their_event,
    the_log_writes_every_row_it_was_given,
    gathered_rows_reach_the_store_without_a_flush,
    old_rows_are_pruned_in_batches,
);

fn entry(
    direction: Direction,
    stage: TraceStage,
    channel: &str,
    item: Option<i64>,
    platform_id: Option<&str>,
) -> TraceEntry {
    let mut e = TraceEntry::new(direction, stage);
    e.channel = Some(channel.to_owned());
    e.consumer = Some(format!("{channel}:+15550001"));
    e.item = item;
    e.platform_id = platform_id.map(str::to_owned);
    e
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn rows_are_found_by_any_key_of_their_event(db: &TestDb) {
    let store = &db.store;
    let (lp, ch) = (Direction::ToLivePerson, Direction::ToChannel);
    let t = now_ms();
    let mut sent = entry(lp, TraceStage::Sent, "sms", Some(1), Some("mo-1"));
    sent.conversation_id = Some("conv-1".into());
    sent.detail = json!({ "sequence": 0 });
    let rows = vec![
        (
            t,
            entry(lp, TraceStage::Received, "sms", None, Some("mo-1")),
        ),
        (
            t,
            entry(lp, TraceStage::Stored, "sms", Some(1), Some("mo-1")),
        ),
        (
            t + 1,
            entry(lp, TraceStage::Attempt, "sms", Some(1), Some("mo-1")),
        ),
        (t + 2, sent),
        // A duplicate of it, dropped.
        (
            t + 3,
            entry(lp, TraceStage::Received, "sms", None, Some("mo-1")),
        ),
        // Dead-lettered later, then requeued by the command line (a new item).
        (
            t + 4,
            entry(lp, TraceStage::DeadLettered, "sms", Some(1), Some("mo-1")),
        ),
        (
            t + 5,
            entry(lp, TraceStage::Requeued, "sms", None, Some("mo-1")),
        ),
        (
            t + 6,
            entry(lp, TraceStage::Attempt, "sms", Some(9), Some("mo-1")),
        ),
        // Another channel's message with an id that happens to be the same: another event.
        (t + 7, {
            let mut e = entry(ch, TraceStage::Sent, "tg", Some(2), Some("mo-1"));
            e.consumer = Some("tg:42".into());
            e
        }),
        (t + 8, {
            let mut e = entry(
                ch,
                TraceStage::Stored,
                "tg",
                Some(2),
                Some("lp:conv-2:conv-2:1"),
            );
            e.consumer = Some("tg:42".into());
            e
        }),
    ];
    store.record_trace("host-a:1", &rows).await.unwrap();
    store
        .record_trace(
            "host-b:2",
            &[(
                t + 9,
                entry(lp, TraceStage::Confirmed, "sms", Some(1), None),
            )],
        )
        .await
        .unwrap();

    let found = store.trace_lookup("mo-1", 100).await.unwrap();
    let stages: Vec<&str> = found.iter().map(|r| r.entry.stage.as_str()).collect();
    // Both ids' events (a platform id names the message in every channel that has it).
    assert!(stages.contains(&"confirmed"), "{stages:?}");
    assert!(found.iter().any(|r| r.instance == "host-b:2"));
    // Item 9 (the requeued event's new item) is found through its platform id.
    assert!(found.iter().any(|r| r.entry.item == Some(9)));
    // Oldest first (by id on PostgreSQL, whose clock stamps a whole insert alike).
    let ids: Vec<i64> = found.iter().map(|r| r.id).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted);

    // By the consumer address: that consumer's events only.
    let by_consumer = store.trace_lookup("tg:42", 100).await.unwrap();
    assert_eq!(by_consumer.len(), 2, "{by_consumer:#?}");
    assert!(
        by_consumer
            .iter()
            .all(|r| r.entry.channel.as_deref() == Some("tg"))
    );
    // By the conversation: the event that was sent in it, every stage of it.
    let by_conversation = store.trace_lookup("conv-1", 100).await.unwrap();
    let stages: Vec<&str> = by_conversation
        .iter()
        .map(|r| r.entry.stage.as_str())
        .collect();
    for stage in [
        "received",
        "stored",
        "attempt",
        "sent",
        "dead_lettered",
        "requeued",
        "confirmed",
    ] {
        assert!(stages.contains(&stage), "{stage} missing from {stages:?}");
    }
    assert!(
        by_conversation
            .iter()
            .all(|r| r.entry.channel.as_deref() == Some("sms"))
    );
    let sent = by_conversation
        .iter()
        .find(|r| r.entry.stage == TraceStage::Sent)
        .unwrap();
    assert_eq!(sent.entry.detail, json!({ "sequence": 0 }));
    assert_eq!(sent.entry.conversation_id.as_deref(), Some("conv-1"));
    assert_eq!(sent.instance, "host-a:1");

    assert!(store.trace_lookup("nothing", 100).await.unwrap().is_empty());
}

async fn the_log_writes_every_row_it_was_given(db: &TestDb) {
    let store = &db.store;
    let log = TraceLog::start(store.clone(), "host-a:1");
    // More than one gathering's worth (1,024 rows) and one of PostgreSQL's inserts (256).
    for i in 0..3000 {
        log.record(entry(
            Direction::ToLivePerson,
            TraceStage::Received,
            "sms",
            Some(i),
            Some(&format!("mo-{i}")),
        ));
    }
    log.flush().await;
    assert_eq!(store.trace_count().await.unwrap(), 3000);
    assert_eq!(log.dropped(), 0);
    let one = store.trace_lookup("mo-500", 10).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].entry.item, Some(500));
}

/// Rows are gathered for a moment, then written without anyone asking for a flush.
async fn gathered_rows_reach_the_store_without_a_flush(db: &TestDb) {
    let store = &db.store;
    let log = TraceLog::start(store.clone(), "host-a:1");
    for i in 0..10 {
        log.record(entry(
            Direction::ToChannel,
            TraceStage::Sent,
            "sms",
            Some(i),
            Some(&format!("mt-{i}")),
        ));
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store.trace_count().await.unwrap() < 10 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "gathered rows were never written"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(store.trace_count().await.unwrap(), 10);
}

async fn old_rows_are_pruned_in_batches(db: &TestDb) {
    let store = &db.store;
    let rows: Vec<_> = (0..1200)
        .map(|i| {
            (
                now_ms(),
                entry(Direction::ToChannel, TraceStage::Sent, "tg", Some(i), None),
            )
        })
        .collect();
    store.record_trace("host-a:1", &rows).await.unwrap();
    let hour = Duration::from_secs(3600);
    assert_eq!(
        store.prune_trace(hour, 500).await.unwrap(),
        0,
        "rows younger than the retention stay"
    );
    // Let the clock pass the rows' time (milliseconds), then keep nothing.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut batches = Vec::new();
    loop {
        let n = store.prune_trace(Duration::ZERO, 500).await.unwrap();
        batches.push(n);
        if n < 500 {
            break;
        }
    }
    assert_eq!(batches, [500, 500, 200]);
    assert_eq!(store.trace_count().await.unwrap(), 0);
}

/// What the trace of one message costs in a SQLite file, for docs/operations.md: the
/// timeline of an SMS and of the agent's answer (the rows `switchboard trace` shows for
/// them, with ids shaped as the real ones), 2000 times, file size before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_per_message_in_sqlite() {
    let db = TestDb::sqlite().await;
    let store = &db.store;
    let file = db.sqlite_path().expect("a SQLite file");
    let size = || async {
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", file.display()))
            .await
            .unwrap();
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        std::fs::metadata(&file).unwrap().len()
    };
    let before = size().await;
    const MESSAGES: i64 = 2000;
    let (lp, ch) = (Direction::ToLivePerson, Direction::ToChannel);
    for m in 0..MESSAGES {
        let t = now_ms();
        let conversation = format!("bc0a5feb-41f0-4e08-b663-{m:012}");
        let mo = format!("a76999cf-a713-411f-9efb-{m:012}");
        let agent = format!("lp:{conversation}:{conversation}:1");
        let with = |mut e: TraceEntry, conv: bool, detail: serde_json::Value| {
            e.consumer = Some(format!("sms:+1555{m:07}"));
            if conv {
                e.conversation_id = Some(conversation.clone());
            }
            e.detail = detail;
            (t, e)
        };
        let rows = vec![
            with(
                entry(lp, TraceStage::Received, "sms", None, Some(&mo)),
                false,
                json!({"duplicate": false, "kind": "text"}),
            ),
            with(
                entry(lp, TraceStage::Stored, "sms", Some(2 * m), Some(&mo)),
                false,
                json!({}),
            ),
            with(
                entry(lp, TraceStage::Attempt, "sms", Some(2 * m), Some(&mo)),
                true,
                json!({"attempt": 1, "outcome": "delivered", "target": "liveperson"}),
            ),
            with(
                entry(lp, TraceStage::Sent, "sms", Some(2 * m), Some(&mo)),
                true,
                json!({"kind": "text", "sequence": 0}),
            ),
            with(
                entry(lp, TraceStage::Confirmed, "sms", Some(2 * m), None),
                true,
                json!({"by": "liveperson echo", "sequence": 0}),
            ),
            with(
                entry(ch, TraceStage::Received, "sms", None, Some(&agent)),
                true,
                json!({"duplicate": false, "from": "liveperson", "kind": "text"}),
            ),
            with(
                entry(ch, TraceStage::Stored, "sms", Some(2 * m + 1), Some(&agent)),
                true,
                json!({}),
            ),
            with(
                entry(
                    ch,
                    TraceStage::Attempt,
                    "sms",
                    Some(2 * m + 1),
                    Some(&agent),
                ),
                true,
                json!({"attempt": 1, "outcome": "delivered", "target": "sms"}),
            ),
            with(
                entry(ch, TraceStage::Sent, "sms", Some(2 * m + 1), None),
                true,
                json!({"event_id": agent, "kind": "text"}),
            ),
            with(
                entry(ch, TraceStage::Confirmed, "sms", None, Some(&agent)),
                true,
                json!({"by": "delivery report", "status": "delivered"}),
            ),
        ];
        store
            .record_trace("ip-10-0-0-12:4242", &rows)
            .await
            .unwrap();
    }
    let after = size().await;
    let rows = store.trace_count().await.unwrap();
    let per_message = (after - before) / (2 * MESSAGES) as u64;
    println!(
        "trace: {rows} rows for {} messages (an SMS and its answer, 2000 times): {} bytes, {per_message} bytes per message, {} bytes per row",
        2 * MESSAGES,
        after - before,
        (after - before) / rows
    );
    assert_eq!(rows, 10 * MESSAGES as u64);
    assert!(per_message < 4096, "{per_message} bytes per message");
}
