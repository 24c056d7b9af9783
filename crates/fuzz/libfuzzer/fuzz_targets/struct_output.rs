#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| capture_fuzz::run("struct_output", data));
