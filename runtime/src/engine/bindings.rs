//! The `vigil:detector` worlds this host serves, generated from the WIT:
//! 0.2 (`wit/detector.wit`) and 0.1 (`wit/v0.1/detector.wit`).

// Exports are async so a plugin blocked in a host call (a WASI sleep or
// poll) can be cut off at its deadline by dropping the call's future;
// epoch interruption covers guest code. Host imports stay synchronous.

/// `vigil:detector@0.1.x`: a record per request.
pub mod v0_1 {
    wasmtime::component::bindgen!({ world: "detector", path: "../wit/v0.1", exports: { default: async } });
}

/// `vigil:detector@0.2.x`: columnar batches, host-computed text features.
pub mod v0_2 {
    // A call whose columns differ in length breaks the contract: it traps.
    wasmtime::component::bindgen!({
        world: "detector",
        path: "../wit",
        exports: { default: async },
        imports: {
            "vigil:detector/host.counter-add": trappable,
            "vigil:detector/host.sets-update": trappable,
        },
    });
}
