//! WebAssembly edge: the core's encoder exposed to JavaScript.
//!
//! JS does the fetching (it owns the network, caching and progress); Rust receives bytes,
//! verifies them and encodes. Every failure crosses into JS as an `Error` whose message
//! is the core's [`crate::Error`] text, so it names the file or input at fault.

use js_sys::Float32Array;
use wasm_bindgen::prelude::*;

use crate::bundle::ModelBundle;
use crate::encode::Encoder;

extern "C" {
    /// Static constructors emitted by wasm-ld. tract registers its kernels in them, and
    /// wasm-bindgen's generated start-up does not run them for us.
    fn __wasm_call_ctors();
}

/// Runs once when the module is instantiated.
#[wasm_bindgen(start)]
pub fn start() {
    // SAFETY: called exactly once, before any other export can run (wasm-bindgen calls the
    // start function during instantiation), and no Rust code has touched statics yet.
    unsafe { __wasm_call_ctors() };
    console_error_panic_hook::set_once();
}

fn js_error(e: crate::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// A verified model bundle ready to embed text in the browser.
#[wasm_bindgen]
pub struct QueryEncoder {
    inner: Encoder,
}

#[wasm_bindgen]
impl QueryEncoder {
    /// Verifies the bundle files (sha256, sizes, descriptor) and builds the tract plan.
    #[wasm_bindgen(constructor)]
    pub fn new(
        manifest_json: &[u8],
        model_onnx: Vec<u8>,
        tokenizer_json: Vec<u8>,
    ) -> Result<QueryEncoder, JsError> {
        let bundle =
            ModelBundle::from_bytes(manifest_json, model_onnx, tokenizer_json).map_err(js_error)?;
        let inner = Encoder::new(&bundle).map_err(js_error)?;
        Ok(QueryEncoder { inner })
    }

    /// Embeds a query.
    pub fn encode(&self, query: &str) -> Result<Float32Array, JsError> {
        let v = self.inner.encode_query(query).map_err(js_error)?;
        Ok(Float32Array::from(v.as_slice()))
    }

    /// Embeds passages as one batch; returns `passages.length * dims` floats, row-major.
    #[wasm_bindgen(js_name = encodePassages)]
    pub fn encode_passages(&self, passages: Vec<String>) -> Result<Float32Array, JsError> {
        let texts: Vec<&str> = passages.iter().map(String::as_str).collect();
        let vectors = self.inner.encode_passages(&texts).map_err(js_error)?;
        Ok(Float32Array::from(vectors.concat().as_slice()))
    }

    /// Token ids of a query as the model sees them.
    pub fn tokenize(&self, query: &str) -> Result<Vec<u32>, JsError> {
        let t = self.inner.tokenize_query(query).map_err(js_error)?;
        // Ids come from a u32 vocabulary, so the conversion is lossless.
        Ok(t.ids.iter().map(|&id| id as u32).collect())
    }

    /// Vector length.
    #[wasm_bindgen(getter)]
    pub fn dims(&self) -> usize {
        self.inner.dims()
    }

    /// The bundle descriptor as a plain JS object.
    #[wasm_bindgen(getter)]
    pub fn manifest(&self) -> Result<JsValue, JsError> {
        serde_wasm_bindgen::to_value(self.inner.manifest())
            .map_err(|e| JsError::new(&e.to_string()))
    }
}
