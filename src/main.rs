//! `dotfind` command line: the native edge over the core library (see `src/cli/`).

mod cli;

use clap::Parser;

/// Encoding allocates and frees multi-megabyte activations for every op of every passage;
/// glibc's malloc hands those back to the kernel each time (mmap, trim), and the page faults
/// that follow cost a good share of indexing (BENCHMARKS.md). mimalloc keeps them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Prints `dotfind: error: ...` with the cause chain and exits 1: a message for people,
/// never a backtrace.
fn main() -> std::process::ExitCode {
    match cli::run(cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dotfind: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
