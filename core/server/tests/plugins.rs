//! Dynamic plugins through the real loader: every refusal, the example plugin under the
//! conformance suite, panics and silence inside a plugin, state over the callbacks, and the
//! binary's `channels` and `check`.
//!
//! The libraries are the workspace's `plugins/dynamic-example` and `plugins/fixtures/*`
//! crates; they are dev-dependencies of this crate, so cargo builds them before these tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use switchboard::plugins::{self, CallOptions, DynamicPlugin};
use switchboard::readiness::Readiness;
use switchboard_core::plugin::abi::PluginDeclaration;
use switchboard_core::{
    Bytes, Channel, ChannelConfig, ConsumerAddress, DeliveryError, Inbound, Outbound,
    OutboundEvent, http,
};
use switchboard_testkit::conformance::Harness;
use switchboard_testkit::webhook_receiver::WebhookReceiver;
use switchboard_testkit::{RecordingSink, plugin_library};

use crate::relay::{RelayHarness, TOKEN, relay};
use crate::support::{load_toml, switchboard_command as switchboard};

fn library(package: &str) -> PathBuf {
    plugin_library(package)
}

fn misbehaving() -> &'static DynamicPlugin {
    plugins::load(&library("switchboard-fixture-misbehaving"), None).expect("loads")
}

fn refusal(package: &str) -> (String, String) {
    let path = library(package);
    let err = plugins::load(&path, None).expect_err("refused");
    (path.display().to_string(), err.to_string())
}

// ---------------------------------------------------------------------------------------------
// Refusals.

#[test]
fn a_declaration_without_the_magic_bytes_is_refused() {
    let (path, err) = refusal("switchboard-fixture-bad-magic");
    assert_eq!(
        err,
        format!(
            "cannot load plugin `{path}`: its `SWITCHBOARD_PLUGIN_V1` does not start with the Switchboard magic bytes (found `NOTAPLUG`)"
        )
    );
}

#[test]
fn another_abi_version_is_refused_naming_both_versions() {
    let (path, err) = refusal("switchboard-fixture-wrong-abi");
    assert_eq!(
        err,
        format!(
            "cannot load plugin `{path}`: it speaks plugin ABI version 2, this host speaks version 1"
        )
    );
}

#[test]
fn a_smaller_declaration_is_refused_naming_both_sizes() {
    let (path, err) = refusal("switchboard-fixture-small-struct");
    let ours = size_of::<PluginDeclaration>();
    assert_eq!(
        err,
        format!(
            "cannot load plugin `{path}`: its declaration is 16 bytes, smaller than the {ours} bytes of plugin ABI version 1"
        )
    );
}

#[test]
fn another_core_major_version_is_refused_naming_both_versions() {
    let (path, err) = refusal("switchboard-fixture-wrong-core");
    assert_eq!(
        err,
        format!(
            "cannot load plugin `{path}`: it was built against switchboard-core 99.0.0, this host has switchboard-core {} (a different major version)",
            switchboard_core::CORE_VERSION
        )
    );
}

#[test]
fn a_plugin_built_to_abort_on_panic_is_refused() {
    let (path, err) = refusal("switchboard-fixture-panic-abort");
    assert_eq!(
        err,
        format!(
            "cannot load plugin `{path}`: it was built with panic = \"abort\", so any panic in it would abort the host; build it with panic = \"unwind\" (the default)"
        )
    );
}

#[test]
fn a_library_without_the_declaration_symbol_is_refused() {
    let (path, err) = refusal("switchboard-fixture-no-declaration");
    assert_eq!(
        err,
        format!(
            "cannot load plugin `{path}`: it exports no `SWITCHBOARD_PLUGIN_V1` symbol (not a Switchboard plugin, or one built for another plugin ABI)"
        )
    );
}

#[test]
fn a_file_that_is_not_a_library_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("libnot_a_plugin.so");
    std::fs::write(&path, "this is a text file, not a shared library\n").unwrap();
    let err = plugins::load(&path, None).unwrap_err().to_string();
    let prefix = format!(
        "cannot load plugin `{}`: not a loadable shared library: ",
        path.display()
    );
    assert!(err.starts_with(&prefix), "{err}");
}

#[test]
fn missing_and_relative_paths_are_refused() {
    let err = plugins::load(Path::new("/nonexistent/dir/librelay.so"), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot load plugin `/nonexistent/dir/librelay.so`: no such file"
    );
    let err = plugins::load(Path::new("target/debug/librelay.so"), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`target/debug/librelay.so` is not an absolute path: dynamic plugins are loaded from absolute paths only"
    );
}

#[test]
fn a_sha256_pin_is_checked() {
    use sha2::Digest as _;
    let path = library("switchboard-plugin-dynamic-example");
    let digest = format!("{:x}", sha2::Sha256::digest(std::fs::read(&path).unwrap()));
    let wrong = "0".repeat(64);
    let err = plugins::load(&path, Some(&wrong)).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "cannot load plugin `{}`: its sha256 is {digest}, but the configuration pins {wrong}",
            path.display()
        )
    );
    assert!(plugins::load(&path, Some(&digest.to_uppercase())).is_ok());
}

#[test]
fn the_config_file_names_the_key_the_file_and_both_versions() {
    let path = library("switchboard-fixture-wrong-abi");
    let (_dir, file, loaded) = load_toml(&format!(
        "[liveperson]\nmode = \"simulator\"\n[plugins]\npaths = [\"{}\"]\n[channels.r]\nkind = \"relay\"\n",
        path.display()
    ));
    let problems = loaded.unwrap_err().0;
    assert_eq!(problems[0].key, "plugins.paths.0");
    assert_eq!(problems[0].origin, file.display().to_string());
    assert!(problems[0].message.contains(&path.display().to_string()));
    assert!(
        problems[0].message.contains("version 2"),
        "{}",
        problems[0].message
    );
    assert!(
        problems[0].message.contains("version 1"),
        "{}",
        problems[0].message
    );
    // The kind it would have provided is unknown, and said so.
    assert!(problems.iter().any(|p| p.key == "channels.r.kind"));
}

// ---------------------------------------------------------------------------------------------
// The dynamic example, through the loader.

#[test]
fn the_example_declares_its_kind_and_build() {
    let plugin = relay();
    assert_eq!(plugin.kinds().len(), 1);
    assert_eq!(plugin.kinds()[0].name, "relay");
    assert!(
        plugin.kinds()[0]
            .description
            .contains("dynamic plugin example")
    );
    assert_eq!(plugin.core_version(), switchboard_core::CORE_VERSION);
    assert!(
        plugin.build_info().starts_with("rustc "),
        "{}",
        plugin.build_info()
    );
    // Loading twice gives the same, never unloaded, library.
    assert!(std::ptr::eq(plugin, relay()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dynamic_example_does_real_http_both_ways() {
    let receiver = WebhookReceiver::start().await;
    let harness = RelayHarness {
        receiver: receiver.clone(),
    };
    let channel = harness.build(&harness.config()).unwrap();
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context("relay-1");

    // In: the plugin parses on its runtime and submits through the host's callback.
    let resp = channel
        .handle_http(harness.genuine(1, "Hello from the relay"), &ctx)
        .await;
    assert_eq!(resp.status(), 204);
    let events = sink.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].body, Inbound::text("Hello from the relay"));
    assert_eq!(events[0].platform_id.as_deref(), Some("m-1"));

    // Out: reqwest on the plugin's own runtime.
    let to = ConsumerAddress::new("relay-1", "c-1");
    channel
        .deliver(&to, &OutboundEvent::new("o-1", Outbound::text("Hi there")))
        .await
        .unwrap();
    let got = receiver.received_at("/deliver");
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].json(),
        json!({ "id": "o-1", "to": "c-1", "text": "Hi there" })
    );
    assert_eq!(
        got[0].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );

    // A refused submit is never acknowledged.
    sink.set_failing(true);
    let resp = channel
        .handle_http(harness.genuine(2, "while the store is down"), &ctx)
        .await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "3");
}

#[tokio::test]
async fn a_config_error_names_the_key_across_the_boundary() {
    let config = ChannelConfig::new("relay-1", "relay", json!({ "token": TOKEN }));
    let err = relay().build(&config, CallOptions::default()).unwrap_err();
    assert_eq!(err.key, "channels.relay-1.deliver_url");
    assert!(err.message.contains("missing field"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Misbehaving plugins.

fn misbehaving_config(settings: serde_json::Value) -> ChannelConfig {
    ChannelConfig::new("bad", "misbehaving", settings)
}

#[tokio::test]
async fn panics_while_building_are_config_errors() {
    for call in ["create", "capabilities"] {
        let config = misbehaving_config(json!({ "panic_in": [call] }));
        let err = misbehaving()
            .build(&config, CallOptions::default())
            .unwrap_err();
        assert_eq!(err.key, "channels.bad");
        assert!(
            err.message
                .contains(&format!("the misbehaving fixture panics in {call}")),
            "{err}"
        );
    }
}

#[tokio::test]
async fn a_plugin_that_never_finishes_building_is_a_config_error_after_the_timeout() {
    let options = CallOptions {
        timeout: Duration::from_secs(1),
    };
    for call in ["create", "capabilities"] {
        let config = misbehaving_config(json!({ "hang_in": [call] }));
        let err = misbehaving().build(&config, options).unwrap_err();
        assert_eq!(err.key, "channels.bad");
        assert!(
            err.message
                .contains(&format!("did not answer {call} within 1s"))
                && err.message.contains("plugins.call_timeout_secs"),
            "{err}"
        );
    }
    // The host goes on: the same plugin still builds a well-behaved instance.
    misbehaving()
        .build(&misbehaving_config(json!({})), options)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_plugin_is_an_error_on_that_call_and_marks_the_instance_failed() {
    let config =
        misbehaving_config(json!({ "panic_in": ["start", "handle_http", "deliver", "shutdown"] }));
    let channel = misbehaving()
        .build(&config, CallOptions::default())
        .unwrap();
    let readiness = Readiness::default();
    channel.health().attach(readiness.clone(), "channel:bad");
    assert!(readiness.snapshot().0, "ready until something panics");

    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context("bad");
    let start = channel.start(ctx.clone()).await.unwrap_err();
    assert!(
        start
            .to_string()
            .contains("the plugin panicked in start: the misbehaving fixture panics in start"),
        "{start}"
    );
    let resp = channel
        .handle_http(
            http::Request::post("/anything").body(Bytes::new()).unwrap(),
            &ctx,
        )
        .await;
    assert_eq!(resp.status(), 500);
    let body: serde_json::Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(body["error"]["code"], "channel_failed");
    let to = ConsumerAddress::new("bad", "c");
    let err = channel
        .deliver(&to, &OutboundEvent::new("o", Outbound::text("x")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DeliveryError::Retryable { reason, .. } if reason.contains("panicked in deliver")),
        "{err}"
    );
    channel.shutdown().await;

    let (ready, components) = readiness.snapshot();
    assert!(!ready);
    assert!(
        components["channel:bad"].detail.contains("panicked"),
        "{components:?}"
    );
    assert!(channel.health().failure().is_some());
    // The host is still here, and so is the instance: it keeps answering with errors.
    let again = channel
        .deliver(&to, &OutboundEvent::new("o2", Outbound::text("y")))
        .await;
    assert!(again.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_never_answers_gets_a_host_timeout() {
    let config = misbehaving_config(json!({ "hang_in": ["handle_http", "deliver", "shutdown"] }));
    let options = CallOptions {
        timeout: Duration::from_secs(1),
    };
    let channel = misbehaving().build(&config, options).unwrap();
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context("bad");
    let err = channel
        .deliver(
            &ConsumerAddress::new("bad", "c"),
            &OutboundEvent::new("o", Outbound::text("x")),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err,
        DeliveryError::retryable("the plugin did not answer deliver within 1s")
    );
    let resp = channel
        .handle_http(http::Request::post("/").body(Bytes::new()).unwrap(), &ctx)
        .await;
    assert_eq!(resp.status(), 503);
    channel.shutdown().await; // returns after the timeout, logging it
    assert!(
        channel.health().failure().is_none(),
        "silence is not a panic"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_crosses_the_boundary_both_ways() {
    let channel = misbehaving()
        .build(&misbehaving_config(json!({})), CallOptions::default())
        .unwrap();
    let sink = RecordingSink::new();
    let (ctx, _stop) = sink.context("bad");
    for expected in ["1", "2", "3"] {
        let resp = channel
            .handle_http(
                http::Request::post("/count").body(Bytes::new()).unwrap(),
                &ctx,
            )
            .await;
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.body(), expected.as_bytes());
    }
    assert_eq!(sink.state("bad", "count").as_deref(), Some("3"));
}

// ---------------------------------------------------------------------------------------------
// Through the configuration and the binary.

#[test]
fn dynamic_kinds_are_built_from_the_config_file() {
    let path = library("switchboard-plugin-dynamic-example");
    let (_dir, _file, loaded) = load_toml(&format!(
        "[liveperson]\nmode = \"simulator\"\n[plugins]\npaths = [\"{p}\", \"{p}\"]\n[channels.relay-1]\nkind = \"relay\"\ntoken = \"t\"\ndeliver_url = \"http://127.0.0.1:9/\"\n",
        p = path.display()
    ));
    let loaded = loaded.unwrap();
    assert_eq!(
        loaded.plugins().len(),
        1,
        "the same library listed twice loads once"
    );
    let channels = switchboard::check(&loaded).unwrap();
    let inst = channels.get("relay-1").unwrap();
    assert_eq!(inst.kind, "relay");
    assert!(inst.health.is_some());

    let (_dir, _file, loaded) = load_toml(&format!(
        "[liveperson]\nmode = \"simulator\"\n[plugins]\npaths = [\"{}\"]\n[channels.x]\nkind = \"nope\"\n",
        path.display()
    ));
    let problems = loaded.unwrap_err().0;
    assert!(
        problems[0].message.contains("relay"),
        "{}",
        problems[0].message
    );
}

#[test]
fn switchboard_channels_lists_static_and_dynamic_kinds_with_their_origin() {
    let path = library("switchboard-plugin-dynamic-example");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!("[plugins]\npaths = [\"{}\"]\n", path.display()),
    )
    .unwrap();
    let out = switchboard()
        .args(["channels", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let line = |kind: &str| {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(kind))
            .unwrap_or_else(|| panic!("no `{kind}` in:\n{text}"))
            .to_owned()
    };
    for kind in switchboard::BUILTIN_KINDS {
        assert!(line(kind).contains("built in"), "{text}");
    }
    let relay = line("relay");
    assert!(
        relay.contains(&format!("library {}", path.display())),
        "{text}"
    );
    assert!(text.contains("switchboard-core"), "{text}");

    // Without a config, only what is linked.
    let out = switchboard().arg("channels").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("sms") && !text.contains("relay"), "{text}");
}

#[test]
fn switchboard_check_refuses_a_wrong_version_naming_the_file_and_both_versions() {
    let path = library("switchboard-fixture-wrong-core");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("switchboard.toml");
    std::fs::write(
        &config,
        format!("[plugins]\npaths = [\"{}\"]\n", path.display()),
    )
    .unwrap();
    let out = switchboard()
        .args(["check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&config.display().to_string()), "{err}");
    assert!(err.contains("plugins.paths.0"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("switchboard-core 99.0.0"), "{err}");
    assert!(
        err.contains(&format!(
            "switchboard-core {}",
            switchboard_core::CORE_VERSION
        )),
        "{err}"
    );
}

#[tokio::test]
async fn plugin_logs_and_panics_reach_the_host_logs_with_their_instance() {
    let logs = switchboard_testkit::LogCapture::start();
    let channel = misbehaving()
        .build(
            &misbehaving_config(json!({ "panic_in": ["deliver"] })),
            CallOptions::default(),
        )
        .unwrap();
    let err = channel
        .deliver(
            &ConsumerAddress::new("bad", "c"),
            &OutboundEvent::new("o", Outbound::text("x")),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("panicked in deliver"), "{err}");
    let text = logs.text();
    let path = library("switchboard-fixture-misbehaving")
        .display()
        .to_string();
    // The plugin's own `tracing` event, through the host's log callback.
    let warned = text
        .lines()
        .find(|l| l.contains("misbehaving as told"))
        .unwrap_or_else(|| panic!("no forwarded event in:\n{text}"));
    assert!(warned.contains("WARN"), "{warned}");
    assert!(warned.contains("instance=bad"), "{warned}");
    assert!(warned.contains(&path), "{warned}");
    assert!(warned.contains("call=deliver"), "{warned}");
    // Its panic hook, and the host's own account of the failed call.
    assert!(
        text.contains("the plugin panicked at") && text.contains("panics in deliver"),
        "{text}"
    );
    assert!(text.contains("the instance is marked failed"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// The guide.

#[test]
fn the_guide_quotes_only_code_the_workspace_compiles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
    let guide = read("docs/writing-a-channel.md");
    // The guide's crate is `acme-relay`; the workspace's is the dynamic example. The test file
    // names its package, so the guide's copy differs by that name and nothing else.
    let as_in_the_guide = |source: String| {
        source.replace(
            "plugin_library(\"switchboard-plugin-dynamic-example\")",
            "plugin_library(\"acme-relay\")",
        )
    };
    let sources: Vec<String> = [
        "plugins/dynamic-example/src/lib.rs",
        "plugins/dynamic-example/tests/conformance.rs",
        "examples/01-brand-binary/src/main.rs",
    ]
    .iter()
    .map(|p| as_in_the_guide(read(p)))
    .collect();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in guide.lines() {
        match (&mut current, line) {
            (None, "```rust") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), line) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert!(blocks.len() >= 3, "{} Rust blocks", blocks.len());
    for block in &blocks {
        assert!(
            sources.iter().any(|s| s.contains(block.as_str())),
            "this block of docs/writing-a-channel.md is not in the workspace's sources:\n{block}"
        );
    }
    // The channel (section 2) and its test (section 4) are shown whole: a plugin author copies
    // them as files.
    for whole in &sources[..2] {
        assert!(
            blocks.iter().any(|b| b == whole),
            "docs/writing-a-channel.md must show this file whole:\n{whole}"
        );
    }
    // "94 lines of code": the channel, without comments and blank lines.
    let code = sources[0]
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with("//"))
        .count();
    assert!(guide.contains(&format!("{code} lines of code")), "{code}");
    assert!(code < 100, "the example channel has {code} lines of code");
}
