// Without a console window on Windows release builds; the CLI still prints when run from one.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use clap::Parser;
use codex_vault::cli::{self, Cli};
use std::process::ExitCode;

// Off by default (feature `mimalloc`): its arena's eager commit costs 10–20 MB resident, and with
// that turned off (a compile-time option: it is read before `main`) the CPU it saves the endpoint
// is within the noise (README § Benchmarks, "Where the time goes").
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    codex_vault::init_logging();
    let args = Cli::parse();
    match args.command {
        Some(command) => cli::run(command),
        None => desktop(args.autostarted),
    }
}

#[cfg(feature = "desktop")]
fn desktop(autostarted: bool) -> ExitCode {
    codex_vault::desktop::run(autostarted)
}

#[cfg(not(feature = "desktop"))]
fn desktop(_autostarted: bool) -> ExitCode {
    eprintln!("this build has no desktop app (built without the `desktop` feature); use the subcommands, see --help");
    ExitCode::from(cli::EXIT_USAGE)
}
