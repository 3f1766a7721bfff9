"""Fast heuristic scanners: regular expressions and character checks that need no model."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from llm_shield.detection.confusables import fold_look_alikes


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: re.Pattern[str]
    score: float  # how sure a match alone makes us that the text is risky


@dataclass(frozen=True)
class HeuristicVerdict:
    """The strongest rule that fired (score 0 when none did) and the names of all that fired."""

    score: float = 0.0
    rules: tuple[str, ...] = ()


#: The verdict of most texts: immutable, so one instance serves them all.
NOTHING_FIRED = HeuristicVerdict()


def _rx(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern, re.IGNORECASE | re.DOTALL)


_OVERRIDE_VERBS = r"(?:ignore|disregard|forget|override|bypass|skip|drop)"
_PRIOR = r"(?:all\s+|any\s+|the\s+|your\s+|my\s+|these\s+|those\s+)*(?:previous|prior|above|earlier|preceding|initial|original|system)"
_INSTRUCTIONS = r"(?:instructions?|prompts?|rules|directives|guidelines|context|messages?)"

PROMPT_INJECTION_RULES: tuple[Rule, ...] = (
    Rule("instruction_override", _rx(rf"\b{_OVERRIDE_VERBS}\s+{_PRIOR}\s+{_INSTRUCTIONS}\b"), 0.95),
    Rule("system_prompt_extraction", _rx(r"\b(?:reveal|print|show|repeat|output|leak|tell me)\b.{0,40}\b(?:system|hidden|initial|secret)\s+(?:prompt|instructions?)\b"), 0.9),
    Rule("jailbreak_persona", _rx(r"\b(?:you are now|act as|pretend to be|from now on you are)\b.{0,40}\b(?:DAN|jailbroken|unrestricted|unfiltered|evil|without (?:any )?(?:rules|restrictions|filters))\b"), 0.9),
    Rule("developer_mode", _rx(r"\b(?:developer|god|debug|jailbreak)\s+mode\s+(?:enabled|activated|on)\b"), 0.9),
    Rule("new_instructions", _rx(r"\b(?:new|updated|real)\s+instructions?\s*:"), 0.6),
    Rule("ai_addressed", _rx(r"\b(?:note|message|instruction)s?\s+(?:to|for)\s+(?:the\s+)?(?:AI|assistant|LLM|language model|chatbot)\b"), 0.7),
    Rule("non_english_override", _rx(
        r"ignora\s+(?:todas\s+)?(?:las\s+)?instrucciones|ignorez\s+(?:toutes\s+)?(?:les\s+)?instructions|"
        r"ignoriere\s+(?:alle\s+)?(?:vorherigen\s+)?anweisungen|ignore\s+(?:todas\s+)?as\s+instruções|"
        r"ignora\s+(?:tutte\s+)?le\s+istruzioni|忽略(?:之前|以上|所有)|игнорируй\s+(?:все\s+)?(?:предыдущие\s+)?инструкции|"
        r"以前の指示を無視"), 0.9),
)

SECRET_RULES: tuple[Rule, ...] = (
    Rule("aws_access_key", re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), 0.95),
    Rule("openai_api_key", re.compile(r"\bsk-(?:proj-)?[A-Za-z0-9_-]{20,}\b"), 0.95),
    Rule("github_token", re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"), 0.95),
    Rule("slack_token", re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}\b"), 0.95),
    Rule("private_key_block", re.compile(r"-----BEGIN (?:RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----"), 0.99),
    Rule("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\b"), 0.9),
    Rule("password_assignment", _rx(r"\b(?:password|passwd|secret|api[_-]?key)\s*[:=]\s*['\"]?[^\s'\"]{8,}"), 0.7),
)

TOXICITY_RULES: tuple[Rule, ...] = (
    Rule("threat", _rx(r"\bi(?:'ll| will| am going to|'m going to)\s+(?:kill|hurt|destroy|find)\s+you\b"), 0.95),
    Rule("insult", _rx(r"\byou(?:'re| are)\s+(?:a\s+|an\s+|such\s+an?\s+)?(?:fucking\s+)?(?:idiot|moron|stupid|worthless|pathetic|loser|imbecile)\b"), 0.9),
    Rule("profanity_at_person", _rx(r"\b(?:fuck|screw)\s+(?:you|off)\b"), 0.9),
)

#: Zero-width, bidirectional control and Unicode tag characters: invisible to a reader, not to a model.
_INVISIBLE = re.compile("[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff\U000e0000-\U000e007f]")


#: Words one of which every rule of a set needs (lower-case): texts with none skip that set's regexes.
#: Most traffic has none, which keeps heuristics cheap enough to run on every row.
PROMPT_INJECTION_KEYWORDS = (
    "ignor", "disregard", "forget", "override", "bypass", "skip", "drop", "reveal", "print", "show", "repeat",
    "output", "leak", "tell me", "you are now", "act as", "pretend", "from now on", " mode", "instruction",
    "note", "message", "忽略", "игнорируй", "無視",
)
SECRET_KEYWORDS = ("akia", "asia", "sk-", "gh", "xox", "-----begin", "eyj", "pass", "secret", "api")
TOXICITY_KEYWORDS = ("kill", "hurt", "destroy", "find you", "idiot", "moron", "stupid", "worthless", "pathetic",
                     "loser", "imbecile", "fuck", "screw")
_LETTER_SPACED = re.compile(r"(?<!\w)\w(?: \w){4,}(?!\w)")  # 5+ single letters apart: "i g n o r e"
#: Part of every `_LETTER_SPACED` match; it starts with a literal, which `re` finds several times faster.
_LETTER_SPACED_PART = re.compile(r" \w \w \w ")


def _any_of(keywords: tuple[str, ...]) -> re.Pattern[str]:
    """One alternation for a keyword set: a single scan of the text instead of one per keyword."""
    return re.compile("|".join(re.escape(k) for k in keywords))


_PROMPT_INJECTION_WORDS = _any_of(PROMPT_INJECTION_KEYWORDS)
_SECRET_WORDS = _any_of(SECRET_KEYWORDS)
_TOXICITY_WORDS = _any_of(TOXICITY_KEYWORDS)


def _mentions(words: re.Pattern[str], text: str) -> bool:
    return words.search(text.lower()) is not None


def _match(rules: tuple[Rule, ...], text: str) -> HeuristicVerdict:
    fired = [r for r in rules if r.pattern.search(text)]
    if not fired:
        return NOTHING_FIRED
    return HeuristicVerdict(score=max(r.score for r in fired), rules=tuple(r.name for r in fired))


def _despaced(text: str) -> str:
    """'i g n o r e  a l l' -> 'ignore all': undoes letter spacing used to dodge patterns."""
    return re.sub(r"(?<=\b\w) (?=\w\b)", "", text)


def _normalized(text: str) -> str:
    # NFKC folds full-width and many look-alike forms, fold_look_alikes Cyrillic/Greek letters inside Latin
    # words; invisible characters are dropped
    if text.isascii():
        return text  # none of these changes ASCII and no invisible character is ASCII
    return fold_look_alikes(_INVISIBLE.sub("", unicodedata.normalize("NFKC", text)))


def prompt_injection(text: str) -> HeuristicVerdict:
    norm = _normalized(text)
    verdict = _match(PROMPT_INJECTION_RULES, norm) if _mentions(_PROMPT_INJECTION_WORDS, norm) else NOTHING_FIRED
    if verdict.score == 0.0 and _letter_spaced(norm):
        despaced = _despaced(norm)
        if _mentions(_PROMPT_INJECTION_WORDS, despaced):
            spaced = _match(PROMPT_INJECTION_RULES, despaced)
            if spaced.score:
                return HeuristicVerdict(spaced.score, (*spaced.rules, "letter_spacing"))
    return verdict


def _letter_spaced(text: str) -> bool:
    return _LETTER_SPACED_PART.search(text) is not None and _LETTER_SPACED.search(text) is not None


def invisible_text(text: str) -> HeuristicVerdict:
    found = _INVISIBLE.findall(text)
    if not found:
        return NOTHING_FIRED
    # a single BOM or directional mark is common in real text; several look deliberate
    return HeuristicVerdict(score=0.95 if len(found) >= 3 else 0.6, rules=("invisible_characters",))


def secrets(text: str) -> HeuristicVerdict:
    return _match(SECRET_RULES, text) if _mentions(_SECRET_WORDS, text) else NOTHING_FIRED


def toxicity(text: str) -> HeuristicVerdict:
    norm = _normalized(text)
    return _match(TOXICITY_RULES, norm) if _mentions(_TOXICITY_WORDS, norm) else NOTHING_FIRED


def sentiment(text: str) -> HeuristicVerdict:
    return NOTHING_FIRED  # no reliable pattern: the model decides


HEURISTICS = {
    "prompt_injection": prompt_injection,
    "toxicity": toxicity,
    "sentiment": sentiment,
    "secrets": secrets,
    "invisible_text": invisible_text,
}

#: A heuristic verdict at or above this score decides at once in hybrid mode.
CONFIDENT = 0.9
