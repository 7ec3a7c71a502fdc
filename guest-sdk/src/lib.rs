//! The vigil guest SDK: what a detection plugin depends on.
//!
//! A plugin is a struct implementing [`Detector`] and one line,
//! `vigil_sdk::export_detector!(MyDetector);`. Its logic is plain Rust that
//! takes a [`Host`]: in production that is the vigil host across the Wasm
//! boundary ([`WasmHost`]), in unit tests an in-memory [`testing::MemHost`]
//! with the same semantics.
//!
//! ```ignore
//! use vigil_sdk::{Batch, Detector, Host, NoConfig, Signal};
//!
//! struct LongPrompts;
//!
//! impl Detector for LongPrompts {
//!     const DESCRIPTION: &'static str = "flags very long prompts";
//!     type Config = NoConfig;
//!     fn new(_: NoConfig) -> Result<Self, String> {
//!         Ok(LongPrompts)
//!     }
//!     fn score(&mut self, batch: &Batch, _host: &mut dyn Host) -> Vec<Signal> {
//!         batch.iter().map(|r| {
//!             let long = r.prompt.as_deref().map_or(false, |p| p.len() > 10_000);
//!             if long { Signal::new(0.6, &["long-prompt"], "prompt over 10 kB") } else { Signal::none() }
//!         }).collect()
//!     }
//! }
//! vigil_sdk::export_detector!(LongPrompts);
//! ```

pub mod hash;
pub mod sets;
pub mod sketch;
pub mod text;
pub mod window;

#[cfg(feature = "guest")]
pub mod batch;
#[cfg(feature = "guest")]
pub mod batch_state;
#[cfg(feature = "guest")]
mod detector;
#[cfg(feature = "guest")]
pub mod request;
#[cfg(feature = "guest")]
pub mod testing;

#[cfg(feature = "guest")]
pub mod bindings {
    //! Generated from the SDK's own copy of `wit/detector.wit` (a test
    //! keeps the two equal), so the SDK builds outside this repository.
    wit_bindgen::generate!({
        world: "detector",
        path: "wit",
        pub_export_macro: true,
        export_macro_name: "__export_detector_world",
        default_bindings_module: "vigil_sdk::bindings",
    });
}

#[cfg(feature = "guest")]
pub use batch::Batch;
#[cfg(feature = "guest")]
pub use bindings::vigil::detector::types::{Field, Info, Level, StateEntry};
#[cfg(feature = "guest")]
pub use detector::{CounterOp, Detector, Host, NoConfig, SetOp, SetView, Signal, WasmHost, parse_config};
#[cfg(feature = "guest")]
pub use request::{Request, RequestExt};

#[cfg(feature = "guest")]
#[doc(hidden)]
pub mod __rt {
    pub use crate::detector::{Slot, run_init, run_score};
}

/// Exports a [`Detector`] as the plugin's component interface.
#[cfg(feature = "guest")]
#[macro_export]
macro_rules! export_detector {
    ($ty:ty) => {
        static __VIGIL_DETECTOR: $crate::__rt::Slot<$ty> = ::std::sync::Mutex::new(::std::option::Option::None);

        struct __VigilExport;

        impl $crate::bindings::Guest for __VigilExport {
            fn info() -> $crate::Info {
                $crate::Info {
                    version: ::std::string::String::from(env!("CARGO_PKG_VERSION")),
                    description: ::std::string::String::from(<$ty as $crate::Detector>::DESCRIPTION),
                }
            }
            fn init(config: ::std::string::String) -> ::std::result::Result<(), ::std::string::String> {
                $crate::__rt::run_init::<$ty>(&__VIGIL_DETECTOR, &config)
            }
            fn score(
                batch: $crate::bindings::vigil::detector::types::Batch,
            ) -> ::std::result::Result<$crate::bindings::vigil::detector::types::Signals, ::std::string::String> {
                $crate::__rt::run_score::<$ty>(&__VIGIL_DETECTOR, batch)
            }
        }

        $crate::bindings::__export_detector_world!(__VigilExport with_types_in $crate::bindings);
    };
}
