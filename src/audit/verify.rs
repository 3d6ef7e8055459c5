//! `hsmux audit verify FILE...`: checks the per-process chains of a trail. Each line's
//! `prev` must be the SHA-256 of the previous line of its chain and its `seq` one more; a
//! chain starts with `audit.start` (or, in a file after rotation, `audit.reopen`). Lines of
//! several processes may interleave: each chain is followed on its own. Files given in
//! order (rotated ones first) are checked as one trail.
//!
//! What this proves and does not: see docs/audit.md ("Tamper evidence"). In short, any change to
//! a line that has a later line in its chain shows; the last lines of a chain can be cut or
//! rewritten by whoever can write the file, unless they were also sent elsewhere.

use super::writer::ZERO_PREV;
use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;

/// A trail that checks out.
#[derive(Debug, Default)]
pub struct Report {
    pub lines: usize,
    pub chains: usize,
    /// Chains without an `audit.stop` record (a process still running, killed, or a tail
    /// cut off).
    pub open: Vec<String>,
}

/// The first line where a chain breaks.
#[derive(Debug)]
pub struct Broken {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

struct ChainState {
    prev: String,
    seq: u64,
    file: String,
    line: usize,
    stopped: bool,
}

#[derive(Default)]
struct Checker {
    chains: HashMap<String, ChainState>,
    report: Report,
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b).as_ref())
}

impl Checker {
    /// Checks one line; an error names the line at fault when it is an earlier one.
    fn line(
        &mut self,
        file: &str,
        n: usize,
        text: &str,
    ) -> Result<(), (Option<(String, usize)>, String)> {
        self.check(file, n, text)
            .map_err(|e| (None, e))
            .and_then(|edited| match edited {
                None => Ok(()),
                Some(e) => Err(e),
            })
    }

    #[allow(clippy::type_complexity)]
    fn check(
        &mut self,
        file: &str,
        n: usize,
        text: &str,
    ) -> Result<Option<(Option<(String, usize)>, String)>, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not a JSON record ({e})"))?;
        let s = |k: &str| v.get(k).and_then(|x| x.as_str());
        let (Some(chain), Some(seq), Some(prev), Some(event)) = (
            s("chain"),
            v.get("seq").and_then(|x| x.as_u64()),
            s("prev"),
            s("eventName"),
        ) else {
            return Err("not an audit record (chain, seq, prev or eventName missing)".into());
        };
        let here = ChainState {
            prev: sha256_hex(text.as_bytes()),
            seq,
            file: file.to_string(),
            line: n,
            stopped: event == "audit.stop",
        };
        self.report.lines += 1;
        let Some(last) = self.chains.get(chain) else {
            if event == "audit.start" && (seq != 0 || prev != ZERO_PREV) {
                return Err(format!(
                    "chain {chain}: a start record must have seq 0 and a zero prev"
                ));
            }
            if event != "audit.start" && event != "audit.reopen" {
                return Err(format!(
                    "chain {chain} has no start record before this line: its first lines were deleted, or this line was moved here"
                ));
            }
            self.chains.insert(chain.to_string(), here);
            return Ok(None);
        };
        if event == "audit.start" {
            return Err(format!(
                "chain {chain} starts a second time (a line copied?)"
            ));
        }
        if last.stopped {
            return Err(format!(
                "chain {chain} goes on after its stop record ({}:{})",
                last.file, last.line
            ));
        }
        if seq > last.seq + 1 {
            return Err(format!(
                "chain {chain} jumps from seq {} ({}:{}) to {seq}: {} line(s) of it before this one were deleted or moved",
                last.seq, last.file, last.line, seq - last.seq - 1
            ));
        }
        if seq <= last.seq {
            return Err(format!(
                "chain {chain} goes back from seq {} ({}:{}) to {seq}: lines were reordered or copied",
                last.seq, last.file, last.line
            ));
        }
        if prev != last.prev {
            // The previous line of the chain no longer hashes to what this one recorded.
            return Ok(Some((
                Some((last.file.clone(), last.line)),
                format!("this line was edited: it does not hash to the prev recorded by the next line of chain {chain} ({file}:{n})"),
            )));
        }
        self.chains.insert(chain.to_string(), here);
        Ok(None)
    }
}

/// Checks `files` as one trail, in order.
pub fn verify_files(files: &[impl AsRef<Path>]) -> Result<Report, Broken> {
    let mut c = Checker::default();
    for f in files {
        let name = f.as_ref().display().to_string();
        let file = std::fs::File::open(f.as_ref()).map_err(|e| Broken {
            file: name.clone(),
            line: 0,
            reason: format!("cannot read: {e}"),
        })?;
        for (i, line) in std::io::BufReader::new(file).split(b'\n').enumerate() {
            let n = i + 1;
            let broken = |reason: String| Broken {
                file: name.clone(),
                line: n,
                reason,
            };
            let line = line.map_err(|e| broken(format!("cannot read: {e}")))?;
            let text = std::str::from_utf8(&line).map_err(|_| broken("not UTF-8".into()))?;
            c.line(&name, n, text).map_err(|(at, reason)| match at {
                // The break is in an earlier line.
                Some((file, line)) => Broken { file, line, reason },
                None => broken(reason),
            })?;
        }
    }
    c.report.chains = c.chains.len();
    c.report.open = c
        .chains
        .iter()
        .filter(|(_, s)| !s.stopped)
        .map(|(k, _)| k.clone())
        .collect();
    c.report.open.sort();
    Ok(c.report)
}
