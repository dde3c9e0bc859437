//! `dotfind encode` and `dotfind tokenize`: one stdin line in, one JSON array out.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result};
use dotfind::{Encoder, ModelBundle};

fn load(model: &Path) -> Result<Encoder> {
    Ok(Encoder::new(&ModelBundle::open(model)?)?)
}

fn stdin_lines() -> Result<Vec<String>> {
    let mut lines = Vec::new();
    for (n, line) in std::io::stdin().lock().lines().enumerate() {
        lines.push(line.with_context(|| format!("stdin line {}", n + 1))?);
    }
    Ok(lines)
}

/// Prints each line's vector; passages are read in groups of `batch_size` but each is
/// encoded alone, so a passage's vector never depends on the others.
pub fn encode(model: &Path, passages: bool, batch_size: usize) -> Result<()> {
    let encoder = load(model)?;
    let lines = stdin_lines()?;
    let mut out = super::stdout();
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
    out.flush()?;
    Ok(())
}

/// Prints each line's token ids as the model sees them.
pub fn tokenize(model: &Path, passages: bool) -> Result<()> {
    let encoder = load(model)?;
    let mut out = super::stdout();
    for (n, line) in stdin_lines()?.iter().enumerate() {
        let tokens = if passages {
            encoder.tokenize_passage(line)
        } else {
            encoder.tokenize_query(line)
        }
        .with_context(|| format!("stdin line {}", n + 1))?;
        writeln!(out, "{}", serde_json::to_string(&tokens.ids)?)?;
    }
    out.flush()?;
    Ok(())
}
