"""Undoing the disguises filter-dodging attacks wear, so that models read the words (worker/inference.py).

Attackers write "1gn0re a|l prev!ous instruct1ons", "ɪɢɴᴏʀᴇ", "ｉｇｎｏｒｅ", "𝐢𝐠𝐧𝐨𝐫𝐞", "іgnоrе" (Cyrillic) or
hide the whole request in base64 or character escapes. To a WordPiece tokenizer each of these is a run of
rare pieces, not "ignore", so a model trained on plain attacks misses them. Ordinary text is left as it is:

- ``fold_letters``: letter forms that are only ever decoration in running text (small capitals, full-width
  and mathematical letters, circled letters) become the plain Latin letter or digit; Cyrillic and Greek
  look-alikes only inside words that mix them with Latin letters (``confusables``).
- ``fold_leet``: a word that mixes Latin letters with leetspeak stand-ins (0 1 3 4 5 7 8 9 @ $ + | ! €) is
  rewritten only when the rewrite is a whole word of the model's vocabulary ("1gn0re" -> "ignore"); code and
  identifiers ("utf8", "x86_64", "$HOME", "a+b") do not spell a word and stay.
- ``decode_encodings``: base64 runs that decode to readable text, HTML character references and ``\\xNN`` /
  ``\\u00NN`` escapes are replaced by what they encode (the two folds keep lengths; decoding does not).
"""

from __future__ import annotations

import base64
import binascii
import html
import itertools
import math
import re
import unicodedata
from collections.abc import Collection

from llm_shield.detection.confusables import fold_look_alikes

#: Latin small capitals and letter variants used to spell words in "fancy text" generators.
_SMALL_CAPITALS = {
    "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ꜰ": "f", "ɢ": "g", "ʜ": "h", "ɪ": "i", "ᴊ": "j", "ᴋ": "k",
    "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ʀ": "r", "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w",
    "ʏ": "y", "ᴢ": "z", "ɑ": "a", "ɡ": "g",
}
#: Blocks whose letters NFKC folds to one ASCII letter or digit: full-width Latin letters (not the full-width
#: digits of ordinary CJK text), mathematical alphanumerics, circled and squared letters.
_DECORATIVE_BLOCKS = ((0xFF21, 0xFF5A), (0x1D400, 0x1D7FF), (0x24B6, 0x24E9), (0x1F130, 0x1F149))


def _decorative_table() -> dict[int, str]:
    table = {ord(k): v for k, v in _SMALL_CAPITALS.items()}
    for first, last in _DECORATIVE_BLOCKS:
        for cp in range(first, last + 1):
            plain = unicodedata.normalize("NFKC", chr(cp))
            if len(plain) == 1 and plain.isascii() and plain.isalnum():
                table[cp] = plain
    return table


_DECORATIVE = _decorative_table()
_DECORATIVE_CHAR = re.compile("[" + "".join(sorted(_SMALL_CAPITALS)) + "".join(
    f"{chr(a)}-{chr(b)}" for a, b in _DECORATIVE_BLOCKS) + "]")


def fold_letters(text: str) -> str:
    """Decorative letter forms to plain ones, and look-alike letters in mixed-script words to Latin; same length."""
    if text.isascii():
        return text
    if _DECORATIVE_CHAR.search(text):
        text = text.translate(_DECORATIVE)
    return fold_look_alikes(text)


#: Leetspeak stand-ins and the letters they may stand for, most likely first.
_LEET = {"0": "o", "1": "il", "3": "e", "4": "a", "5": "s", "6": "gb", "7": "t", "8": "b", "9": "g", "@": "a",
         "$": "s", "+": "t", "|": "li", "!": "i", "€": "e"}
_LEET_CHARS = re.escape("".join(_LEET))
#: A letter next to a stand-in: the cheap test most texts fail.
_LEET_HINT = re.compile(f"[A-Za-z][{_LEET_CHARS}]|[{_LEET_CHARS}][A-Za-z]")
_WORD_CHARS = f"A-Za-z0-9{_LEET_CHARS}"
#: Candidate words: runs of letters, digits and stand-ins with a letter next to a stand-in somewhere (the lookahead
#: runs once per run, from its start, so the search stays linear); other words never reach Python code.
_LEET_WORD = re.compile(f"(?<![{_WORD_CHARS}])(?=[{_WORD_CHARS}]*?(?:[A-Za-z][{_LEET_CHARS}]|[{_LEET_CHARS}][A-Za-z]))"
                        f"[{_WORD_CHARS}]{{3,}}")
#: Rewrites tried per word at most (each ambiguous stand-in doubles them).
_MAX_SPELLINGS = 16


def _unleet(word: str, vocabulary: Collection[str]) -> str:
    letters = sum(c.isalpha() for c in word)
    if letters < 2 or letters == len(word) or any(c.isdigit() and c not in _LEET for c in word):
        return word
    if math.prod(len(_LEET.get(c, c)) for c in word) > _MAX_SPELLINGS:
        return word
    for spelling in itertools.product(*(_LEET.get(c, c) for c in word.lower())):
        candidate = "".join(spelling)
        if candidate in vocabulary:
            # the writer's letters stay; stand-ins take the case of a word in capitals, else lower case
            if all(c.isupper() for c in word if c.isalpha()):
                candidate = candidate.upper()
            return "".join(o if o.isalpha() else n for o, n in zip(word, candidate))
    return word


def fold_leet(text: str, vocabulary: Collection[str]) -> str:
    """Leetspeak words that spell a word of `vocabulary` (lower-case whole words) in plain letters; same length."""
    if not vocabulary or not _LEET_HINT.search(text):
        return text
    return _LEET_WORD.sub(lambda m: _unleet(m.group(), vocabulary), text)


_BASE64_RUN = re.compile(r"(?<![A-Za-z0-9+/=])[A-Za-z0-9+/]{24,}={0,2}(?![A-Za-z0-9+/=])")
_CHAR_REFERENCE = re.compile(r"&#(?:[0-9]{2,7}|[xX][0-9a-fA-F]{2,6});")
_ESCAPE = re.compile(r"\\x([2-7][0-9a-fA-F])|\\u00([2-7][0-9a-fA-F])")
#: Encoded characters a text needs before they are decoded: a stray "&#39;" or "\x41" is not a disguise.
_MIN_ENCODED = 3


def _readable(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(c.isprintable() or c in "\n\t" for c in text)
    # words, not a binary blob or a key: mostly printable, with spaces between them
    if printable < 0.95 * len(text) or text.count(" ") < 2:
        return None
    return text


def _decode_base64(match: re.Match[str]) -> str:
    run = match.group()
    if len(run) % 4:
        return run
    try:
        raw = base64.b64decode(run, validate=True)
    except (binascii.Error, ValueError):
        return run
    return _readable(raw) or run


def decode_encodings(text: str) -> str:
    """`text` with readable base64 runs, character references and ``\\x`` escapes decoded (length changes)."""
    if len(text) >= 24 and _BASE64_RUN.search(text):
        text = _BASE64_RUN.sub(_decode_base64, text)
    if "&#" in text and len(_CHAR_REFERENCE.findall(text)) >= _MIN_ENCODED:
        text = _CHAR_REFERENCE.sub(lambda m: html.unescape(m.group()), text)
    if "\\" in text and len(_ESCAPE.findall(text)) >= _MIN_ENCODED:
        text = _ESCAPE.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)), text)
    return text


def deobfuscate(text: str, vocabulary: Collection[str] = ()) -> str:
    """All of the above: encodings decoded, then letters and leetspeak folded."""
    return fold_leet(fold_letters(decode_encodings(text)), vocabulary)
