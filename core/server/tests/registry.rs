//! Channel registration through `inventory`.

#[test]
fn every_built_in_kind_is_registered() {
    // Guards against the linker trap: a channel crate the binary does not reference is not
    // linked, and its registration disappears without an error.
    for kind in switchboard::BUILTIN_KINDS {
        assert!(
            switchboard_core::find_registration(kind).is_some(),
            "built-in kind `{kind}` is not registered"
        );
    }
}

#[test]
fn kinds_registered_by_linked_crates_are_found() {
    let reg =
        switchboard_core::find_registration("test-echo").expect("registered by this test binary");
    assert!(reg.description.contains("Test channel"));
    let kinds: Vec<_> = switchboard_core::registrations()
        .iter()
        .map(|r| r.kind)
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort();
    assert_eq!(kinds, sorted, "registrations are listed sorted");
}
