#!/usr/bin/env python3
"""Regenerates the soft token's mechanism table in docs/mechanisms.md (it was in the README
until the docs split) from C_GetMechanismList and C_GetMechanismInfo, as printed by
tests/mechanism_info.rs (print_mechanism_table). The table is replaced between its two
markers, which the page must keep."""
import os, subprocess
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
out=subprocess.run(["cargo","test","--release","--test","mechanism_info","--","--ignored","--nocapture","print_mechanism_table"],capture_output=True,text=True,cwd=REPO).stdout
rows=[l for l in out.splitlines() if l.startswith("|")]
assert rows, out[-2000:]
table="\n".join(rows)
p=os.path.join(REPO, "docs", "mechanisms.md")
s=open(p).read()
marker_a="<!-- mechanism table: printed by `cargo test --release --test mechanism_info -- --ignored --nocapture print_mechanism_table` -->\n"
marker_b="<!-- end of mechanism table -->\n"
assert marker_a in s and marker_b in s, p+" lost the mechanism table's markers"
pre=s[:s.index(marker_a)]
post=s[s.index(marker_b)+len(marker_b):]
s=pre+marker_a+table+"\n"+marker_b+post
open(p,"w").write(s)
print(len(rows))
