//! `hsmux audit tail [-f] [--slot S] [--key L] FILE`: a trail, one readable line per
//! record, filtered by slot (label or id) and key (label or `CKA_ID` in hex); `-f` follows
//! the file across rotation (rename or truncation).

use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

/// What `tail` shows.
#[derive(Default, Clone)]
pub struct Filter {
    pub slot: Option<String>,
    pub key: Option<String>,
}

impl Filter {
    fn keeps(&self, v: &serde_json::Value) -> bool {
        let s = |k: &str| {
            v.get(k)
                .map(|x| x.as_str().map_or(x.to_string(), str::to_string))
        };
        let slot_ok = self.slot.as_ref().is_none_or(|want| {
            s("slot").as_ref() == Some(want) || s("slotId").as_ref() == Some(want)
        });
        let key_ok = self.key.as_ref().is_none_or(|want| {
            ["keyLabel", "keyId", "newKeyLabel", "newKeyId"]
                .iter()
                .any(|k| s(k).as_ref() == Some(want))
        });
        slot_ok && key_ok
    }
}

/// One record, readable: time, process, slot, call, mechanism, key, length, result.
pub fn format(v: &serde_json::Value) -> String {
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("");
    let n = |k: &str| v.get(k).and_then(|x| x.as_u64());
    let mut out = format!(
        "{} {}[{}] uid={}",
        s("time"),
        s("process"),
        n("pid").unwrap_or(0),
        n("uid").map_or("?".into(), |u| u.to_string())
    );
    if !s("slot").is_empty() {
        out += &format!(" slot={}", s("slot"));
        if !s("replica").is_empty() {
            out += &format!("/{}", s("replica"));
        }
    }
    out += &format!(" {}", s("eventName"));
    if !s("mechanism").is_empty() {
        out += &format!(" {}", s("mechanism"));
    }
    for (p, what) in [("key", "key"), ("newKey", "new key")] {
        if let Some(h) = n(&format!("{p}Handle")) {
            out += &format!(
                " {what}={:?} id={} (handle {h})",
                s(&format!("{p}Label")),
                s(&format!("{p}Id"))
            );
        }
    }
    if let Some(l) = n("dataLength") {
        out += &format!(" {l} bytes");
    }
    if !s("result").is_empty() {
        out += &format!(" -> {}", s("result"));
    }
    if let Some(d) = n("durationUs") {
        out += &format!(" {d} µs");
    }
    if !s("detail").is_empty() {
        out += &format!(" ({})", s("detail"));
    }
    out
}

fn print_lines(
    r: &mut BufReader<std::fs::File>,
    filter: &Filter,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut line = String::new();
    loop {
        line.clear();
        let at = r.stream_position()?;
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if !line.ends_with('\n') {
            // A line being written: read again once complete.
            r.seek(SeekFrom::Start(at))?;
            return Ok(());
        }
        match serde_json::from_str::<serde_json::Value>(line.trim_end()) {
            Ok(v) if filter.keeps(&v) => writeln!(out, "{}", format(&v))?,
            Ok(_) => {}
            Err(_) => writeln!(out, "(not a record) {}", line.trim_end())?,
        }
    }
}

/// Prints the trail at `path`; with `follow`, keeps printing what is appended, reopening
/// the path when the file is renamed away or truncated.
pub fn tail(
    path: &Path,
    follow: bool,
    filter: &Filter,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let mut ino = file.metadata()?.ino();
    let mut r = BufReader::new(file.try_clone()?);
    loop {
        print_lines(&mut r, filter, out)?;
        if !follow {
            return Ok(());
        }
        out.flush()?;
        std::thread::sleep(Duration::from_millis(200));
        let now = r.stream_position()?;
        match std::fs::metadata(path) {
            Ok(m) if m.ino() != ino => {
                file = std::fs::File::open(path)?;
                ino = file.metadata()?.ino();
                r = BufReader::new(file.try_clone()?);
            }
            Ok(m) if m.len() < now => {
                r.seek(SeekFrom::Start(0))?;
            }
            _ => {}
        }
    }
}
