//! Compute kernels: slices in, slices out, no graph and no tensors. Each has portable loops
//! (the definition the others follow, and what every other target compiles) and, where it
//! pays, wasm SIMD / relaxed SIMD or native AMX / AVX-512 / AVX2 versions chosen at build or
//! run time.

#[cfg(feature = "encoder")]
pub mod amx;
pub mod f16;
pub mod groups;
#[cfg(feature = "encoder")]
pub mod int8_matmul;
pub mod pq;
#[cfg(feature = "encoder")]
pub mod quantize;
pub mod score;

#[cfg(not(target_arch = "wasm32"))]
pub mod attention;
#[cfg(not(target_arch = "wasm32"))]
pub mod bf16_amx;
#[cfg(target_arch = "x86_64")]
pub(crate) mod lanes;
