fn main() {
    let dir = std::env::args().nth(1).unwrap();
    let bytes = std::fs::read(format!("{dir}/model.graph")).unwrap();
    let typed = dotfind::encode::decluttered_graph_for(
        "model.graph",
        &bytes,
        dotfind::encode::PlanBatch::One,
    )
    .unwrap();
    let opt = dotfind::int8_graph::optimize(typed, true).unwrap();
    for n in opt.nodes() {
        let inputs: Vec<String> = n.inputs.iter().map(|o| format!("{}", o.node)).collect();
        println!(
            "{} {} [{}] <- {:?} : {:?}",
            n.id,
            n.op.name(),
            n.name,
            inputs,
            n.outputs
                .iter()
                .map(|o| format!("{:?}", o.fact))
                .collect::<Vec<_>>()
        );
    }
}
