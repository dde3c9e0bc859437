//! The op set dotfind's NNEF reader knows: what BERT-family encoders' decluttered graphs
//! contain, and nothing else (see the parent module for why the reader is not tract's).

use tract_nnef::internal::*;

/// NNEF's standard ops (registry `tract_nnef`) that BERT graphs use: tensor plumbing,
/// matmul, reductions, softmax, arithmetic and the element-wise functions of activations
/// and normalizations. Loaders are tract's own.
pub(super) fn stdlib_ops() -> Registry {
    use tract_nnef::ops::nnef::deser;
    use tract_nnef::tract_core::ops::{logic, math, nn};
    let mut registry = Registry::new("tract_nnef");
    let mut stdlib = tract_nnef::framework::stdlib();
    let primitives: [(&str, ToTract); 17] = [
        ("external", deser::external),
        ("variable", deser::variable),
        ("reshape", deser::reshape),
        ("transpose", deser::transpose),
        ("concat", deser::concat),
        ("slice", deser::slice),
        ("squeeze", deser::squeeze),
        ("unsqueeze", deser::unsqueeze),
        ("tile", deser::tile),
        ("copy", deser::copy),
        ("select", deser::select),
        ("matmul", deser::matmul),
        ("sum_reduce", deser::reduce),
        ("max_reduce", deser::reduce),
        ("min_reduce", deser::reduce),
        ("argmax_reduce", deser::reduce),
        ("softmax", deser::softmax),
    ];
    for (id, load) in primitives {
        if let Some(pos) = stdlib.iter().position(|f| f.decl.id.0 == id) {
            let decl = stdlib.remove(pos).decl;
            registry.register_primitive(id, &decl.parameters, &decl.results, load);
        }
    }
    let binaries: [(&str, &dyn tract_nnef::tract_core::ops::binary::BinMiniOp); 15] = [
        ("add", &math::Add),
        ("sub", &math::Sub),
        ("mul", &math::Mul),
        ("div", &math::Div),
        ("pow", &math::Pow),
        ("min", &math::Min),
        ("max", &math::Max),
        ("eq", &logic::CompEq),
        ("ne", &logic::CompNE),
        ("lt", &logic::CompLT),
        ("gt", &logic::CompGT),
        ("le", &logic::CompLTE),
        ("ge", &logic::CompGTE),
        ("and", &logic::And),
        ("or", &logic::Or),
    ];
    for (id, op) in binaries {
        registry.register_binary(id, op);
    }
    let unaries: [(&str, &dyn ElementWiseMiniOp); 12] = [
        ("exp", &math::Exp {}),
        ("log", &math::Ln {}),
        ("abs", &math::Abs {}),
        ("neg", &math::Neg {}),
        ("recip", &math::Recip {}),
        ("square", &math::Square {}),
        ("sqrt", &math::Sqrt {}),
        ("rsqrt", &math::Rsqrt {}),
        ("tanh", &math::Tanh {}),
        ("erf", &math::Erf {}),
        ("sigmoid", &nn::Sigmoid {}),
        ("not", &logic::Not {}),
    ];
    for (id, op) in unaries {
        registry.register_unit_element_wise(id, op);
    }
    // Composite ops (mean_reduce, relu, linear, ...) are NNEF text, no code.
    for fragment in stdlib.into_iter().filter(|f| f.body.is_some()) {
        registry.register_fragment(fragment);
    }
    registry
}

/// tract-core's ops (registry `tract_core`) that BERT graphs use, with dotfind's loaders
/// (tract's are private to tract-nnef): sources, casts, embedding gathers, einsums (int8
/// ones included) and the normalization tract folds layer norms into.
pub(super) fn core_ops() -> Registry {
    let mut registry = Registry::new("tract_core");
    let any = || TypeName::Scalar.tensor();
    let output = [("output", any())];
    registry.register_primitive(
        "tract_core_external",
        &[
            TypeName::String.named("datum_type"),
            TypeName::Integer.array().named("shape"),
        ],
        &[("output", TypeName::Any.tensor())],
        load_external,
    );
    registry.register_primitive(
        "tract_core_cast",
        &[any().named("input"), TypeName::String.named("to")],
        &output,
        load_cast,
    );
    registry.register_primitive(
        "tract_core_gather",
        &[
            any().named("input"),
            any().named("indices"),
            TypeName::Integer.named("axis"),
        ],
        &output,
        load_gather,
    );
    registry.register_primitive(
        "tract_core_rms_norm",
        &[
            any().named("input"),
            TypeName::Integer.named("axis"),
            TypeName::Scalar.named("eps").default(1e-6f32),
        ],
        &output,
        load_rms_norm,
    );
    let einsum = vec![
        any().array().named("inputs"),
        TypeName::String.named("expr"),
        TypeName::String.named("acc"),
        TypeName::String.named("output").default(""),
    ];
    registry.register_primitive("tract_core_einsum", &einsum, &output, load_einsum);
    let mut einsum_q = einsum;
    einsum_q.push(any().named("bias").default(0));
    for (zero_point, scale) in [("a0", "a_scale"), ("b0", "b_scale"), ("c0", "c_scale")] {
        einsum_q.push(TypeName::Integer.tensor().named(zero_point));
        einsum_q.push(any().named(scale));
    }
    registry.register_primitive("tract_core_einsum_q", &einsum_q, &output, load_einsum_q);
    registry
}

fn load_external(builder: &mut ModelBuilder, call: &ResolvedInvocation) -> TractResult<Value> {
    let shape: TVec<TDim> =
        builder.allowing_new_symbols(|builder| call.named_arg_as(builder, "shape"))?;
    let mut dt: DatumType = call
        .named_arg_as::<String>(builder, "datum_type")?
        .parse()?;
    if let Some(Some(quantized)) = call.dt_from_quant_file.first() {
        dt = *quantized;
    }
    Ok(Value::Wire(builder.model.add_source("", dt.fact(&*shape))?))
}

fn load_cast(builder: &mut ModelBuilder, call: &ResolvedInvocation) -> TractResult<Value> {
    let input = call.named_arg_as(builder, "input")?;
    let to: DatumType = call.named_arg_as::<String>(builder, "to")?.parse()?;
    // A graph.quant entry names the quantized form of the same type.
    let to = match call.dt_from_quant_file.first().copied().flatten() {
        Some(quantized) if quantized.unquantized() == to.unquantized() => quantized,
        Some(quantized) => bail!("cast to {to:?} but graph.quant says {quantized:?}"),
        None => to,
    };
    builder.wire(tract_nnef::tract_core::ops::cast::Cast { to }, &[input])
}

fn load_gather(builder: &mut ModelBuilder, call: &ResolvedInvocation) -> TractResult<Value> {
    use tract_nnef::tract_core::ops::{array::Gather, cast::cast};
    let input = call.named_arg_as(builder, "input")?;
    let indices = call.named_arg_as(builder, "indices")?;
    let axis = call.named_arg_as(builder, "axis")?;
    let output_type = call
        .optional_named_arg_as::<String>(builder, "datum_type")?
        .map(|s| s.parse())
        .transpose()?;
    let indices = builder.wire_as_outlets(cast(i64::datum_type()), &[indices])?[0];
    builder.wire(Gather { axis, output_type }, &[input, indices])
}

fn load_rms_norm(builder: &mut ModelBuilder, call: &ResolvedInvocation) -> TractResult<Value> {
    let input = call.named_arg_as(builder, "input")?;
    let axis: usize = call.named_arg_as(builder, "axis")?;
    let eps = call.named_arg_as(builder, "eps")?;
    builder.wire(
        tract_nnef::tract_core::ops::nn::RmsNorm { axis, eps },
        &[input],
    )
}

fn load_einsum(builder: &mut ModelBuilder, call: &ResolvedInvocation) -> TractResult<Value> {
    use tract_nnef::tract_core::ops::einsum::EinSum;
    let expr: AxesMapping = call.named_arg_as::<String>(builder, "expr")?.parse()?;
    let inputs: TVec<OutletId> = call.named_arg_as(builder, "inputs")?;
    let acc: DatumType = call.named_arg_as::<String>(builder, "acc")?.parse()?;
    builder.wire(EinSum::new(expr, acc), &inputs)
}

fn load_einsum_q(builder: &mut ModelBuilder, call: &ResolvedInvocation) -> TractResult<Value> {
    use tract_nnef::tract_core::ops::einsum::EinSum;
    let expr: AxesMapping = call.named_arg_as::<String>(builder, "expr")?.parse()?;
    let mut inputs: TVec<OutletId> = call.named_arg_as(builder, "inputs")?;
    for name in ["bias", "a0", "a_scale", "b0", "b_scale", "c0", "c_scale"] {
        inputs.push(call.named_arg_as(builder, name)?);
    }
    let acc: DatumType = call.named_arg_as::<String>(builder, "acc")?.parse()?;
    let output: String = call.named_arg_as(builder, "output")?;
    ensure!(
        !output.is_empty(),
        "tract_core_einsum_q without an output type"
    );
    builder.wire(EinSum::newq(expr, acc, output.parse()?), &inputs)
}
