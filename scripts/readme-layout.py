#!/usr/bin/env python3
"""Writes README.md's per-file layout: for every source file of shared/, cli/, functions/ and
the test harness, its path and the first sentence of its `//!` doc, between the
`<!-- layout:begin -->` and `<!-- layout:end -->` markers.

    python3 scripts/readme-layout.py          # rewrite README.md
    python3 scripts/readme-layout.py --check  # exit 1 if README.md is out of date (the test command runs this)
"""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- layout:begin -->", "<!-- layout:end -->"


def first_sentence(path: pathlib.Path) -> str:
    doc = []
    for line in path.read_text().split("\n"):
        if not line.startswith("//!"):
            break
        text = line[3:].strip()
        if not text:
            if doc:
                break
            continue
        doc.append(text)
    text = " ".join(doc)
    text = re.sub(r"\[(`[^`]+`)\](\([^)]*\))?", r"\1", text)
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    m = re.match(r"(.+?\.)(\s|$)", text)
    text = m.group(1) if m else text
    if len(text) > 220:
        text = text[:217].rsplit(" ", 1)[0] + " …"
    return text.replace("|", "\\|") or "(no `//!` doc)"


def layout() -> str:
    files = subprocess.check_output(
        ["git", "ls-files", "shared/*/src/*", "functions/*/src/*", "cli/src/*", "tests/harness/*"],
        cwd=ROOT, text=True,
    ).split()
    groups: dict[str, list[tuple[str, str]]] = {}
    for f in (f for f in files if f.endswith(".rs")):
        parts = f.split("/")
        if parts[0] in ("shared", "functions"):
            group, rel = "/".join(parts[:2]), "/".join(parts[2:])
        elif parts[0] == "cli":
            group, rel = "cli", "/".join(parts[1:])
        else:
            group, rel = "tests/harness", "/".join(parts[2:])
        groups.setdefault(group, []).append((rel, first_sentence(ROOT / f)))
    order = (sorted(g for g in groups if g.startswith("shared/")) + ["cli"]
             + sorted(g for g in groups if g.startswith("functions/")) + ["tests/harness"])
    out = []
    for g in order:
        out.append(f"<details><summary><code>{g}/</code> ({len(groups[g])} files)</summary>\n")
        out.append("| File | Its job |\n|---|---|")
        out.extend(f"| `{rel}` | {job} |" for rel, job in sorted(groups[g]))
        out.append("\n</details>\n")
    return "\n".join(out)


def main() -> int:
    readme = ROOT / "README.md"
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"README.md has no {BEGIN} … {END} section", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n{layout()}\n{END}{tail}"
    if "--check" in sys.argv:
        if new != text:
            print("README.md's file layout is out of date: run python3 scripts/readme-layout.py",
                  file=sys.stderr)
            return 1
        return 0
    readme.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
