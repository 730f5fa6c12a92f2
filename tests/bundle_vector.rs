//! The bundle test vectors in tests/testdata/bundle-v1 (unsigned, format 1) and bundle-v2
//! (signed by its vault, format 2): this build opens each to exactly the recorded contents,
//! through the library and through `facevault open-bundle`, and refuses it under any other key;
//! the signed one only from the vault whose signing key it names.
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
    let mut expected = expected();
    expected["signed_by"] = serde_json::Value::Null;
    assert_eq!(run.ok(), &expected);
    // The old version opens, but cannot say where it comes from.
    let run = cli.run(
        None,
        &[
            "open-bundle",
            "--in",
            &bundle,
            "--recipient-secret",
            secret.to_str().unwrap(),
            "--expect-vault",
            &"ab".repeat(32),
        ],
    );
    assert!(run.fails(4, "bundle_rejected").contains("unsigned"));
}

const V2: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/testdata/bundle-v2");

fn v2_hex32(name: &str) -> [u8; 32] {
    let text = std::fs::read_to_string(format!("{V2}/{name}")).unwrap();
    let text = text.trim();
    let bytes: Vec<u8> = (0..64)
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect();
    bytes.try_into().unwrap()
}

/// Format 2: signed by the exporting vault, with its creation time in the signed header.
#[test]
fn the_signed_test_vector_opens_only_as_its_vault_s() {
    use facevault::{open_bundle_checked, BundleExpectations, BundleProblem, Error};
    let secret = RecipientSecretKey::from_bytes(v2_hex32("recipient-secret.hex"));
    let vault_key = v2_hex32("vault-signing-key.hex");
    let bundle = std::fs::read(format!("{V2}/bundle.fvb")).unwrap();
    assert_eq!(&bundle[..9], b"FVBUNDLE\x02");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{V2}/contents.json")).unwrap()).unwrap();
    let expect = BundleExpectations {
        vault_key: Some(vault_key),
        fresh_at: None,
    };
    let (contents, origin) = open_bundle_checked(&secret, &bundle, &expect).unwrap();
    assert_eq!(serde_json::to_value(&contents).unwrap(), expected);
    assert_eq!(origin.vault_key, Some(vault_key));
    assert_eq!(origin.created_at, Some(contents.created_at));
    let other_vault = BundleExpectations {
        vault_key: Some([9; 32]),
        fresh_at: None,
    };
    assert!(matches!(
        open_bundle_checked(&secret, &bundle, &other_vault),
        Err(Error::Bundle(BundleProblem::WrongSigner))
    ));
    // Made long before "now": stale for a recipient who wants it within a day.
    let fresh = BundleExpectations {
        vault_key: None,
        fresh_at: Some((contents.created_at + 2 * 86_400_000, 86_400_000)),
    };
    assert!(matches!(
        open_bundle_checked(&secret, &bundle, &fresh),
        Err(Error::Bundle(BundleProblem::Stale))
    ));
    for at in [9, 60, 100, bundle.len() / 2, bundle.len() - 1] {
        let mut flipped = bundle.clone();
        flipped[at] ^= 1;
        assert!(open_bundle(&secret, &flipped).is_err(), "flip at {at}");
    }
    assert!(open_bundle(&RecipientSecretKey::from_bytes([7; 32]), &bundle).is_err());
}

/// Makes tests/testdata/bundle-v2 (run once, with `--ignored`, when the format changes): a vault
/// of 4-value templates, two subjects with transfer consent (one a child, by her mother) and one
/// without, exported over the network to a fixed test recipient.
#[test]
#[ignore]
fn make_the_signed_test_vector() {
    use facevault::{
        Destination, Enrolment, ExportRequest, FixedKey, Guardian, Password, Vault, VaultConfig,
    };
    let dir = tempfile::tempdir().unwrap();
    let key = FixedKey::new([0x42; 32]);
    let password = Password::new("admin password");
    let vault = Vault::create(
        &dir.path().join("v.db"),
        &key,
        &VaultConfig::new(4, "demo-model"),
        "admin",
        &password,
    )
    .unwrap();
    let admin = vault.login("admin", &password).unwrap();
    vault.publish_notice(&admin, &notice("2026-12")).unwrap();
    govern(&vault, &admin);
    let adult = Enrolment {
        transfer_consent: true,
        ..Enrolment::with_consent("2026-12", "signed form 17 at reception")
    };
    let subject = vault.enrol(&admin, &adult, &[1.0, 1.0, 1.0, 1.0]).unwrap();
    vault
        .add_template(&admin, &subject, &[3.0, 4.0, 0.0, 0.0])
        .unwrap();
    let child = Enrolment {
        birth_date: Some(time::macros::date!(2018 - 05 - 01)),
        guardian: Some(Guardian {
            name: "Li Na".into(),
            relationship: "mother".into(),
        }),
        transfer_consent: true,
        ..Enrolment::with_consent("2026-12", "verbal, recorded")
    };
    vault.enrol(&admin, &child, &[0.0, 0.0, 0.0, 2.0]).unwrap();
    vault
        .enrol(
            &admin,
            &Enrolment::with_consent("2026-12", "signed form 18"),
            &[0.0, 1.0, 0.0, 0.0],
        )
        .unwrap();
    let recipient = RecipientSecretKey::from_bytes([0x24; 32]);
    vault
        .add_user(&admin, "exp", facevault::Role::Exporter, &password)
        .unwrap();
    let exporter = vault.login("exp", &password).unwrap();
    let signing_key = vault.stats(&admin).unwrap().signing_key;
    let bundle = vault
        .export(
            &exporter,
            &ExportRequest {
                destination: Destination::Network,
                recipient: recipient.public_key(),
                subjects: Vec::new(),
                model: None,
            },
        )
        .unwrap();
    let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    std::fs::create_dir_all(V2).unwrap();
    std::fs::write(format!("{V2}/bundle.fvb"), &bundle.bytes).unwrap();
    std::fs::write(
        format!("{V2}/recipient-secret.hex"),
        hex(recipient.expose_secret()) + "\n",
    )
    .unwrap();
    std::fs::write(
        format!("{V2}/recipient-public.hex"),
        hex(&recipient.public_key().0) + "\n",
    )
    .unwrap();
    std::fs::write(format!("{V2}/vault-signing-key.hex"), signing_key + "\n").unwrap();
    let contents = open_bundle(&recipient, &bundle.bytes).unwrap();
    std::fs::write(
        format!("{V2}/contents.json"),
        serde_json::to_string_pretty(&contents).unwrap() + "\n",
    )
    .unwrap();
}
