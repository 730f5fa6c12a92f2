#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| facevault::fuzzing::governance_json(data));
