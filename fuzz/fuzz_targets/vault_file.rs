#![no_main]

use std::sync::OnceLock;

/// One scratch folder for the whole run: each input is written there and opened.
static SCRATCH: OnceLock<tempfile::TempDir> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let scratch = SCRATCH.get_or_init(|| tempfile::tempdir().expect("a scratch folder"));
    facevault::fuzzing::vault_file(data, scratch.path()).expect("the scratch folder is writable");
});
