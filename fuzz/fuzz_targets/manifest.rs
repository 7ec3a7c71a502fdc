//! The plugin manifest parser and the host config parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vigil_runtime::fuzzing::manifest(data);
});
