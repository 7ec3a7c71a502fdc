//! The bundled detectors, compiled from `plugins/` by `build.rs`.

include!(concat!(env!("OUT_DIR"), "/bundled.rs"));
