"""Look-alike letters folded back to Latin inside mixed-script words ("іgnоrе" with Cyrillic і, о, е -> "ignore").

Attackers swap Cyrillic and Greek letters that look Latin into their words to dodge filters; to a tokenizer
"іgnоrе" is rare pieces, not "ignore", so neither rules nor models see the word. Only words that mix Latin
letters with such look-alikes are folded: Russian or Greek text (whole words in one script) is left as it is.
Each character maps to one character, so lengths and offsets (training spans) do not move.
"""

from __future__ import annotations

import re

#: Cyrillic and Greek letters that render like a Latin letter, by the letter they imitate.
_LOOK_ALIKES = {
    "a": "аα", "b": "Ьь", "c": "сϲ", "d": "ԁ", "e": "еεё", "h": "һ", "i": "іιї", "j": "ј", "k": "κк", "l": "ӏ",
    "n": "η", "o": "оοσ", "p": "рρ", "q": "ԛ", "s": "ѕ", "t": "τт", "u": "υ", "v": "ν", "w": "ԝ", "x": "хχ",
    "y": "уγ", "A": "АΑ", "B": "ВΒ", "C": "С", "E": "ЕΕЁ", "H": "НΗ", "I": "ІΙЇ", "J": "Ј", "K": "КΚ", "M": "МΜ",
    "N": "Ν", "O": "ОΟ", "P": "РΡ", "S": "Ѕ", "T": "ТΤ", "X": "ХΧ", "Y": "УΥ", "Z": "Ζ",
}
_TO_LATIN = str.maketrans({c: latin for latin, chars in _LOOK_ALIKES.items() for c in chars})
_LOOK_ALIKE_CLASS = "".join(sorted({c for chars in _LOOK_ALIKES.values() for c in chars}))
_LOOK_ALIKE = re.compile(f"[{_LOOK_ALIKE_CLASS}]")
_ASCII_LETTER = re.compile("[A-Za-z]")
_WORD = re.compile(r"[^\W\d_]+")


def _fold_word(match: re.Match[str]) -> str:
    word = match.group()
    if _LOOK_ALIKE.search(word) and _ASCII_LETTER.search(word):
        return word.translate(_TO_LATIN)
    return word


def fold_look_alikes(text: str) -> str:
    """`text` with the look-alike letters of its mixed-script words replaced by the Latin letters they imitate."""
    # each word is scanned a fixed number of times: linear also in long runs of CJK letters without spaces
    if text.isascii() or not _LOOK_ALIKE.search(text):
        return text
    return _WORD.sub(_fold_word, text)
