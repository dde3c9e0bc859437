//! `dotfind` command line: the native edge over the core library.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use dotfind::index::{build_index, IndexOptions};
use dotfind::index_files::open_index;
use dotfind::shard::VectorEncoding;
use dotfind::{Encoder, ModelBundle};

/// Encoding allocates and frees multi-megabyte activations for every op of every passage;
/// glibc's malloc hands those back to the kernel each time (mmap, trim), and the page faults
/// that follow cost ~10 % of indexing. mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "dotfind",
    version,
    about = "Semantic search that runs in the browser"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Encode one text per stdin line; print one JSON array of floats per line.
    Encode {
        /// Model bundle folder (dotfind-model.json, model.onnx, tokenizer.json[, model.graph]).
        #[arg(long)]
        model: PathBuf,
        /// Encode lines as passages (passage prefix and length limit) instead of queries.
        #[arg(long)]
        passages: bool,
        /// Lines read per group when encoding passages (each is encoded alone, so a
        /// passage's vector never depends on the others).
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
    },
    /// Compile a bundle's model.onnx into model.graph (the graph already typed and
    /// decluttered) and record it in dotfind-model.json: browsers load compiled bundles only.
    Compile {
        /// Model bundle folder; updated in place.
        #[arg(long)]
        model: PathBuf,
    },
    /// Encode a corpus (BEIR JSONL or a folder of built HTML pages) into an index folder.
    Index {
        /// Model bundle folder; copied into the index so the folder deploys as-is.
        #[arg(long)]
        model: PathBuf,
        /// corpus.jsonl ({"_id","title","text"[,"url"]} per line) or a static site's output folder.
        #[arg(long)]
        input: PathBuf,
        /// Index folder to write (replaced atomically; its vectors are reused where unchanged).
        #[arg(long)]
        out: PathBuf,
        /// Stored vector precision.
        #[arg(long, default_value = "int8")]
        vectors: VectorEncoding,
        /// Largest file written, in MiB (static hosts cap file sizes: Cloudflare Pages at 25 MiB).
        #[arg(long, default_value_t = 20)]
        max_file_mib: usize,
        /// Leave out JSONL documents with no title and no text (reported) instead of failing.
        #[arg(long)]
        skip_empty: bool,
        /// Encode passages with this bundle (the f32 twin of an int8 --model): f32-quality
        /// passage vectors, while browsers still download only --model for queries.
        #[arg(long)]
        passage_model: Option<PathBuf>,
    },
    /// Exact search over an index (the browser's scoring), printing the top passages.
    Search {
        #[arg(long)]
        index: PathBuf,
        #[arg(short, default_value_t = 10)]
        k: usize,
        /// Print a JSON array of {id, url, title, score}.
        #[arg(long)]
        json: bool,
        query: String,
    },
    /// Batch retrieval into a TREC run file (one line per query and document, best passage per document).
    Run {
        #[arg(long)]
        index: PathBuf,
        /// queries.jsonl: {"_id","text"} per line.
        #[arg(long)]
        queries: PathBuf,
        #[arg(short, default_value_t = 1000)]
        k: usize,
        #[arg(long)]
        out: PathBuf,
        /// Run tag (last column).
        #[arg(long, default_value = "dotfind")]
        tag: String,
    },
    /// Re-rank a first-stage TREC run (e.g. BM25) with the model: the re-ranking mode.
    Rerank {
        #[arg(long)]
        index: PathBuf,
        /// First-stage run: `qid Q0 docid rank score tag`.
        #[arg(long)]
        run: PathBuf,
        #[arg(long)]
        queries: PathBuf,
        /// Candidates per query taken from the first-stage run.
        #[arg(long, default_value_t = 1000)]
        depth: usize,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "dotfind-rerank")]
        tag: String,
    },
    /// Score a TREC run against qrels with trec_eval's definitions.
    Eval {
        /// `query-id corpus-id score` (BEIR TSV, optional header) or TREC `qid 0 docid rel`.
        #[arg(long)]
        qrels: PathBuf,
        #[arg(long)]
        run: PathBuf,
        /// Lowest grade counted as relevant for MRR, recall and MAP (TREC-DL passage: 2).
        #[arg(long, default_value_t = 1)]
        rel_level: i64,
        /// Also average over judged queries absent from the run, scoring them 0 (trec_eval -c).
        #[arg(long)]
        complete: bool,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print token ids (one JSON array per stdin line), as the model sees them.
    Tokenize {
        #[arg(long)]
        model: PathBuf,
        #[arg(long)]
        passages: bool,
    },
}

fn load(model: &std::path::Path) -> Result<Encoder> {
    let bundle = ModelBundle::open(model)?;
    Ok(Encoder::new(&bundle)?)
}

fn stdin_lines() -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        lines.push(line.with_context(|| format!("stdin line {}", n + 1))?);
    }
    Ok(lines)
}

/// Prints `dotfind: error: ...` with the cause chain and exits 1: a message for people,
/// never a backtrace.
fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dotfind: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    match cli.command {
        Command::Encode {
            model,
            passages,
            batch_size,
        } => {
            let encoder = load(&model)?;
            let lines = stdin_lines()?;
            if passages {
                for chunk in lines.chunks(batch_size.max(1)) {
                    let texts: Vec<&str> = chunk.iter().map(String::as_str).collect();
                    for v in encoder.encode_passages(&texts)? {
                        writeln!(out, "{}", serde_json::to_string(&v)?)?;
                    }
                }
            } else {
                for (n, line) in lines.iter().enumerate() {
                    let v = encoder
                        .encode_query(line)
                        .with_context(|| format!("stdin line {}", n + 1))?;
                    writeln!(out, "{}", serde_json::to_string(&v)?)?;
                }
            }
        }
        Command::Compile { model } => {
            let entry = dotfind::compiled_graph::compile_bundle(&model)?;
            eprintln!(
                "{}: wrote {} ({} bytes, sha256 {})",
                model.display(),
                dotfind::bundle::COMPILED_MODEL_FILE,
                entry.bytes,
                entry.sha256
            );
        }
        Command::Index {
            model,
            input,
            out,
            vectors,
            max_file_mib,
            skip_empty,
            passage_model,
        } => {
            let opts = IndexOptions {
                encoding: vectors,
                max_file_bytes: max_file_mib.max(1) * 1024 * 1024,
                progress: true,
                skip_empty,
                passage_model,
            };
            let started = std::time::Instant::now();
            let stats = build_index(&model, &input, &out, &opts)?;
            if !stats.skipped.is_empty() {
                eprintln!(
                    "skipped {} empty documents: {}",
                    stats.skipped.len(),
                    stats.skipped.join(", ")
                );
            }
            eprintln!(
                "indexed {} passages from {} documents into {} ({} shards): {} encoded, {} reused, {:.1} s",
                stats.passages,
                stats.documents,
                out.display(),
                stats.shards,
                stats.encoded,
                stats.reused,
                started.elapsed().as_secs_f64()
            );
        }
        Command::Search {
            index,
            k,
            json,
            query,
        } => {
            let (index, encoder) = open_index(&index)?;
            let q = encoder.encode_query(&query)?;
            let hits = index.search(&q, k)?;
            let mut results = Vec::with_capacity(hits.len());
            for hit in hits {
                let r = index.record(hit.passage)?;
                results.push(serde_json::json!({"id": r.id, "url": r.url, "title": r.title, "score": hit.score}));
                if !json {
                    writeln!(
                        out,
                        "{:.4}\t{}\t{}\t{}",
                        hit.score,
                        r.id,
                        r.title,
                        dotfind::search::snippet(&r.text, 100)
                    )?;
                }
            }
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&results)?)?;
            }
        }
        Command::Run {
            index,
            queries,
            k,
            out: run_path,
            tag,
        } => {
            let (index, encoder) = open_index(&index)?;
            let queries = dotfind::eval::read_queries(&queries)?;
            let run = dotfind::eval::retrieve(&index, &encoder, &queries, k)?;
            dotfind::eval::write_run(&run_path, &run, &tag)?;
            eprintln!("wrote {} queries to {}", queries.len(), run_path.display());
        }
        Command::Rerank {
            index,
            run,
            queries,
            depth,
            out: run_path,
            tag,
        } => {
            let (index, encoder) = open_index(&index)?;
            let queries = dotfind::eval::read_queries(&queries)?;
            let candidates = dotfind::eval::read_run(&run)?;
            let (reranked, unknown) =
                dotfind::eval::rerank_run(&index, &encoder, &queries, &candidates, depth)?;
            dotfind::eval::write_run(&run_path, &reranked, &tag)?;
            eprintln!(
                "re-ranked {} queries into {}",
                reranked.len(),
                run_path.display()
            );
            if unknown > 0 {
                eprintln!("warning: {unknown} candidates are not in the index and were dropped");
            }
        }
        Command::Eval {
            qrels,
            run,
            rel_level,
            complete,
            json,
        } => {
            let qrels = dotfind::eval::read_qrels(&qrels)?;
            let run_scores = dotfind::eval::read_run(&run)?;
            let m = dotfind::eval::evaluate(&qrels, &run_scores, rel_level, complete);
            let missing = qrels
                .keys()
                .filter(|q| !run_scores.contains_key(*q))
                .count();
            if json {
                writeln!(out, "{}", serde_json::to_string(&m)?)?;
            } else {
                for (name, value) in [
                    ("MRR@10", m.mrr_10),
                    ("nDCG@10", m.ndcg_10),
                    ("Recall@100", m.recall_100),
                    ("Recall@1000", m.recall_1000),
                    ("MAP", m.map),
                ] {
                    writeln!(out, "{name:<12} {value:.4}")?;
                }
                writeln!(out, "{:<12} {}", "queries", m.queries)?;
            }
            if missing > 0 && !complete {
                eprintln!("note: {missing} judged queries are not in the run and were not averaged (--complete counts them as 0)");
            }
        }
        Command::Tokenize { model, passages } => {
            let encoder = load(&model)?;
            for (n, line) in stdin_lines()?.iter().enumerate() {
                let tokens = if passages {
                    encoder.tokenize_passage(line)
                } else {
                    encoder.tokenize_query(line)
                }
                .with_context(|| format!("stdin line {}", n + 1))?;
                writeln!(out, "{}", serde_json::to_string(&tokens.ids)?)?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
