#!/usr/bin/env python3
"""spec/e2e/lib/guide_blocks.py DSTREAM DOC...: runs the runnable blocks of the docs and
compares what they print with the text the docs show after them (issue 18: docs that cannot
drift). Prints one TAP line per run, "ok - docs/guide.md:123 first.lua" or "not ok - ..."
with a diff.

What a doc holds, and how it is read:
- A file: a fenced block whose first line names it, `-- name.lua` (Lua) or `# name.py`
  (Python); the rest of that line may describe it. It is written to the run directory.
- A run: a fenced `text` block whose first lines are commands, `$ dstream name.lua`; the lines
  after them are what the commands print, standard output first, then standard error. More
  `$ ` lines further down start another run in the same directory. The commands run with bash
  in a fresh directory holding every file named so far in the doc and, beside them, the
  repository's top-level entries (examples/, ...) and build/dstream, `dstream` being the
  interpreter under test.
- A marker in an HTML comment on the line before a run block changes how it is compared:
    <!-- guide-test: skip WHY -->       not run (WHY says why: a server, a terminal, ...)
    <!-- guide-test: lines -->          every line shown must be printed, in any order, and
                                        nothing else (batch boundaries that vary)
    <!-- guide-test: contains -->       every line shown must be printed (others may be too)
  Without a marker the output must be the same, line for line.
- Everywhere, a batch time of the system clock (13 digits), a wall-clock time of day, a
  memory address and a number of seconds with decimals match any other, and trailing blanks
  and blank lines at the end do not count.
"""
import difflib
import os
import re
import subprocess
import sys
import tempfile

FENCE = re.compile(r"^```(\w*)\s*$")
MARKER = re.compile(r"^<!--\s*guide-test:\s*(\w+)\s*(.*?)\s*-->\s*$")
FILE_LINE = re.compile(r"^(?:--|#)\s+([\w.-]+\.(?:lua|py|txt))\b")


def blocks(path):
    """(lang, start line, lines, marker) for every fenced block of the file."""
    out, lines = [], open(path, encoding="utf-8").read().split("\n")
    i, marker = 0, None
    while i < len(lines):
        m = MARKER.match(lines[i])
        if m:
            marker = (m.group(1), m.group(2))
            i += 1
            continue
        f = FENCE.match(lines[i])
        if f:
            start, body = i + 1, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            out.append((f.group(1), start, body, marker))
            marker = None
        elif lines[i].strip():
            marker = None if not lines[i].startswith("<!--") else marker
        i += 1
    return out


def normalize(text):
    text = re.sub(r"\b1[5-9]\d{11}\b", "<time>", text)  # a batch time of the system clock, ms
    text = re.sub(r"\b\d\d:\d\d:\d\d\.\d{3}\b", "<clock>", text)  # a time of day
    text = re.sub(r"\b0x[0-9a-f]{6,16}\b", "<address>", text)
    text = re.sub(r"\b\d+\.\d+ seconds\b", "<n> seconds", text)
    lines = [l.rstrip() for l in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def segments(body):
    """A run block's (commands, expected lines) pairs: each starts at its `$ ` lines."""
    out, open_quote = [], False
    for line in body:
        if open_quote:  # a command's quoted argument goes on over lines
            out[-1][0][-1] += "\n" + line
        elif line.startswith("$ ") and (not out or out[-1][1]):
            out.append(([line[2:]], []))
        elif line.startswith("$ "):
            out[-1][0].append(line[2:])
        else:
            out[-1][1].append(line)
            continue
        open_quote = out[-1][0][-1].count("'") % 2 == 1
    return out


def run_block(dstream, doc, start, body, marker, files):
    good = True
    with tempfile.TemporaryDirectory(prefix="dstream-guide.") as d:
        for fname, content in files.items():
            with open(os.path.join(d, fname), "w", encoding="utf-8") as f:
                f.write(content)
        for entry in os.listdir(ROOT):
            if not entry.startswith(".") and entry != "build" and not os.path.exists(os.path.join(d, entry)):
                os.symlink(os.path.join(ROOT, entry), os.path.join(d, entry))
        for bindir in (os.path.join(d, ".bin"), os.path.join(d, "build")):
            os.mkdir(bindir)
            os.symlink(dstream, os.path.join(bindir, "dstream"))
        for cmds, expected in segments(body):
            good = run(d, doc, start, cmds, expected, marker) and good
    return good


def run(d, doc, start, cmds, body, marker):
    expected = normalize("\n".join(body))
    name = "%s:%d %s" % (doc, start, " ; ".join(cmds))
    if marker and marker[0] == "skip":
        print("ok - %s # SKIP %s" % (name, marker[1] or "marked in the doc"))
        return True
    env = dict(os.environ, PATH=os.path.join(d, ".bin") + ":" + os.environ["PATH"], LC_ALL="C")
    env.pop("DSTREAM_LUA_DIR", None)
    try:
        p = subprocess.run(["bash", "-c", "\n".join(cmds)], cwd=d, env=env, capture_output=True,
                           text=True, timeout=120, stdin=subprocess.DEVNULL)
        got_text = p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        got_text = "(timed out after 120 s)\n" + (e.stdout or b"").decode() + (e.stderr or b"").decode()
    got = normalize(got_text)
    how = marker[0] if marker else "same"
    if how == "lines":
        good = sorted(got) == sorted(expected)
    elif how == "contains":
        good = all(l in got for l in expected)
    else:
        good = got == expected
    if good:
        print("ok - %s" % name)
        return True
    print("not ok - %s (%s)" % (name, how))
    for l in difflib.unified_diff(expected, got, "the doc shows", "it printed", lineterm="", n=2):
        print("#   " + l)
    return False


def main():
    dstream, docs = os.path.abspath(sys.argv[1]), sys.argv[2:]
    failed = 0
    for doc in docs:
        files = {}
        for lang, start, body, marker in blocks(doc):
            if lang in ("lua", "python", "text", "") and body:
                m = FILE_LINE.match(body[0])
                if m and lang in ("lua", "python"):
                    files[m.group(1)] = "\n".join(body) + "\n"
                    continue
            if lang == "text" and body and body[0].startswith("$ "):
                if not run_block(dstream, doc, start, body, marker, files):
                    failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
