"""Raw e-mails and issue-tracker tickets built around texts of the training pool (sixth round, assemble.py).

The benign corpus has few real e-mails and tickets (83 and 2 rows in the training sources), so the model had
learned little of what their headers, quoting, signatures and templates look like, and flagged them. These
builders give a body (a benign text, or one with an attack hidden in it) the shape of a message as it is logged
or exported: RFC 5322 headers with relay chains and DKIM signatures, MIME parts, quoted replies, list footers;
GitHub/Jira-style issues with templates, code blocks and comment threads. Every name, address and identifier
is made up here; the bodies come from the split's own sources, so nothing crosses splits.
"""

from __future__ import annotations

import base64
import random
import re

FIRST = ("Anna", "Ben", "Carla", "Deepak", "Elif", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemi", "Lars",
         "Maya", "Noor", "Oscar", "Priya", "Quentin", "Rosa", "Sven", "Tomasz", "Uma", "Victor", "Wen", "Yusuf")
LAST = ("Almeida", "Brandt", "Chen", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ivanova", "Jensen",
        "Kowalski", "Larsen", "Moreau", "Nakamura", "Okafor", "Petrov", "Rossi", "Schmidt", "Tanaka", "Virtanen")
DOMAINS = ("example.com", "example.org", "example.net", "mail.example.com", "corp.example", "lists.example.org",
           "shop.example", "university.example.edu", "support.example.io")
MAILERS = ("Microsoft Outlook 16.0", "Apple Mail (2.3774.600.62)", "Mozilla Thunderbird 115.8.0",
           "Roundcube Webmail/1.6.5", "Evolution 3.50.2", "mutt/2.2.12")
SUBJECTS = ("Re: {t}", "Fwd: {t}", "{t}", "[{list}] {t}", "RE: {t}", "Question about {t}", "Update: {t}",
            "Follow-up on {t}", "AW: {t}", "TR: {t}")
LISTS = ("dev", "users", "announce", "ops-team", "release", "support")
SIGNATURES = ("--\n{n}\n{role}, {org}", "Best regards,\n{n}", "Thanks,\n{f}", "Cheers,\n{f}\n\nSent from my phone",
              "Kind regards\n\n{n}\n{org} | {role}\nTel. +44 20 7946 {d4}", "-- \n{f}", "Regards,\n{n}")
ROLES = ("Engineering Manager", "Support Lead", "Release Manager", "Site Reliability Engineer", "Account Manager",
         "Office Manager", "Maintainer", "Product Owner")
ORGS = ("Example Corp", "Northwind Traders", "Acme Widgets", "Contoso Ltd", "Globex", "Initech")
FOOTERS = ("_______________________________________________\n{list} mailing list\n{list}@lists.example.org\n"
           "https://lists.example.org/mailman/listinfo/{list}",
           "This e-mail and any attachments are confidential and intended solely for the addressee. If you have "
           "received it in error, please notify the sender and delete it.",
           "To unsubscribe from this group and stop receiving emails from it, send an email to "
           "{list}+unsubscribe@example.org.")


def _person(rng: random.Random) -> tuple[str, str, str]:
    first, last = rng.choice(FIRST), rng.choice(LAST)
    return first, f"{first} {last}", f"{first.lower()}.{last.lower()}@{rng.choice(DOMAINS)}"


def _date(rng: random.Random) -> str:
    day = rng.choice(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"))
    month = rng.choice(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"))
    return (f"{day}, {rng.randint(1, 28)} {month} {rng.randint(1998, 2025)} {rng.randint(0, 23):02d}:"
            f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} {rng.choice(('+0000', '-0700', '+0100', '+0530'))}")


def _subject(body: str, rng: random.Random) -> str:
    words = re.sub(r"[#*>`_\[\]{}<>]", " ", body).split()[: rng.randint(3, 9)]
    return rng.choice(SUBJECTS).format(t=" ".join(words)[:70] or "hello", list=rng.choice(LISTS))


def _received(rng: random.Random) -> str:
    host = f"mx{rng.randint(1, 9)}.{rng.choice(DOMAINS)}"
    ip = f"{rng.choice((10, 172, 192, 203))}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    return (f"Received: from {host} ({host} [{ip}])\n\tby smtp.{rng.choice(DOMAINS)} (Postfix) with ESMTPS id "
            f"{rng.getrandbits(40):010X}\n\tfor <{_person(rng)[2]}>; {_date(rng)}")


def _b64(rng: random.Random, n: int) -> str:
    return base64.b64encode(rng.randbytes(n)).decode()


def headers(rng: random.Random, subject: str, sender: tuple[str, str, str], to: str) -> list[str]:
    """A plausible header block: some messages have only the basics, exported ones the whole relay chain."""
    out = []
    if rng.random() < 0.5:
        out.append(f"Return-Path: <{sender[2]}>")
        out += [_received(rng) for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.6:
            sig = _b64(rng, 96)
            out.append(f"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d={sender[2].split('@')[1]}; "
                       f"s=selector1;\n\th=from:to:subject:date:message-id;\n\tbh={_b64(rng, 32)};\n\t"
                       f"b={sig[:64]}\n\t {sig[64:]}")
    out += [f"From: {sender[1]} <{sender[2]}>", f"To: {to}", f"Subject: {subject}", f"Date: {_date(rng)}",
            f"Message-ID: <{rng.getrandbits(48):012x}.{rng.randint(1000, 99999)}@{rng.choice(DOMAINS)}>"]
    if rng.random() < 0.4:
        out.append(f"Cc: {_person(rng)[2]}")
    if rng.random() < 0.5:
        out += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=\"utf-8\"", "Content-Transfer-Encoding: 8bit"]
    if rng.random() < 0.4:
        out.append(f"X-Mailer: {rng.choice(MAILERS)}")
    if rng.random() < 0.2:
        out.append(f"List-Id: <{rng.choice(LISTS)}.lists.example.org>")
    return out


def email(body: str, rng: random.Random, quoted: str | None = None) -> tuple[str, int]:
    """(raw message, offset of `body` in it): headers, the body, maybe a quoted earlier message, a signature,
    maybe a list footer or a multipart wrapper."""
    sender, recipient = _person(rng), _person(rng)
    subject = _subject(quoted or body, rng)
    greeting = rng.choice(("", "", f"Hi {recipient[0]},\n\n", f"Hello {recipient[0]},\n\n", "Hi all,\n\n",
                           f"Dear {recipient[1]},\n\n"))
    sign = rng.choice(SIGNATURES).format(n=sender[1], f=sender[0], role=rng.choice(ROLES), org=rng.choice(ORGS),
                                         d4=rng.randint(1000, 9999))
    parts = [greeting + body.strip(), sign]
    if quoted:
        quote = "\n".join("> " + line for line in quoted.strip().splitlines()[:40])
        parts.append(f"On {_date(rng)}, {_person(rng)[1]} wrote:\n{quote}")
    if rng.random() < 0.25:
        parts.append(rng.choice(FOOTERS).format(list=rng.choice(LISTS)))
    head = "\n".join(headers(rng, subject, sender, f"{recipient[1]} <{recipient[2]}>"))
    if rng.random() < 0.2:
        boundary = f"----=_Part_{rng.randint(10000, 99999)}_{rng.getrandbits(32)}"
        head = head.replace("Content-Type: text/plain; charset=\"utf-8\"", "")
        head += f"\nContent-Type: multipart/alternative; boundary=\"{boundary}\""
        prefix = f"{head}\n\nThis is a multi-part message in MIME format.\n\n--{boundary}\n" \
                 f"Content-Type: text/plain; charset=UTF-8\n\n{greeting}"
        text = prefix + "\n\n".join([body.strip(), *parts[1:]]) + f"\n\n--{boundary}--\n"
        return text, len(prefix)
    prefix = f"{head}\n\n{greeting}"
    return prefix + "\n\n".join([body.strip(), *parts[1:]]), len(prefix)


TICKET_TITLES = ("Bug: {t}", "{t}", "[Feature request] {t}", "Crash when {t}", "Docs: {t}", "{t} (regression)",
                 "Question: {t}")
TICKET_LABELS = ("bug", "enhancement", "question", "documentation", "needs-triage", "good first issue", "P2")


def ticket(body: str, rng: random.Random, comment: str | None = None) -> tuple[str, int]:
    """(issue text, offset of `body` in it): a GitHub- or Jira-style issue around the body, with template
    headings, environment details, maybe a log excerpt and a comment thread."""
    title = rng.choice(TICKET_TITLES).format(t=_subject(body, rng).split(": ", 1)[-1])
    number = rng.randint(12, 48000)
    if rng.random() < 0.5:  # GitHub markdown
        head = rng.choice((f"# {title} #{number}\n\n", f"{title}\n\n", f"**{title}** (#{number})\n\n"))
        head += rng.choice(("### Describe the bug\n", "## Description\n", "**Describe the problem**\n", ""))
        tail = ["### Steps to reproduce\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(rng.sample(
                    ("Install the latest release", "Run the command with --verbose", "Open the settings page",
                     "Upload a file larger than 2 GB", "Restart the service", "Switch the locale to de_DE",
                     "Call the endpoint twice in a row"), rng.randint(2, 4)), 1)),
                f"### Environment\n- OS: {rng.choice(('Ubuntu 22.04', 'macOS 14.4', 'Windows 11', 'Debian 12'))}\n"
                f"- Version: {rng.randint(0, 5)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}\n"
                f"- Python: 3.{rng.randint(8, 12)}.{rng.randint(0, 9)}"]
        if rng.random() < 0.4:
            tail.append("```\nTraceback (most recent call last):\n  File \"app/main.py\", line "
                        f"{rng.randint(10, 900)}, in run\n    result = handler(request)\n"
                        f"{rng.choice(('KeyError', 'ValueError', 'TimeoutError'))}: "
                        f"{rng.choice(('missing field', 'invalid literal', 'timed out after 30 s'))}\n```")
        rng.shuffle(tail)
    else:  # Jira export
        head = (f"[PROJ-{number}] {title}\nType: {rng.choice(('Bug', 'Task', 'Story', 'Incident'))}    Priority: "
                f"{rng.choice(('Minor', 'Major', 'Critical', 'Trivial'))}    Status: "
                f"{rng.choice(('Open', 'In Progress', 'Resolved'))}\nReporter: {_person(rng)[1]}    Assignee: "
                f"{_person(rng)[1]}\nLabels: {', '.join(rng.sample(TICKET_LABELS, 2))}\n\nDescription:\n")
        tail = []
    if comment:
        who = _person(rng)[0].lower()
        tail.append(f"---\n**{who}** commented {rng.randint(1, 30)} days ago:\n\n{comment.strip()}")
    return head + body.strip() + ("\n\n" + "\n\n".join(tail) if tail else ""), len(head)
