//! `hsmux man DIR` (hidden; run by scripts/package.sh): the man pages, from the same clap
//! definitions as `--help`: hsmux(1), hsmux-VERB(1) for each verb, and hsmux.toml(5)
//! (docs/hsmux.toml.5, written by hand: the file format is not a command line).

use crate::cli::Cli;
use clap::CommandFactory;
use std::path::Path;
use std::process::ExitCode;

const CONFIG_PAGE: &str = include_str!("../../../docs/hsmux.toml.5");

pub fn write_all(dir: &Path) -> ExitCode {
    match write(dir) {
        Ok(n) => {
            println!("{n} man pages in {}", dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hsmux man: {}: {e}", dir.display());
            ExitCode::from(1)
        }
    }
}

fn write(dir: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let cmd = Cli::command();
    page(dir, "hsmux.1", cmd.clone())?;
    let mut n = 1;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("hsmux-{}", sub.get_name());
        page(dir, &format!("{name}.1"), sub.clone().name(name))?;
        n += 1;
    }
    std::fs::write(dir.join("hsmux.toml.5"), CONFIG_PAGE)?;
    Ok(n + 1)
}

fn page(dir: &Path, file: &str, cmd: clap::Command) -> std::io::Result<()> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    std::fs::write(dir.join(file), out)
}
