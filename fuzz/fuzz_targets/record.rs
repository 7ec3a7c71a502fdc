//! The request parser: one NDJSON line, and an HTTP body (array or NDJSON).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vigil_runtime::fuzzing::record(data);
});
