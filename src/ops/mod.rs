//! dotfind's tract ops, each running one of [`crate::kernels`], and the graph rewrites that
//! put them in place of tract's own ops.

pub mod constant_linears;
pub mod dequantize;
pub mod dynamic_quantize;
pub mod int8_linear;
pub mod int8_per_token;
pub mod int8_rewrites;

#[cfg(not(target_arch = "wasm32"))]
pub mod attention;
#[cfg(not(target_arch = "wasm32"))]
pub mod bf16_linear;
