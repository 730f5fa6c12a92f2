#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| facevault::fuzzing::notice_json(data));
