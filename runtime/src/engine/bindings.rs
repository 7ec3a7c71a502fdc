//! The `vigil:detector` world, generated from `wit/detector.wit`.

// Exports are async so a plugin blocked in a host call (a WASI sleep or
// poll) can be cut off at its deadline by dropping the call's future;
// epoch interruption covers guest code. Host imports stay synchronous.
wasmtime::component::bindgen!({ world: "detector", path: "../wit", exports: { default: async } });
