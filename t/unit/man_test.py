#!/usr/bin/env python3
"""man_test.py SRC BUILD — the man pages are clean and complete.

Fails when `mandoc -T lint -W warning` says anything about outpostd(8),
outpost(8) or outpost.conf(5); when a key of the configuration schema
(the first argument of every CFG_* entry of the cfg_opt_t tables in
conf/*.c) or of the example conf/outpost.conf has no `.It Cm KEY` (or Ic)
item under the `.Ss` of its section in outpost.conf.5; when a command word
or an option of `outpost --help` is missing from outpost.8; or when an
option of outpostd's usage text has no `.It Fl` item in outpostd.8.
A missing mandoc is a failure (`make deps` installs it), never a skip.
"""
import os
import re
import shutil
import subprocess
import sys

PAGES = ("mta/outpostd.8", "mta/cli/outpost.8", "conf/outpost.conf.5")

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


# ---- mandoc -T lint ---------------------------------------------------


def check_lint(src):
    mandoc = shutil.which("mandoc")
    if mandoc is None:
        fail("mandoc is not installed: run `make deps` (Debian package "
             "mandoc); the man pages cannot be checked without it")
        return
    for page in PAGES:
        r = subprocess.run([mandoc, "-T", "lint", "-W", "warning",
                            os.path.join(src, page)],
                           capture_output=True, text=True)
        out = (r.stdout + r.stderr).strip()
        if r.returncode != 0 or out:
            fail("mandoc -T lint -W warning %s (exit %d):\n%s" %
                 (page, r.returncode, out))


# ---- the configuration schema -----------------------------------------


def schema_tables(src):
    """{table name: [(kind, key, subtable or None)]} of conf/*.c."""
    tables = {}
    conf = os.path.join(src, "conf")
    for name in sorted(os.listdir(conf)):
        if not name.endswith(".c"):
            continue
        text = read(os.path.join(conf, name))
        for m in re.finditer(r"cfg_opt_t\s+(\w+)\[\]\s*=\s*\{(.*?)\n\};",
                             text, re.S):
            rows = []
            for e in re.finditer(
                    r"\b(CFG_\w+)\(\s*\"([^\"]+)\"\s*,\s*(\w+)?", m.group(2)):
                kind, key, arg = e.groups()
                rows.append((kind, key, arg if kind == "CFG_SEC" else None))
            tables[m.group(1)] = rows
    return tables


def schema_sections(tables):
    """{top-level section ("root" for the top): set of its keys, those of
    its nested sections included}, and {nested section: its parent}."""
    if "conf_opts" not in tables:
        fail("conf/conf.c: the root table conf_opts was not found")
        return {}, {}
    sections = {"root": set()}
    nested = {}

    def walk(table, top, depth):
        for kind, key, sub in tables.get(table, []):
            if kind == "CFG_SEC":
                if sub not in tables:
                    fail("section %s: table %s not found" % (key, sub))
                    continue
                if depth == 0:
                    sections[key] = set()
                    walk(sub, key, 1)
                else:
                    nested[key] = top
                    sections[top].add(key)
                    walk(sub, top, depth + 1)
            else:
                sections[top].add(key)

    walk("conf_opts", "root", 0)
    return sections, nested


def example_keys(text):
    """[(top section or "root", key, line)] of the example file, comments
    and quoted strings skipped; a { after = or += is a list, not a section."""
    out = []
    stack = []  # top-level section name per open brace (None for lists)
    tokens = re.finditer(
        r'"(?:\\.|[^"\\])*"|/\*.*?\*/|#[^\n]*|//[^\n]*|\+=|[={}]|[^\s={}"]+'
        r"|\n", text, re.S)
    line = 1
    prev = []  # the tokens since the last ; { } or newline
    for t in tokens:
        tok = t.group(0)
        if tok.startswith("/*"):
            line += tok.count("\n")
            continue
        if tok.startswith("#") or tok.startswith("//"):
            continue
        if tok == "\n":
            line += 1
            continue
        if tok == "{":
            if prev and prev[-1] in ("=", "+="):
                stack.append(None)
            else:
                name = prev[0] if prev else "?"
                top = next((s for s in reversed(stack) if s), None)
                if top is None:
                    stack.append(name)
                else:
                    out.append((top, name, line))
                    stack.append(top)
            prev = []
            continue
        if tok == "}":
            if stack:
                stack.pop()
            prev = []
            continue
        if tok in ("=", "+=") and prev:
            top = next((s for s in reversed(stack) if s), None)
            if not stack or stack[-1] is not None:
                out.append((top or "root", prev[-1], line))
        prev.append(tok)
        if tok not in ("=", "+=") and len(prev) > 1 and prev[-2] in (
                "=", "+="):
            prev = []
    return out


def documented_keys(page):
    """{section ("root" under .Sh TOP LEVEL, else the first word of an .Ss
    heading): keys given an .It Cm or .It Ic item under it}."""
    doc = {}
    cur = None
    for ln in page.splitlines():
        if ln.startswith(".Sh "):
            cur = "root" if ln[4:].strip() == "TOP LEVEL" else None
        elif ln.startswith(".Ss "):
            cur = ln[4:].split()[0].strip('"')
        elif cur is not None:
            m = re.match(r"\.It\s+(?:Cm|Ic)\s+(\S+)", ln)
            if m:
                doc.setdefault(cur, set()).add(m.group(1))
    return doc


def check_conf(src):
    page = read(os.path.join(src, "conf/outpost.conf.5"))
    doc = documented_keys(page)
    sections, _ = schema_sections(schema_tables(src))
    nkeys = 0
    for sec, keys in sorted(sections.items()):
        if sec != "root" and sec not in doc:
            fail("outpost.conf.5: no .Ss %s (section %s of conf/*.c)" %
                 (sec, sec))
            continue
        for key in sorted(keys):
            nkeys += 1
            if key not in doc.get(sec, set()):
                fail("outpost.conf.5: %s%s is not documented (.It Cm %s "
                     "under %s)" % ("" if sec == "root" else sec + ".", key,
                                   key, ".Sh TOP LEVEL" if sec == "root"
                                   else ".Ss " + sec))
    if nkeys < 100:
        fail("conf/*.c: only %d keys found: the schema parser is broken" %
             nkeys)
    ex = example_keys(read(os.path.join(src, "conf/outpost.conf")))
    if len(ex) < 100:
        fail("conf/outpost.conf: only %d keys found: the parser is broken" %
             len(ex))
    for sec, key, line in ex:
        if key not in doc.get(sec, set()):
            fail("conf/outpost.conf:%d: %s%s is not documented in "
                 "outpost.conf.5" % (line, "" if sec == "root" else
                                     sec + ".", key))
    print("outpost.conf.5: %d schema keys, %d example keys checked" %
          (nkeys, len(ex)))


# ---- the programs' usage texts ----------------------------------------


def usage_text(argv):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except OSError as e:
        fail("%s: %s (build first)" % (argv[0], e))
        return ""
    return r.stdout + r.stderr


def flags_in(text):
    return sorted(set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", text)))


def documented_flags(page):
    """Every word after an Fl macro, as "-x" / "--long"."""
    out = set()
    for ln in page.splitlines():
        if not ln.startswith("."):
            continue
        words = ln.split()
        for i, w in enumerate(words[:-1]):
            if w == "Fl":
                arg = words[i + 1]
                out.add("-" + arg)
                if not arg.startswith("-"):
                    out.update("-" + c for c in arg)  # .Fl tv
    return out


def check_cli(src, build):
    page = read(os.path.join(src, "mta/cli/outpost.8"))
    text = usage_text([os.path.join(build, "bin/outpost"), "--help"])
    if "commands:" not in text:
        fail("outpost --help: no command list in:\n" + text)
        return
    cmds = []
    for ln in text.split("commands:", 1)[1].splitlines():
        m = re.match(r"  ([a-z][\w-]*)(?: ([a-z][\w-]*))?(?: |$)", ln)
        if m:
            cmds.append(m.groups())
    if len(cmds) < 10:
        fail("outpost --help: only %d commands found" % len(cmds))
    # The item of the command itself (.It Ic, or the .Ic line that opens an
    # .It Xo), not a mention in text nor a row of the RIGHTS table
    # (.It Ic ... Ta ...).
    lines = page.splitlines()
    heads = [lines[i + 1] if ln.strip() == ".It Xo" else ln
             for i, ln in enumerate(lines[:-1])
             if ln.startswith(".It ") and " Ta " not in ln]
    items = "\n".join(heads)
    for cmd, sub in cmds:
        words = cmd if sub is None else cmd + r"\s+" + sub
        if not re.search(r"^\.(?:It\s+)?Ic\s+" + words + r"(?:\s|$)", items,
                         re.M):
            fail("outpost.8: command `%s` of outpost --help is not "
                 "documented (.It Ic %s)" % (" ".join(filter(None, (cmd,
                                                                    sub))),
                                              " ".join(filter(None,
                                                              (cmd, sub)))))
    have = documented_flags(page)
    for flag in flags_in(text):
        if flag not in have:
            fail("outpost.8: option %s of outpost --help is not documented "
                 "(Fl %s)" % (flag, flag[1:]))
    print("outpost.8: %d commands, %d options checked" %
          (len(cmds), len(flags_in(text))))


def check_daemon(src, build):
    page = read(os.path.join(src, "mta/outpostd.8"))
    text = usage_text([os.path.join(build, "bin/outpostd"), "-h"])
    flags = flags_in(text)
    if "usage" not in text or not flags:
        fail("outpostd -h: no usage text:\n" + text)
        return
    # Every flag an .It line names (".It Fl h , Fl -help" names both).
    items = set()
    for line in re.findall(r"^\.It\s.*$", page, re.M):
        items.update(re.findall(r"\bFl\s+([^\s,]+)", line))
    for flag in flags:
        if flag[1:] not in items:
            fail("outpostd.8: option %s of outpostd's usage has no "
                 ".It Fl %s" % (flag, flag[1:]))
    print("outpostd.8: %d options checked" % len(flags))


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: man_test.py SRC BUILD")
    src, build = sys.argv[1], sys.argv[2]
    check_lint(src)
    check_conf(src)
    check_cli(src, build)
    check_daemon(src, build)
    if failures:
        print("%d failure(s)" % len(failures))
        sys.exit(1)
    print("ok")


if __name__ == "__main__":
    main()
