//! From a compiled graph to the plan an [`crate::model::Encoder`] runs: which of dotfind's
//! ops replace tract's, and how many texts one run takes. Every choice here gives the same
//! vectors as tract's own plan, bit for bit, except [`F32Plan::OwnKernels`] (within f32
//! rounding; tested).

use tract_core::internal::*;

use crate::error::{Error, Result};
use crate::ops::int8_rewrites;

/// How an int8 bundle's MatMuls are planned; all three give the same bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8Plan {
    /// tract's stock plan: the reference the rewrites are tested against.
    Stock,
    /// dotfind's graph rewrites ([`crate::ops::int8_rewrites`]) around tract's int8 matmul
    /// kernels (natively its VNNI/AVX2 ones, the fastest where AMX is missing).
    Rewritten,
    /// The rewrites, with dotfind's own int8 matmul kernels ([`crate::ops::int8_linear`];
    /// the wasm default, and the native one where the CPU has AMX, or AVX2 without VNNI).
    OwnKernel,
}

impl Int8Plan {
    /// The fastest plan on the target this is compiled for (BENCHMARKS.md): dotfind's
    /// kernels in both wasm builds (which also start faster than tract's int8 plan);
    /// natively, dotfind's AMX kernel where the CPU has AMX, its AVX2 kernel where the CPU
    /// has AVX2 but no VNNI, else tract's VNNI kernels.
    pub fn for_this_target() -> Self {
        if cfg!(target_arch = "wasm32") || crate::kernels::amx::available() || avx2_without_vnni() {
            Int8Plan::OwnKernel
        } else {
            Int8Plan::Rewritten
        }
    }
}

/// x86-64 CPUs with AVX2 and no VNNI: there tract's int8 kernel widens every product to
/// i16 and back to i32 (about 5 instructions per 8 multiply-adds), dotfind's AVX2 kernel
/// multiplies 32 byte pairs in 3. Where VNNI's `vpdpbusd` runs, tract's kernels use it.
fn avx2_without_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        crate::kernels::int8_matmul::quad_kernels_in_simd()
            && !has!("avx512vnni")
            && !has!("avxvnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// How an encoder plans the f32 work: self-attention and f32 linear layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum F32Plan {
    /// tract's ops, as the graph has them: the same bits as tract's own plan.
    Tract,
    /// dotfind's own ops where this CPU runs their kernels (native builds): fused attention
    /// (AVX-512, or AVX2 with FMA; within f32 rounding of tract) and f32 linear layers on
    /// AMX bf16 tiles with split operands (sums good to ~2⁻¹⁶ of their terms). Not
    /// bit-identical to tract; passage vectors within cosine 0.99999 (tested).
    OwnKernels,
}

impl F32Plan {
    /// dotfind's kernels where one of them runs here (native x86-64 with AVX-512F, AVX2 and
    /// FMA, or AMX-BF16), tract's elsewhere.
    pub fn for_this_target() -> Self {
        #[cfg(not(target_arch = "wasm32"))]
        if crate::kernels::attention::kernel_available() || crate::ops::bf16_linear::available() {
            return F32Plan::OwnKernels;
        }
        F32Plan::Tract
    }
}

/// How many texts one run of an encoder's plan takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanBatch {
    /// Any number, padded to the longest (for tests and benchmarks of padded batches).
    Any,
    /// One: `batch` is fixed to 1 before tract optimizes the graph, which it then does in
    /// about half the time (one symbol fewer in every shape), and the plan runs faster;
    /// several texts run one by one. What every encoder dotfind builds uses: queries come
    /// one at a time, and the indexer encodes one passage per call so that no vector
    /// depends on its batchmates.
    One,
}

/// The three choices of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plans {
    pub int8: Int8Plan,
    pub f32: F32Plan,
    pub batch: PlanBatch,
}

impl Plans {
    /// What every encoder dotfind builds uses: the fastest on this target, one text per run.
    pub fn for_this_target() -> Self {
        Plans {
            int8: Int8Plan::for_this_target(),
            f32: F32Plan::for_this_target(),
            batch: PlanBatch::One,
        }
    }

    /// `int8` and `batch` with tract's f32 work: plans built this way compare bit for bit.
    pub fn exact(int8: Int8Plan, batch: PlanBatch) -> Self {
        Plans {
            int8,
            f32: F32Plan::Tract,
            batch,
        }
    }
}

/// The name of the batch axis' symbol in every graph dotfind plans.
pub const BATCH_SYMBOL: &str = "batch";

/// The compiled graph in `bytes` (`model.graph`), decluttered as it was written, with
/// `batch` fixed to 1 for [`PlanBatch::One`].
pub fn read_graph(bytes: &[u8], batch: PlanBatch) -> Result<TypedModel> {
    let file = crate::model::bundle::GRAPH_FILE;
    if bytes.is_empty() {
        return Err(Error::InvalidModel {
            file: file.into(),
            reason: "empty file".into(),
        });
    }
    let fixed: &[(&str, i64)] = match batch {
        PlanBatch::Any => &[],
        PlanBatch::One => &[(BATCH_SYMBOL, 1)],
    };
    crate::model::graph::read_fixing(bytes, fixed).map_err(|e| Error::InvalidModel {
        file: file.into(),
        reason: format!("not a valid compiled model: {e:#}"),
    })
}

/// The decluttered graph optimized for running, with the ops `plans` choose.
pub fn optimize(mut graph: TypedModel, plans: Plans) -> TractResult<TypedModel> {
    if plans.f32 == F32Plan::OwnKernels {
        // An optimization, never a reason not to load: a graph the rewrites trip on runs
        // as tract plans it (the constants are shared, so the copy is cheap).
        let before = graph.clone();
        if use_own_f32_kernels(&mut graph).is_err() {
            graph = before;
        }
    }
    match plans.int8 {
        Int8Plan::Stock => graph.into_optimized(),
        Int8Plan::Rewritten => int8_rewrites::optimize(graph, false),
        Int8Plan::OwnKernel => int8_rewrites::optimize(graph, true),
    }
}

/// [`F32Plan::OwnKernels`]' rewrites, each where its kernel runs (native builds only; wasm
/// builds never ask for them): attention first, whose output the output projection reads.
#[cfg(not(target_arch = "wasm32"))]
fn use_own_f32_kernels(model: &mut TypedModel) -> TractResult<()> {
    if crate::kernels::attention::kernel_available() {
        crate::ops::attention::fuse(model)?;
    }
    if crate::ops::bf16_linear::available() {
        crate::ops::bf16_linear::fuse(model)?;
    }
    Ok(())
}

#[cfg(target_arch = "wasm32")]
fn use_own_f32_kernels(_: &mut TypedModel) -> TractResult<()> {
    Ok(())
}
