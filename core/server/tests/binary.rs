//! The `switchboard` binary as a user runs it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::switchboard_command as switchboard;

fn example() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/switchboard.toml")
}

#[test]
fn check_accepts_the_example_config() {
    let out = switchboard()
        .args(["check", "--config"])
        .arg(example())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
}

#[test]
fn check_names_a_misspelt_key_and_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[liveperson]\nmode = \"simulator\"\nacount_id = \"1\"\n",
    )
    .unwrap();
    let out = switchboard()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("liveperson.acount_id"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
}

#[test]
fn environment_overrides_apply_and_their_errors_name_the_environment() {
    let out = switchboard()
        .args(["check", "--config"])
        .arg(example())
        .env(
            "SWITCHBOARD_STORE__URL",
            "postgres://db.internal/switchboard",
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("postgres://db.internal/switchboard"));

    let out = switchboard()
        .args(["check", "--config"])
        .arg(example())
        .env("SWITCHBOARD_SERVER__LISTN", "1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.listn"), "{err}");
    assert!(err.contains("environment"), "{err}");
}

#[test]
fn secrets_from_the_environment_never_reach_the_output() {
    let out = switchboard()
        .args(["check", "--config"])
        .arg(example())
        .env(
            "SWITCHBOARD_LIVEPERSON__CLIENT_SECRET",
            "very-secret-value-123",
        )
        .env("SWITCHBOARD_LIVEPERSON__MODE", "live")
        .output()
        .unwrap();
    // Live mode without account/client ids is an error; the secret must not appear in it.
    assert!(!out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.contains("liveperson.account_id"), "{all}");
    assert!(!all.contains("very-secret-value-123"), "{all}");
}

#[test]
fn a_missing_config_file_is_an_error() {
    let out = switchboard()
        .args(["check", "--config", "/nonexistent/switchboard.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/switchboard.toml"));
}

#[test]
fn channels_and_version_and_help() {
    let out = switchboard().arg("channels").output().unwrap();
    assert!(out.status.success());
    let out = switchboard().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("switchboard "));
    let out = switchboard().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["run", "check", "channels"] {
        assert!(help.contains(cmd), "{help}");
    }
}

#[test]
fn run_serves_and_stops_cleanly_on_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.toml");
    std::fs::write(&path, format!("[server]\nlisten = \"127.0.0.1:{port}\"\n")).unwrap();
    let child = switchboard()
        .args(["run", "--config"])
        .arg(&path)
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::{Read, Write};
            s.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
                .unwrap();
            let mut buf = String::new();
            let _ = s.read_to_string(&mut buf);
            if buf.starts_with("HTTP/1.1 200") {
                break;
            }
        }
        assert!(Instant::now() < deadline, "switchboard did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("switchboard stopped"));
}

#[test]
fn manifest_follows_the_install_template_and_refuses_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.toml");
    std::fs::write(
        &path,
        "[server]\npublic_url = \"https://sb.example.com/\"\n[liveperson]\nclient_name = \"Acme SMS\"\n\
         [liveperson.manifest]\nmax_retries = 3\nretention_time = 3600\n",
    )
    .unwrap();
    let out = switchboard()
        .args(["manifest", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["client_name"], "Acme SMS");
    assert_eq!(
        manifest["grant_types"],
        serde_json::json!(["client_credentials"])
    );
    assert_eq!(manifest["scope"], "msg.consumer");
    let hooks = &manifest["capabilities"]["webhooks"];
    for kind in switchboard_liveperson::WEBHOOK_TYPES {
        assert_eq!(
            hooks[kind]["endpoint"],
            "https://sb.example.com/webhooks/liveperson"
        );
        assert_eq!(hooks[kind]["max_retries"], 3);
    }
    assert_eq!(hooks["retry"]["retention_time"], 3600);
    for key in [
        "design_engagement",
        "design_window",
        "entry_point",
        "visitor_behavior",
        "target_audience",
        "goal",
        "consumer_identity",
        "language_selection",
    ] {
        assert!(
            manifest["capabilities"]["engagement"].get(key).is_some(),
            "engagement.{key}"
        );
    }
    // The simulator installs it as LivePerson would.
    switchboard_lp_sim::SimConfig::default()
        .with_manifest(&manifest.to_string())
        .expect("the simulator accepts the manifest");

    std::fs::write(&path, "[server]\npublic_url = \"http://sb.example.com\"\n").unwrap();
    let out = switchboard()
        .args(["manifest", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server.public_url") && err.contains("https"),
        "{err}"
    );
}

#[test]
fn sms_kannel_config_prints_the_groups_for_this_deployment_or_names_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sms.toml");
    std::fs::write(
        &path,
        "[server]\npublic_url = \"https://cx.example.com\"\n[liveperson]\nmode = \"simulator\"\n\
         [channels.sms-main]\nkind = \"sms\"\ngateway = \"kannel\"\nfrom = \"+15550001111\"\n\
         callback_token = \"cb-token-0123456789abcdef\"\n\
         sendsms_url = \"http://127.0.0.1:13013/cgi-bin/sendsms\"\n\
         username = \"switchboard\"\npassword = \"pw-0123\"\n",
    )
    .unwrap();
    let out = switchboard()
        .args(["sms", "kannel-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    // The callback base defaults to server.public_url + /channels/<instance>.
    assert!(
        text.contains(
            "get-url = \"https://cx.example.com/channels/sms-main/mo?token=cb-token-0123456789abcdef&"
        ),
        "{text}"
    );
    assert!(text.contains("max-messages = 0"), "{text}");
    assert!(text.contains("http-request-retry = 90"), "{text}");
    assert!(text.contains("sendsms-port = 13013"), "{text}");

    // A config without an SMS channel: the problem is named, exit code 2 (a configuration
    // error).
    let empty = dir.path().join("empty.toml");
    std::fs::write(&empty, "[server]\n").unwrap();
    let out = switchboard()
        .args(["sms", "kannel-config", "--config"])
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no enabled `sms` channel"), "{err}");
}

/// `--help` opens with what Switchboard is (not the crate's description), wraps at the
/// terminal's width (`COLUMNS` when stdout is not a terminal) and ends with the exit statuses.
#[test]
fn help_speaks_to_users_and_wraps_at_the_terminal_width() {
    for columns in [60usize, 100] {
        let out = switchboard()
            .arg("--help")
            .env("COLUMNS", columns.to_string())
            .output()
            .unwrap();
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let first = text.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("Switchboard connects messaging channels"),
            "{text}"
        );
        assert!(!text.contains("runtime and its"), "{text}");
        for line in text.lines() {
            assert!(
                line.chars().count() <= columns,
                "wider than {columns}: `{line}`"
            );
        }
        assert!(text.contains("Exit status: 0"), "{text}");
    }
}

/// `check` shows values as an operator writes them, never Rust's `Debug` (`Some(…)`, quotes
/// around paths, struct names), for a configuration with a channel, a store and a plugin.
#[test]
fn check_prints_no_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("switchboard.toml");
    std::fs::write(
        &path,
        "[liveperson]\nmode = \"simulator\"\n[store]\nurl = \"postgres://sb:pw@db/x\"\n\
         [channels.web]\nkind = \"webchat\"\n",
    )
    .unwrap();
    let out = switchboard()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("channel `web` (webchat)"), "{stdout}");
    for debug in ["Some(", "None", "\\\"", "{ ", "Config", "Secret("] {
        assert!(!stdout.contains(debug), "`{debug}` in: {stdout}");
        assert!(!stderr.contains(debug), "`{debug}` in: {stderr}");
    }
}

/// Exit statuses: 2 for everything refused before running (a bad key, a bad value, a command
/// line clap cannot parse, a file named on it that cannot be read), 1 for what failed while
/// running (here: a port another process holds, a dead letter that is not there).
#[test]
fn exit_codes_tell_a_configuration_error_from_a_runtime_failure() {
    let dir = tempfile::tempdir().unwrap();
    let status = |args: &[&str]| {
        let out = switchboard()
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[server]\nlisten = \"nowhere\"\n").unwrap();
    let bad = bad.to_str().unwrap();
    for args in [
        &["check", "--config", bad][..],
        &["run", "--config", bad],
        &["manifest", "--config", bad],
        &["check", "--config", "/nonexistent/switchboard.toml"],
        &[
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--manifest",
            "/nonexistent/manifest.json",
        ],
        &["no-such-command"],
        &["check"],
    ] {
        let (code, err) = status(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
    }

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[store]\nurl = \"sqlite://{}\"\n",
            dir.path().join("sb.db").display()
        ),
    )
    .unwrap();
    let good = good.to_str().unwrap();
    let (code, err) = status(&["run", "--config", good]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("cannot listen"), "{err}");
    let (code, err) = status(&["deadletters", "retry", "--config", good, "424242"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no dead letter with id 424242"), "{err}");
    drop(taken);
}
