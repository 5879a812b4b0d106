//! `/media/{token}` links under attack, through the real binary: an SMS consumer who holds a
//! link of their own tries, in a few hundred requests, to forge one for any consumer, file and
//! expiry, to tamper with theirs and to guess others; nothing is found and no state is created
//! for a consumer the attacker names. Failures are rate-limited per client address (429 JSON
//! with `Retry-After`) without locking other clients out, and a link past its expiry is gone.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use switchboard_lp_sim::{SimConfig, SimHandle, Simulator};
use switchboard_testkit::fake_kannel::FakeKannel;
use switchboard_testkit::{eventually, free_port};

use crate::support::{RunningBinary, TINY_PNG, liveperson_toml, load_toml, run_binary_on};

const SHORT_CODE: &str = "1000";
const TOKEN: &str = "kannel-callback-token-0123456789";
/// The consumer who received a link and attacks with it.
const ATTACKER: &str = "+15551230001";
/// A consumer the attacker makes up: nothing may be created for them.
const MADE_UP: &str = "+19995550000";

/// A connector with an SMS channel (on the fake Kannel), after its agent sent a consumer a
/// file, which reached the handset as a link.
pub(crate) struct AgentFileBySms {
    /// The simulator (kept: dropping it stops it).
    pub(crate) _sim: SimHandle,
    /// The gateway (kept, as the simulator).
    pub(crate) _kannel: FakeKannel,
    /// The connector.
    pub(crate) running: RunningBinary,
    /// The whole SMS: the file's caption, then the link on its own line.
    pub(crate) sms: String,
    /// The link.
    pub(crate) link: String,
}

/// The consumer `consumer` writes by SMS; the agent answers with a PNG captioned "your label".
pub(crate) async fn agent_file_by_sms(consumer: &str) -> AgentFileBySms {
    let sim = Simulator::start(SimConfig {
        time_scale: 0.01,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let port = free_port();
    let sendsms = free_port();
    let channel = format!(
        "[channels.sms]\nkind = \"sms\"\ngateway = \"kannel\"\nfrom = \"{SHORT_CODE}\"\n\
         callback_token = \"{TOKEN}\"\ncallback_base_url = \"http://127.0.0.1:{port}/channels/sms\"\n\
         sendsms_url = \"http://127.0.0.1:{sendsms}/cgi-bin/sendsms\"\n\
         username = \"switchboard\"\npassword = \"sendsms-password-42\"\n"
    );
    let (_dir, _path, loaded) = load_toml(&format!("{}{channel}", liveperson_toml(&sim, 1.0)));
    let snippet = switchboard::kannel_config(&loaded.unwrap(), None).unwrap();
    let kannel = FakeKannel::start(&snippet, sendsms).await.unwrap();
    let running = run_binary_on(port, &sim, &channel, &[]).await;

    kannel
        .send_mo(consumer, SHORT_CODE, "can you send the label?")
        .await
        .unwrap();
    let entry = sim
        .wait_for_consumer_message("send the label", Duration::from_secs(30))
        .await
        .expect("the consumer's SMS reached LivePerson");
    let conversation = sim
        .conversations()
        .into_iter()
        .find(|c| c.consumer_messages().any(|t| t.event == entry.event))
        .unwrap()
        .conversation_id;
    sim.agent_send_file(&conversation, "your label", "PNG", TINY_PNG.to_vec())
        .unwrap();
    let sms = |kannel: &FakeKannel| {
        kannel
            .requests()
            .into_iter()
            .filter(|r| r.status == 202)
            .filter_map(|r| r.params.get("text").cloned())
            .find(|t| t.contains("/media/"))
    };
    assert!(
        eventually(30, || sms(&kannel).is_some()).await,
        "no SMS with a link: {:?}",
        kannel.requests()
    );
    let sms = sms(&kannel).unwrap();
    let link = sms
        .lines()
        .find(|l| l.contains("/media/"))
        .unwrap()
        .to_owned();
    AgentFileBySms {
        _sim: sim,
        _kannel: kannel,
        running,
        sms,
        link,
    }
}

/// An HTTP client whose requests come from `127.0.0.{last}` (any loopback address is this
/// host's): a stand-in for one client address on the internet.
fn client_from(last: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// The token part of a link: between `/media/` and the file name.
fn token_of(link: &str) -> &str {
    let start = link.find("/media/").unwrap() + "/media/".len();
    link[start..].split('/').next().unwrap()
}

/// Every forgery an attacker holding `link` tries: the old signed format for a consumer and
/// expiry of their choice with each one-byte tag (a truncated comparison accepted those), each
/// character of their own token changed, and random tokens of the same length.
fn candidates(link: &str, base: &str) -> Vec<String> {
    let token = token_of(link);
    let mut out = Vec::new();
    // The claims of the old format, readable in the link: reuse the file path, name a consumer.
    let path = token
        .split_once('.')
        .and_then(|(payload, _)| URL_SAFE_NO_PAD.decode(payload).ok())
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .and_then(|claims| claims["p"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "/v1/files/label.png".to_owned());
    let claims = serde_json::json!({
        "c": format!("3:sms:{MADE_UP}"), "p": path, "t": "PNG", "e": 4_102_444_800_i64,
    });
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    for byte in 0..=255u8 {
        out.push(format!(
            "{base}/media/{payload}.{}/x.png",
            URL_SAFE_NO_PAD.encode([byte])
        ));
    }
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    // Forty characters at most, spread over the token.
    let step = (token.len() / 40).max(1);
    for (i, c) in token.bytes().enumerate().step_by(step).take(40) {
        let mut altered = token.as_bytes().to_vec();
        altered[i] = alphabet[(alphabet.iter().position(|a| *a == c).unwrap_or(0) + 1) % 64];
        out.push(format!(
            "{base}/media/{}/x.png",
            String::from_utf8(altered).unwrap()
        ));
    }
    for _ in 0..20 {
        let random: String = (0..token.len())
            .map(|_| alphabet[rand_index()] as char)
            .collect();
        out.push(format!("{base}/media/{random}/x.png"));
    }
    out
}

fn rand_index() -> usize {
    (uuid::Uuid::new_v4().as_u128() % 64) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_links_cannot_be_forged_tampered_or_guessed_and_create_nothing() {
    let AgentFileBySms { running, link, .. } = &agent_file_by_sms(ATTACKER).await;
    let base = format!("http://127.0.0.1:{}", running.port);
    // The link itself shows neither the consumer nor the file.
    assert!(!link.contains(&ATTACKER[1..]), "{link}");
    let own = client_from(9).get(link.as_str()).send().await.unwrap();
    assert_eq!(own.status(), 200, "{link}");
    assert_eq!(own.bytes().await.unwrap().as_ref(), TINY_PNG);

    let attempts = candidates(link, &base);
    assert!((250..400).contains(&attempts.len()), "{}", attempts.len());
    // Spread over client addresses so that every try reaches the token check (the failure
    // limit is proved on its own below): the tokens alone must hold.
    let clients: Vec<reqwest::Client> = (10..40).map(client_from).collect();
    let mut found = Vec::new();
    for (n, url) in attempts.iter().enumerate() {
        let answer = clients[n / 12].get(url).send().await.unwrap();
        let status = answer.status().as_u16();
        if status != 404 {
            found.push((status, url.clone()));
            continue;
        }
        let body: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(body["error"]["code"], "not_found", "{url}");
    }
    assert!(
        found.is_empty(),
        "{} of {} forged links were taken, e.g. {:?}",
        found.len(),
        attempts.len(),
        &found[..found.len().min(3)]
    );

    // Nothing was created for the consumer the attacker named.
    let store = switchboard_store::Store::connect(&running.store_url())
        .await
        .unwrap();
    let made_up = switchboard_core::ConsumerAddress::new("sms", MADE_UP).key();
    assert_eq!(store.consumer(&made_up).await.unwrap(), None);
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_failures_are_rate_limited_per_client_and_expired_links_are_gone() {
    let AgentFileBySms { running, link, .. } = &agent_file_by_sms(ATTACKER).await;
    let base = format!("http://127.0.0.1:{}", running.port);
    let prober = client_from(50);
    let mut limited = None;
    for n in 0..100 {
        let answer = prober
            .get(format!("{base}/media/not-a-link-{n:04}/x.png"))
            .send()
            .await
            .unwrap();
        if answer.status() == 429 {
            limited = Some(answer);
            break;
        }
        assert_eq!(answer.status(), 404);
    }
    let limited = limited.expect("a hundred failures from one address are never limited");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    // The limited address is refused even a good link; another address is not affected.
    assert_eq!(
        prober.get(link.as_str()).send().await.unwrap().status(),
        429
    );
    let other = client_from(51).get(link.as_str()).send().await.unwrap();
    assert_eq!(other.status(), 200);

    // Past its expiry, the same link answers 410.
    let pool = sqlx::SqlitePool::connect(&running.store_url())
        .await
        .unwrap();
    sqlx::query("UPDATE media_links SET expires_at = 1")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let expired = client_from(52).get(link.as_str()).send().await.unwrap();
    assert_eq!(expired.status(), 410);
    let body: serde_json::Value = expired.json().await.unwrap();
    assert_eq!(body["error"]["code"], "expired");
}
