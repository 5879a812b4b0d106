//! Issue 19.1 through the HTTP front door: every event a channel answered 2xx for is in the
//! store after a power cut with the default `store.sync`, and with `store.sync = "normal"`
//! some are not (so the harness is shown to bite). The cut is simulated by
//! `switchboard-powercut` (a SQLite VFS that drops what was not synced); LivePerson is down
//! for the whole run, so nothing leaves the outbox and what the disk kept is all there is.

use std::collections::BTreeSet;
use std::time::Duration;

use switchboard_lp_sim::{FaultRequest, SimConfig, Simulator};
use switchboard_powercut::Disk;
use tokio::net::TcpListener;

use crate::support::{liveperson_toml, load_toml};

/// Concurrent senders (as a channel platform retries and sends in parallel).
const SENDERS: usize = 4;
/// The cut comes once this many events were answered 2xx. Small enough that SQLite's
/// automatic checkpoint (at 1000 WAL pages, which syncs even in `normal` mode) does not run
/// in the `normal` case: what that mode loses is then not a matter of timing.
const ANSWERED_BEFORE_CUT: usize = 60;
/// Events a sender posts at most.
const MAX_PER_SENDER: usize = 1000;

/// Runs a connector whose store lives on a [`Disk`], posts events until the power is cut,
/// and returns the events answered 2xx and those missing from the store the disk kept.
async fn answered_and_lost(store_extra: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    // LivePerson is unreachable throughout: the events stay in the outbox.
    sim.apply_faults(FaultRequest {
        outage_ms: Some(600_000),
        ..FaultRequest::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let disk = Disk::watch(dir.path()).unwrap();
    let store_path = dir.path().join("sb.db");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let toml = format!(
        "[server]\nlisten = \"{addr}\"\n[store]\nurl = \"sqlite://{}\"\n{store_extra}\n{}\
         [channels.sms]\nkind = \"test-recorder\"\n",
        store_path.display(),
        // Real retry delays: few worker writes while LivePerson is down (see above).
        liveperson_toml(&sim, 1.0),
    );
    let (_cfg, _path, loaded) = load_toml(&toml);
    let server = tokio::spawn(switchboard::serve(
        loaded.unwrap(),
        listener,
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let base = format!("http://{addr}");
    let say = {
        let (http, base) = (http.clone(), base.clone());
        move |from: String, text: String| {
            let (http, base) = (http.clone(), base.clone());
            async move {
                http.post(format!("{base}/channels/sms/in?from={from}"))
                    .header("x-id", text.clone())
                    .body(text)
                    .send()
                    .await
                    .map(|r| r.status())
            }
        }
    };
    // The connector is up and its schema was written a while ago: on the disk.
    for _ in 0..100 {
        if say("warm-up".into(), "warm-up".into())
            .await
            .is_ok_and(|s| s.is_success())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    disk.flush_all();

    let answers = disk.cut_after(ANSWERED_BEFORE_CUT);
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (say, answers) = (say.clone(), answers.clone());
            tokio::spawn(async move {
                // Bounded: the cut comes long before (or the test fails below).
                for n in 0..MAX_PER_SENDER {
                    let text = format!("event-{s}-{n}");
                    match say(format!("consumer-{s}"), text.clone()).await {
                        Ok(status) if status.is_success() => answers.answered(text),
                        // Refused (the store failed): the platform sends it again later.
                        _ => return,
                    }
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }
    assert!(answers.is_cut(), "too few events answered");
    // The machine is off.
    server.abort();
    let answered = answers.all();

    let after = disk.restore().unwrap();
    let url = format!("sqlite://{}", after.path().join("sb.db").display());
    let store = switchboard_store::Store::connect(&url).await.unwrap();
    store.close().await;
    let mut db = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let payloads: Vec<String> = sqlx::query_scalar("SELECT payload FROM outbox")
        .fetch_all(&mut db)
        .await
        .unwrap();
    let lost = answered
        .iter()
        .filter(|text| !payloads.iter().any(|p| p.contains(&format!("\"{text}\""))))
        .cloned()
        .collect();
    (answered, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_answered_2xx_is_in_the_store_after_a_power_cut() {
    let (answered, lost) = answered_and_lost("").await;
    assert!(
        lost.is_empty(),
        "{} of {} events answered 2xx were lost in the power cut, e.g. {:?}",
        lost.len(),
        answered.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_store_sync_normal_events_answered_2xx_are_lost_in_a_power_cut() {
    let (answered, lost) = answered_and_lost("sync = \"normal\"").await;
    assert!(
        !lost.is_empty(),
        "with store.sync = normal all {} answered events survived: the harness dropped nothing",
        answered.len()
    );
}
