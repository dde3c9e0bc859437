// Temporary experiment (not committed): rows runs per query for rescore R and gap G.
use dotfind::search::{Probe, Searcher};
fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::Path::new(&args[1]);
    let queries: Vec<String> = std::fs::read_to_string(&args[2])
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["text"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let s = Searcher::open(dir).unwrap();
    let idx = s.index();
    let parts = idx.parts();
    let starts: Vec<usize> = {
        let mut v = vec![0];
        for e in &parts.lists {
            v.push(v[v.len() - 1] + e.count);
        }
        v
    };
    for r in [256usize, 384, 512] {
        for gap in [2usize, 8, 32] {
            let (mut runs, mut rows, mut frags) = (0usize, 0usize, 0usize);
            for q in &queries {
                let v = s.encoder().encode_query(q).unwrap();
                // rescore = r: search for r results returns the r candidates.
                let mut c: Vec<usize> = idx
                    .search(&v, r, Probe::Default)
                    .unwrap()
                    .iter()
                    .map(|h| h.passage)
                    .collect();
                let top10: Vec<usize> = c.iter().take(10).copied().collect();
                frags += idx.missing_fragments(&top10).len();
                c.sort();
                let mut prev: Option<(usize, usize)> = None;
                for n in c {
                    let list = starts.partition_point(|&s| s <= n) - 1;
                    match prev {
                        Some((l, e)) if l == list && n <= e + gap => {
                            rows += n - e;
                            prev = Some((l, n));
                        }
                        _ => {
                            runs += 1;
                            rows += 1;
                            prev = Some((list, n));
                        }
                    }
                }
            }
            let nq = queries.len();
            println!(
                "R {r} gap {gap}: runs/q {:.1} rows/q {:.1} ({:.0} KB) frags/q {:.1}",
                runs as f64 / nq as f64,
                rows as f64 / nq as f64,
                rows as f64 * 388.0 / nq as f64 / 1000.0,
                frags as f64 / nq as f64
            );
        }
    }
}
