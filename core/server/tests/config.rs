//! Configuration errors name the key and the file.

use crate::support::load_toml;

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
    let (_dir, path, loaded) =
        load_toml("[channels.web]\nkind = \"test-echo\"\ntoken = \"t\"\ngreting = \"hi\"\n");
    let loaded = loaded.expect("the runtime's own keys are valid");
    let err = switchboard::check(&loaded).unwrap_err();
    let p = &err.0[0];
    assert_eq!(p.key, "channels.web.greting");
    assert_eq!(p.origin, path.display().to_string());
    assert!(p.message.contains("unknown field"), "{p}");
}

#[test]
fn a_missing_channel_key_is_named() {
    let (_dir, _path, loaded) = load_toml("[channels.web]\nkind = \"test-echo\"\n");
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
    let (_dir, _path, loaded) = load_toml("[channels.web]\nkind = \"nope\"\n");
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
