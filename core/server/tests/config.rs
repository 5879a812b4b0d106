//! Configuration errors name the key and the file; keys a mode ignores are errors; secrets
//! come from files; a store URL never shows its password.

use crate::support::load_toml;

/// `[liveperson]` of a simulator-mode deployment (what channel tables now need).
const SIMULATOR: &str = "[liveperson]\nmode = \"simulator\"\n";

#[test]
fn a_misspelt_key_names_the_key_and_the_file() {
    let (_dir, path, loaded) =
        load_toml("[server]\nlisten = \"127.0.0.1:0\"\npublic_ur = \"https://x\"\n");
    let err = loaded.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("server.public_ur"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
}

#[test]
fn a_channel_key_error_names_the_key_and_the_file() {
    let (_dir, path, loaded) = load_toml(&format!(
        "{SIMULATOR}[channels.web]\nkind = \"test-echo\"\ntoken = \"t\"\ngreting = \"hi\"\n"
    ));
    let loaded = loaded.expect("the runtime's own keys are valid");
    let err = switchboard::check(&loaded).unwrap_err();
    let p = &err.0[0];
    assert_eq!(p.key, "channels.web.greting");
    assert_eq!(p.origin, path.display().to_string());
    assert!(p.message.contains("unknown field"), "{p}");
}

#[test]
fn a_missing_channel_key_is_named() {
    let (_dir, _path, loaded) = load_toml(&format!(
        "{SIMULATOR}[channels.web]\nkind = \"test-echo\"\n"
    ));
    let err = switchboard::check(&loaded.unwrap()).unwrap_err();
    assert_eq!(err.0[0].key, "channels.web.token");
    assert!(
        err.0[0].message.contains("missing field `token`"),
        "{}",
        err.0[0]
    );
}

#[test]
fn disabled_channels_are_not_built() {
    let (_dir, _path, loaded) =
        load_toml("[channels.web]\nkind = \"test-echo\"\nenabled = false\n");
    let set = switchboard::check(&loaded.unwrap()).unwrap();
    assert!(set.is_empty());
}

#[test]
fn unknown_kinds_list_the_registered_ones() {
    let (_dir, _path, loaded) = load_toml(&format!("{SIMULATOR}[channels.web]\nkind = \"nope\"\n"));
    let err = loaded.unwrap_err();
    assert_eq!(err.0[0].key, "channels.web.kind");
    assert!(err.0[0].message.contains("test-echo"), "{}", err.0[0]);
}

#[test]
fn the_example_config_is_valid() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/switchboard.toml");
    let loaded =
        switchboard::config::LoadedConfig::load(Some(&path)).expect("example config loads");
    switchboard::check(&loaded).expect("example config checks");
}

#[test]
fn store_sync_with_postgres_is_an_error_naming_the_key() {
    let (_dir, path, loaded) =
        load_toml("[store]\nurl = \"postgres://sb@db/sb\"\nsync = \"normal\"\n");
    let text = loaded.unwrap_err().to_string();
    assert!(text.contains("store.sync"), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    let (_dir, _path, loaded) = load_toml("[store]\nsync = \"sometimes\"\n");
    let text = loaded.unwrap_err().to_string();
    assert!(text.contains("store.sync"), "{text}");
    let (_dir, _path, loaded) = load_toml("[store]\nsync = \"normal\"\n");
    assert!(loaded.is_ok(), "SQLite takes store.sync");
}

#[test]
fn keys_the_liveperson_mode_ignores_are_errors_naming_key_file_and_mode() {
    // Credentials for a real account, but no mode: the connector would have run against the
    // embedded simulator and refused every real webhook as forged.
    let (_dir, path, loaded) = load_toml(
        "[liveperson]\naccount_id = \"12345678\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
         domain_api = \"https://api.liveperson.net\"\n",
    );
    let err = loaded.unwrap_err();
    let keys: Vec<_> = err.0.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "liveperson.account_id",
            "liveperson.client_id",
            "liveperson.client_secret",
            "liveperson.domain_api"
        ],
        "{err}"
    );
    for p in &err.0 {
        assert_eq!(p.origin, path.display().to_string());
        assert!(p.message.contains("`simulator` mode"), "{p}");
        assert!(p.message.contains("liveperson.mode"), "{p}");
    }
    // The same with the mode said.
    let (_dir, _path, loaded) =
        load_toml("[liveperson]\nmode = \"simulator\"\nallow_insecure_http = false\n");
    let err = loaded.unwrap_err();
    assert_eq!(err.0[0].key, "liveperson.allow_insecure_http", "{err}");
    // Simulator settings in live mode.
    let (_dir, _path, loaded) = load_toml(
        "[liveperson]\nmode = \"live\"\naccount_id = \"1\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
         simulator_listen = \"127.0.0.1:8081\"\n",
    );
    let err = loaded.unwrap_err();
    assert_eq!(err.0.len(), 1, "{err}");
    assert_eq!(err.0[0].key, "liveperson.simulator_listen");
    assert!(err.0[0].message.contains("`live` mode"), "{err}");
}

#[test]
fn an_ignored_key_from_the_environment_names_the_environment() {
    let figment = figment::Figment::from(figment::providers::Serialized::default(
        "liveperson.client_id",
        "from-the-environment",
    ));
    let err = switchboard::config::LoadedConfig::from_figment(figment, None).unwrap_err();
    assert_eq!(err.0[0].key, "liveperson.client_id");
    assert!(!err.0[0].origin.is_empty());
}

#[test]
fn channels_need_an_explicit_liveperson_mode() {
    let (_dir, path, loaded) = load_toml("[channels.web]\nkind = \"webchat\"\n");
    let err = loaded.unwrap_err();
    assert_eq!(err.0[0].key, "liveperson.mode", "{err}");
    assert_eq!(err.0[0].origin, path.display().to_string());
    assert!(err.0[0].message.contains("switchboard demo"), "{err}");
    // A disabled channel runs nothing: no mode needed.
    let (_dir, _path, loaded) = load_toml("[channels.web]\nkind = \"webchat\"\nenabled = false\n");
    loaded.expect("nothing runs");
    let (_dir, _path, loaded) =
        load_toml(&format!("{SIMULATOR}[channels.web]\nkind = \"webchat\"\n"));
    switchboard::check(&loaded.unwrap()).expect("an explicit simulator mode");
}

/// Every secret can come from a file (trimmed), as container secrets are mounted:
/// LivePerson's client secret, the store URL, and any key of a channel table.
#[test]
fn secrets_are_read_from_files() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, content: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    };
    let client = write("client", "client-secret-from-a-file\n");
    let url = write("url", "  sqlite://from-a-file.db \n");
    let token = write("token", "channel-token-from-a-file\n");
    let (_d, _p, loaded) = load_toml(&format!(
        "[liveperson]\nmode = \"live\"\naccount_id = \"1\"\nclient_id = \"c\"\n\
         client_secret_file = \"{client}\"\n[store]\nurl_file = \"{url}\"\n\
         [channels.web]\nkind = \"test-echo\"\ntoken_file = \"{token}\"\n"
    ));
    let loaded = loaded.unwrap();
    let config = &loaded.config;
    assert_eq!(
        config.liveperson.client_secret.as_ref().unwrap().expose(),
        "client-secret-from-a-file"
    );
    assert_eq!(config.store.url, "sqlite://from-a-file.db");
    let web = &config.channels["web"].settings;
    assert_eq!(web["token"], "channel-token-from-a-file");
    assert!(
        !web.contains_key("token_file"),
        "the channel never sees `_file`"
    );
    switchboard::check(&loaded).expect("the channel builds with the token from the file");
}

#[test]
fn a_secret_and_its_file_together_or_a_file_that_cannot_be_read_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "x\n").unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, " \n").unwrap();
    let missing = dir.path().join("missing");
    let (_d, path, loaded) = load_toml(&format!(
        "[liveperson]\nmode = \"live\"\naccount_id = \"1\"\nclient_id = \"c\"\nclient_secret = \"s\"\n\
         client_secret_file = \"{}\"\n[store]\nurl_file = \"{}\"\n\
         [channels.web]\nkind = \"test-echo\"\ntoken_file = \"{}\"\n\
         [channels.web2]\nkind = \"test-echo\"\ntoken = \"t\"\ntoken_file = \"{}\"\n",
        secret.display(),
        missing.display(),
        empty.display(),
        secret.display(),
    ));
    let err = loaded.unwrap_err();
    let by_key = |key: &str| {
        err.0
            .iter()
            .find(|p| p.key == key)
            .unwrap_or_else(|| panic!("no problem with `{key}`: {err}"))
    };
    let both = by_key("liveperson.client_secret_file");
    assert!(both.message.contains("not both"), "{both}");
    assert_eq!(both.origin, path.display().to_string());
    let unreadable = by_key("store.url_file");
    assert!(
        unreadable.message.contains(&missing.display().to_string()),
        "{unreadable}"
    );
    assert!(
        by_key("channels.web.token_file")
            .message
            .contains("is empty")
    );
    assert!(
        by_key("channels.web2.token_file")
            .message
            .contains("not both")
    );
    assert!(!err.to_string().contains("\nx\n"));
}

#[test]
fn a_bad_store_url_is_named_and_never_shows_its_password() {
    for url in [
        "postgres://sb:Pa55-distinctive@127.0.0.1:notaport/x",
        "postgress://sb:Pa55-distinctive@db/x",
        "postgres//sb:Pa55-distinctive@db/x",
        "sb:Pa55-distinctive@db/x",
    ] {
        let (_d, path, loaded) = load_toml(&format!("[store]\nurl = \"{url}\"\n"));
        let err = loaded.unwrap_err();
        assert_eq!(err.0[0].key, "store.url", "{url}: {err}");
        assert_eq!(err.0[0].origin, path.display().to_string());
        assert!(!err.to_string().contains("Pa55"), "{err}");
    }
    let (_d, _p, loaded) = load_toml("[store]\nurl = \"postgres://sb:pw@db.internal:5432/x\"\n");
    let loaded = loaded.expect("a good URL");
    assert_eq!(
        loaded.config.store.display_url(),
        "postgres://sb:***@db.internal:5432/x"
    );
}

/// A web chat's idle poll must end before the request timeout answers it 503.
#[test]
fn a_long_poll_that_outlasts_the_request_timeout_is_an_error() {
    let (_d, _p, loaded) = load_toml(&format!(
        "[server]\nrequest_timeout_secs = 10\n{SIMULATOR}[channels.web]\nkind = \"webchat\"\npoll_secs = 10\n"
    ));
    let err = loaded.unwrap_err();
    assert_eq!(err.0[0].key, "channels.web.poll_secs", "{err}");
    assert!(
        err.0[0].message.contains("server.request_timeout_secs"),
        "{err}"
    );
    // The default poll (25 s) against a short timeout names the timeout.
    let (_d, _p, loaded) = load_toml(&format!(
        "[server]\nrequest_timeout_secs = 20\n{SIMULATOR}[channels.web]\nkind = \"webchat\"\n"
    ));
    assert_eq!(loaded.unwrap_err().0[0].key, "server.request_timeout_secs");
    let (_d, _p, loaded) = load_toml(&format!(
        "[server]\nrequest_timeout_secs = 20\n{SIMULATOR}[channels.web]\nkind = \"webchat\"\npoll_secs = 19\n"
    ));
    loaded.expect("a poll shorter than the timeout");
}

#[test]
fn the_admin_listener_is_another_address() {
    let (_d, _p, loaded) =
        load_toml("[server]\nlisten = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:8080\"\n");
    assert_eq!(loaded.unwrap_err().0[0].key, "server.admin_listen");
    let (_d, _p, loaded) = load_toml(
        "[server]\nadmin_listen = \"127.0.0.1:9090\"\ntrusted_proxies = [\"10.0.0.0/8\", \"::1/128\"]\n",
    );
    let loaded = loaded.unwrap();
    assert_eq!(loaded.config.server.trusted_proxies.len(), 2);
    let (_d, _p, loaded) = load_toml("[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n");
    assert_eq!(loaded.unwrap_err().0[0].key, "server.trusted_proxies.0");
}

#[test]
fn telemetry_errors_name_the_key_and_the_file_and_a_key_without_effect_is_one() {
    let (_dir, path, loaded) = load_toml("[telemetry]\nservice_name = \"sb-eu\"\n");
    let err = loaded.unwrap_err();
    assert_eq!(err.0[0].key, "telemetry.service_name", "{err}");
    assert_eq!(err.0[0].origin, path.display().to_string());
    assert!(err.0[0].message.contains("no effect"), "{err}");
    let (_dir, path, loaded) =
        load_toml("[telemetry]\notlp_endpoint = \"http://collector:4318/v1/traces\"\n");
    let err = loaded.unwrap_err();
    assert_eq!(err.0[0].key, "telemetry.otlp_endpoint", "{err}");
    assert_eq!(err.0[0].origin, path.display().to_string());
    let (_dir, _path, loaded) = load_toml("[telemetry]\nendpoint = \"http://collector:4318\"\n");
    assert_eq!(loaded.unwrap_err().0[0].key, "telemetry.endpoint");
    let (_dir, _path, loaded) = load_toml(
        "[telemetry]\notlp_endpoint = \"http://collector:4318\"\nservice_name = \"sb-eu\"\n",
    );
    let telemetry = loaded.unwrap().config.telemetry;
    assert_eq!(
        telemetry.export_settings().unwrap().unwrap().traces_url,
        "http://collector:4318/v1/traces"
    );
}

/// docs/configuration.md's key tables are generated from the configuration structs' doc
/// comments and defaults (`switchboard::config_reference`): a key added, removed or
/// re-documented in the code without regenerating the file fails here. Regenerate with
/// `UPDATE_DOCS=1 cargo nextest run -p switchboard -E 'test(the_configuration_reference_is_generated_from_the_code)'`.
#[test]
fn the_configuration_reference_is_generated_from_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    let doc = std::fs::read_to_string(&path).unwrap();
    let generated = switchboard::config_reference::update(&doc)
        .unwrap_or_else(|e| panic!("docs/configuration.md: {e}"));
    if generated == doc {
        return;
    }
    if std::env::var_os("UPDATE_DOCS").is_some_and(|v| v == "1") {
        std::fs::write(&path, &generated).unwrap();
        return;
    }
    let stale: Vec<_> = doc
        .lines()
        .zip(generated.lines())
        .filter(|(old, new)| old != new)
        .take(3)
        .collect();
    panic!(
        "docs/configuration.md is stale (first differences, file then code: {stale:#?}); \
         regenerate it with `UPDATE_DOCS=1 cargo nextest run -p switchboard -E \
         'test(the_configuration_reference_is_generated_from_the_code)'`"
    );
}
