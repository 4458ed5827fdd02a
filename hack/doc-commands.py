#!/usr/bin/env python3
"""The shell commands the docs show, and whether a test runs each one.

A command is a line of a ```sh (bash, shell, console) block, or a line starting with "$ " in any
other fenced block, in README.md, docs/*.md and the chart's README; a line ending in a backslash
continues on the next, and a trailing "# comment" is dropped. tests/docs/commands.txt says who runs
each command, one per line as "KIND<TAB>COMMAND":

  demo              hack/demo.sh runs it as written (checked against the demo's transcript,
                    GDP_DEMO_COMMANDS, with --demo-transcript)
  sandbox:GROUP     tests/docs/run-doc-commands.sh (make test) runs the group's commands in
                    order, in private namespaces with build/release from the test build
  script:PATH       the script PATH (run by make test or make e2e) runs it as written
  device            needs a real GPU node; not run here
  record            the command of a recorded measurement, run again when it is re-measured

A "<word>" in a command stands for any one word (the demo's node name, a values file, ...).
A command may be listed more than once (in several sandbox groups).

Usage:
  hack/doc-commands.py list                 every command, as "FILE:LINE<TAB>COMMAND"
  hack/doc-commands.py check                fails on a command with no entry, an entry no doc
                                            shows, or a script: entry whose script lacks it
  hack/doc-commands.py groups               the sandbox groups, in order
  hack/doc-commands.py sandbox GROUP        the group's commands, one per line, in order
  hack/doc-commands.py --demo-transcript F  fails on a demo entry the demo did not run
"""

import glob
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIST = os.path.join(ROOT, "tests", "docs", "commands.txt")
SHELL_LANGS = {"sh", "bash", "shell", "console"}


def doc_files():
    files = [os.path.join(ROOT, "README.md"), os.path.join(ROOT, "deployments/helm/gpu-device-plugin/README.md")]
    files += sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))
    return files


def norm(cmd):
    return re.sub(r"\s+", " ", cmd).strip()


def strip_comment(line):
    """Drops a trailing ' # ...' that is outside quotes."""
    quote = None
    for i, c in enumerate(line):
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line


def commands():
    """[(file:line, command)] in the order the docs show them."""
    out = []
    for path in doc_files():
        rel = os.path.relpath(path, ROOT)
        lang = None
        pending, start = "", 0
        with open(path, encoding="utf-8") as f:
            for n, raw in enumerate(f, 1):
                line = raw.rstrip("\n")
                fence = re.match(r"^\s*```(\S*)", line)
                if fence:
                    lang = None if lang is not None else fence.group(1).lower()
                    pending = ""
                    continue
                if lang is None:
                    continue
                if pending:
                    text = line.strip()
                else:
                    if lang in SHELL_LANGS:
                        text = line.strip()
                        if text.startswith("$ "):
                            text = text[2:]
                    elif line.startswith("$ "):
                        text = line[2:]
                    else:
                        continue
                    start = n
                    if not text or text.startswith("#"):
                        continue
                text = strip_comment(text)
                if text.endswith("\\"):
                    pending += text[:-1] + " "
                    continue
                cmd = norm(pending + text)
                pending = ""
                if cmd:
                    out.append((f"{rel}:{start}", cmd))
    return out


def entries():
    out = []
    with open(LIST, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip() or line.startswith("#"):
                continue
            if "\t" not in line:
                sys.exit(f"{LIST}:{n}: expected KIND<TAB>COMMAND, saw {line.rstrip()!r}")
            kind, cmd = line.rstrip("\n").split("\t", 1)
            if not (kind in ("demo", "device", "record") or kind.startswith(("script:", "sandbox:"))):
                sys.exit(f"{LIST}:{n}: unknown kind {kind!r}: accepted are demo, sandbox:GROUP, script:PATH, "
                         "device, record")
            out.append((n, kind, norm(cmd)))
    return out


def pattern(cmd):
    """A regex for the command: its words as written, each "<word>" any one word."""
    parts = re.split(r"(<[^<>\s]+>)", cmd)
    return re.compile("".join(r"\S+" if re.fullmatch(r"<[^<>\s]+>", x) else re.escape(x) for x in parts))


def check():
    shown = commands()
    listed = entries()
    listed_set = {c for _, _, c in listed}
    bad = []
    for where, cmd in shown:
        if cmd not in listed_set:
            bad.append(f"{where}: no test runs `{cmd}`: add it to tests/docs/commands.txt with who runs it")
    shown_set = {c for _, c in shown}
    for n, kind, cmd in listed:
        if cmd not in shown_set:
            bad.append(f"tests/docs/commands.txt:{n}: `{cmd}` is in no doc any more: remove the line")
        if kind.startswith("script:"):
            script = os.path.join(ROOT, kind[len("script:"):])
            try:
                with open(script, encoding="utf-8") as f:
                    # Its code, not its comments; continued lines joined.
                    code = "".join(l for l in f if not l.lstrip().startswith("#"))
                    body = norm(code.replace("\\\n", " "))
            except OSError as e:
                bad.append(f"tests/docs/commands.txt:{n}: {kind}: {e}")
                continue
            if not pattern(cmd).search(body):
                bad.append(f"tests/docs/commands.txt:{n}: {kind[7:]} does not run `{cmd}` as written")
    for b in bad:
        print(b)
    print(f"{len(shown)} commands in the docs; {len(bad)} problems")
    return 1 if bad else 0


def demo_check(transcript):
    with open(transcript, encoding="utf-8") as f:
        ran = [norm(l) for l in f]
    demo = [(n, c) for n, k, c in entries() if k == "demo"]
    missing = [(n, c) for n, c in demo if not any(pattern(c).fullmatch(r) for r in ran)]
    for n, c in missing:
        print(f"tests/docs/commands.txt:{n}: the demo did not run `{c}`")
    print(f"{len(demo)} demo commands; {len(missing)} not run")
    return 1 if missing else 0


def main():
    args = sys.argv[1:]
    if args == ["list"]:
        for where, cmd in commands():
            print(f"{where}\t{cmd}")
        return 0
    if args == ["check"]:
        return check()
    if args == ["groups"]:
        seen = []
        for _, kind, _ in entries():
            if kind.startswith("sandbox:") and kind[8:] not in seen:
                seen.append(kind[8:])
        print("\n".join(seen))
        return 0
    if len(args) == 2 and args[0] == "sandbox":
        for _, kind, cmd in entries():
            if kind == "sandbox:" + args[1]:
                print(cmd)
        return 0
    if len(args) == 2 and args[0] == "--demo-transcript":
        return demo_check(args[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
