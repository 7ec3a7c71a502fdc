//! A perfectly good component of the wrong world.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

wit_bindgen::generate!({ world: "other", path: "wit" });

struct Other;

impl Guest for Other {
    fn score(batch: Vec<String>) -> Vec<f32> {
        batch.iter().map(|_| 0.0).collect()
    }
}

#[cfg(target_arch = "wasm32")]
export!(Other);
