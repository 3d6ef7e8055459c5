//! docs/configuration.md lists exactly the keys the parser takes: for each table, the keys
//! of the page's table under its heading equal the keys serde's error for an unknown key
//! names as expected (the parser's own list, `deny_unknown_fields`).

use hsmux::config::Config;
use std::collections::BTreeSet;

const PAGE: &str = include_str!("../docs/configuration.md");

/// The keys the parser expects in a table: the `expected ...` part of its error for `zz`.
fn schema(toml: &str) -> BTreeSet<String> {
    let err = Config::parse(toml, "reference-test")
        .expect_err("zz is refused")
        .0;
    let (_, expected) = err
        .split_once("expected")
        .unwrap_or_else(|| panic!("{err}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// The keys documented under the heading `heading` (first column of its table).
fn documented(heading: &str) -> BTreeSet<String> {
    let (_, rest) = PAGE
        .split_once(&format!("### {heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading}"));
    let section = rest.split("\n### ").next().unwrap();
    section
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split_once('`').map(|(k, _)| k.to_string()))
        .collect()
}

#[test]
fn every_documented_key_is_in_the_schema_and_every_schema_key_is_documented() {
    let tables = [
        ("Top level", "zz = 1\n"),
        ("`[log]`", "[log]\nzz = 1\n"),
        ("`[metrics]`", "[metrics]\nzz = 1\n"),
        ("`[audit]`", "[audit]\nzz = 1\n"),
        ("`[policy]`", "[policy]\nzz = 1\n"),
        ("`[[slot]]`", "[[slot]]\nzz = 1\n"),
        (
            "`[[slot.replica]]`",
            "[[slot]]\nlabel = \"a\"\n[[slot.replica]]\nzz = 1\n",
        ),
    ];
    for (heading, toml) in tables {
        let want = schema(toml);
        assert!(!want.is_empty(), "{heading}");
        assert_eq!(
            documented(heading),
            want,
            "docs/configuration.md, {heading}"
        );
    }
}
