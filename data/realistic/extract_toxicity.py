#!/usr/bin/env python3
"""Extract labelled TOXIC texts from the ToxicSpans dataset (Civil Comments subset, CC0-1.0).

Deterministic, standard library only. Input: the ToxicSpans repository (ipavlopoulos/toxic_spans,
commit beaf170538df8275c3447b2e26070f2f82e55272) either as a directory (a clone) or as a .zip / .tar.gz
archive of it. Only data/comments.csv, data/annotations.csv and data/spans.csv are read.

    python data/realistic/extract_toxicity.py SRC [--out data/realistic/toxicity_external.jsonl.gz]

Selection (label policy of data/SOURCES.md: abuse aimed at a person or group, no slurs, no attacks on
protected groups):
  * >= 3 span annotators, and >= 2 of them highlighted an `Insult` or `Threat` span;
  * no annotator highlighted an `Identity based Attack` span;
  * the text contains no slur (SLURS) and no protected-group term (PROTECTED), because an insult next to
    such a term is too often aimed at the group;
  * every rater highlighted at least one span (none ticked "not toxic" / "whole post");
  * 20..1200 characters, de-duplicated after case-folding / whitespace collapsing.
category: `threat` when >= 2 annotators marked a Threat span, else `insult`.
Posts are Civil Comments posts that >= 50% of the original crowd raters found toxic; there is no
NON_TOXIC side in this source.
"""
from __future__ import annotations

import argparse
import collections
import csv
import gzip
import io
import json
import re
import sys
import tarfile
import zipfile
from pathlib import Path

SOURCE = "toxicspans_civilcomments"
LICENSE = "CC0-1.0"
FILES = ("data/comments.csv", "data/annotations.csv", "data/spans.csv")

SLURS = re.compile(
    r"\b(nigg(?:er|a|ers|as|az)|negro(?:es)?|fag(?:got)?s?|retard(?:ed|s)?|trann(?:y|ies)|kikes?|spics?|chinks?|"
    r"wetbacks?|dykes?|cunts?|gooks?|towelheads?|ragheads?|sand ?niggers?|beaners?|coons?|homos?|queers?|"
    r"wogs?|paki?s?|twats?|darkies|redskins?|squaws?|gypp?(?:ed|y|ies)|injuns?|libtards?|mongoloids?|spazz?)\b",
    re.I,
)
PROTECTED = re.compile(
    r"\b(muslims?|islam\w*|christians?|christianity|jews?|jewish|judaism|catholics?|hindus?|sikhs?|buddhists?|"
    r"mormons?|atheists?|priests?|clergy|bishops?|pope|nuns?|pastors?|imams?|rabbis?|religio\w*|church(?:es)?|god|allah|jesus|"
    r"blacks?|whites?|brown|asians?|africans?|arabs?|mexicans?|latinos?|latinas?|hispanics?|chinese|japanese|"
    r"indians?|natives?|indigenous|aboriginals?|first nations|eskimos?|inuit|race|races|racial|racist\w*|ethnic\w*|"
    r"immigrants?|migrants?|refugees?|illegals?|aliens?|foreigners?|"
    r"gays?|lesbians?|bisexual\w*|homosexual\w*|transgender\w*|trans|lgbt\w*|queer|sexual orientation|"
    r"women|woman|female\w*|girls?|ladies|lady|feminis\w*|males?|men|man|boys?|gender\w*|sex|sexist|"
    r"disabled|disabilit\w*|handicapped|autis\w*|mentally ill|"
    r"old people|elderly|seniors?)\b",
    re.I,
)


def _norm(t: str) -> str:
    return re.sub(r"\s+", " ", t).strip().casefold()


def read_sources(src: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    if src.is_dir():
        for f in FILES:
            out[f] = (src / f).read_text(encoding="utf-8")
    elif src.suffix == ".zip":
        with zipfile.ZipFile(src) as z:
            for n in z.namelist():
                for f in FILES:
                    if n.endswith("/" + f) or n == f:
                        out[f] = z.read(n).decode("utf-8")
    else:
        with tarfile.open(src) as t:
            for m in t.getmembers():
                for f in FILES:
                    if m.name.endswith("/" + f) or m.name == f:
                        out[f] = t.extractfile(m).read().decode("utf-8")
    missing = [f for f in FILES if f not in out]
    if missing:
        sys.exit(f"missing in {src}: {missing}")
    return out


def extract(src: Path) -> list[dict]:
    d = read_sources(src)
    comments = {r["comment_id"]: r["comment_text"] for r in csv.DictReader(io.StringIO(d["data/comments.csv"]))}
    ann_comment = {r["annotation"]: r["comment_id"] for r in csv.DictReader(io.StringIO(d["data/annotations.csv"]))}
    types: dict[str, set] = collections.defaultdict(set)
    for r in csv.DictReader(io.StringIO(d["data/spans.csv"])):
        types[r["annotation"]].add(r["type"])
    per: dict[str, list[set]] = collections.defaultdict(list)
    for a, cid in ann_comment.items():
        per[cid].append(types.get(a, set()))
    rows, seen = [], set()
    for cid in sorted(per, key=int):
        sets = per[cid]
        text = re.sub(r"[ \t]+", " ", comments.get(cid, "")).strip()
        if len(sets) < 3 or not (20 <= len(text) <= 1200):
            continue
        if any(any(t.startswith("Identity") for t in s) for s in sets):
            continue
        n_ins = sum(any(t.startswith("Insu") for t in s) for s in sets)
        n_thr = sum("Threat" in s for s in sets)
        if n_ins < 2 and n_thr < 2:
            continue
        if any(not s for s in sets):  # some rater saw no toxic span (not toxic / whole post): ambiguous
            continue
        if SLURS.search(text) or PROTECTED.search(text):
            continue
        k = _norm(text)
        if k in seen:
            continue
        seen.add(k)
        rows.append({
            "text": text,
            "label": "TOXIC",
            "source": SOURCE,
            "category": "threat" if n_thr >= 2 else "insult",
            "lang": "en",
            "license": LICENSE,
            "origin": f"ipavlopoulos/toxic_spans@beaf170:data/comments.csv#comment_id={cid}",
        })
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("src", type=Path)
    ap.add_argument("--out", type=Path, default=Path(__file__).with_name("toxicity_external.jsonl.gz"))
    a = ap.parse_args()
    rows = extract(a.src)
    buf = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8")
    with open(a.out, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="") as g:
        g.write(buf)
    c = collections.Counter((r["label"], r["category"]) for r in rows)
    print(f"{len(rows)} rows -> {a.out}: {dict(c)}")


if __name__ == "__main__":
    main()
