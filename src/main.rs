//! `dotfind` command line: the native edge over the core library.

use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use dotfind::{Encoder, ModelBundle};

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
        /// Model bundle folder (dotfind-model.json, model.onnx, tokenizer.json).
        #[arg(long)]
        model: PathBuf,
        /// Encode lines as passages (passage prefix and length limit) instead of queries.
        #[arg(long)]
        passages: bool,
        /// Texts per model call when encoding passages.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
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
