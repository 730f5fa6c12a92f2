//! The bundle test vector in tests/testdata/bundle-v1: this build opens it to exactly the recorded
//! contents, through the library and through `facevault open-bundle`, and refuses it under any
//! other key.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use facevault::{open_bundle, RecipientSecretKey};

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testdata/bundle-v1");

fn hex32(name: &str) -> [u8; 32] {
    let text = std::fs::read_to_string(format!("{DIR}/{name}")).unwrap();
    let text = text.trim();
    let bytes: Vec<u8> = (0..64)
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(format!("{DIR}/contents.json")).unwrap()).unwrap()
}

#[test]
fn the_test_vector_opens_to_its_recorded_contents() {
    let secret = RecipientSecretKey::from_bytes(hex32("recipient-secret.hex"));
    assert_eq!(secret.public_key().0, hex32("recipient-public.hex"));
    let bundle = std::fs::read(format!("{DIR}/bundle.fvb")).unwrap();
    assert_eq!(&bundle[..9], b"FVBUNDLE\x01");
    let contents = open_bundle(&secret, &bundle).unwrap();
    assert_eq!(serde_json::to_value(&contents).unwrap(), expected());
    assert!(open_bundle(&RecipientSecretKey::from_bytes([7; 32]), &bundle).is_err());
}

#[test]
fn the_cli_opens_the_test_vector_too() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("recipient.key");
    std::fs::write(&secret, hex32("recipient-secret.hex")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let cli = CliVault {
        db: dir.path().join("unused.db"),
        key: dir.path().join("unused.key"),
        dir,
    };
    let bundle = format!("{DIR}/bundle.fvb");
    let run = cli.run(
        None,
        &[
            "open-bundle",
            "--in",
            &bundle,
            "--recipient-secret",
            secret.to_str().unwrap(),
        ],
    );
    assert_eq!(run.ok(), &expected());
}
