#!/usr/bin/env python3
"""Regenerates the README's mechanism table of the soft token from C_GetMechanismList and
C_GetMechanismInfo, as printed by tests/mechanism_info.rs (print_mechanism_table)."""
import os, subprocess
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
out=subprocess.run(["cargo","test","--release","--test","mechanism_info","--","--ignored","--nocapture","print_mechanism_table"],capture_output=True,text=True,cwd=REPO).stdout
rows=[l for l in out.splitlines() if l.startswith("|")]
assert rows, out[-2000:]
table="\n".join(rows)
p=os.path.join(REPO, "README.md")
s=open(p).read()
start=s.index("## Mechanisms of the soft token")
end=s.index("## Configuration")
sec=s[start:end]
marker_a="<!-- mechanism table: printed by `cargo test --release --test mechanism_info -- --ignored --nocapture print_mechanism_table` -->\n"
if marker_a in sec:
    pre=sec[:sec.index(marker_a)]
    post=sec[sec.index("<!-- end of mechanism table -->\n")+len("<!-- end of mechanism table -->\n"):]
else:
    pre="## Mechanisms of the soft token\n\n"
    post="\n"+sec[len("## Mechanisms of the soft token\n\n"):]
new=pre+marker_a+table+"\n<!-- end of mechanism table -->\n"+post
s=s[:start]+new+s[end:]
open(p,"w").write(s)
print(len(rows))
