"""Host names as KeyChest stores and compares them. Pure: no Django.

One normal form everywhere (user input, certificates, CT): lower case, no trailing dot, IDNA 2008
A-labels (with the UTS #46 mapping, so "Bücher.Example" and "xn--bcher-kva.example" are one name),
a wildcard only as the whole left-most label, IP literals in their canonical text form.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

import idna

MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63

# The common case (plain ASCII letters, digits, hyphens) needs no IDNA work at all.
# Used with fullmatch: `$` would also match before a trailing newline ("a\n").
_LDH_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# Certificates in the wild carry underscores (service labels); accepted only from certificates.
_LENIENT_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


class InvalidName(ValueError):
    """The text is not a usable host name, wildcard name or IP address."""


def _check_lengths(name: str) -> None:
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidName(f"name longer than {MAX_NAME_LENGTH} characters")
    for label in name.split("."):
        if not label:
            raise InvalidName("empty label")
        if len(label) > MAX_LABEL_LENGTH:
            raise InvalidName(f"label longer than {MAX_LABEL_LENGTH} characters")


def ip_literal(text: str) -> str | None:
    """The canonical form of an IPv4/IPv6 literal (brackets allowed), or None for anything else."""
    if ":" not in text and text[-1:].isalpha():
        # Ends in a letter, no colon (most calls: every name of every CT entry): stripping and
        # brackets cannot change that, so it is no IP literal.
        return None
    candidate = text.strip()
    if candidate.startswith("[") and candidate.endswith("]"):
        candidate = candidate[1:-1]
    # Cheap test first: host names (the common case) end in a letter and have no colon.
    if ":" not in candidate and not candidate[-1:].isdigit():
        return None
    try:
        return ipaddress.ip_address(candidate).compressed
    except ValueError:
        return None


def label_is_plain(label: str) -> bool:
    """A lower-case letters-digits-hyphens label that IDNA would leave as it is.

    "xn--" labels must be checked by the IDNA codec; other "??--" labels are reserved in IDNA 2008.
    """
    return bool(_LDH_LABEL.fullmatch(label)) and label[2:4] != "--"


def name_problem(text: str) -> str:
    """Plain words for a name the IDNA codec refuses, saying what to type instead (the codec's
    own message, "Codepoint U+0020 at position 3 ...", speaks Unicode, not user)."""
    shown = text if len(text) <= 80 else text[:77] + "..."
    for char in text:
        if char.isspace():
            return f"“{shown}” has a space in it; a host name has none (enter one name per line)"
        if not (char.isalnum() or char in "-."):
            return f"“{shown}” contains “{char}”; a host name holds only letters, digits, hyphens and dots"
    if any(label.startswith("-") or label.endswith("-") for label in text.split(".")):
        return f"“{shown}” has a part that starts or ends with a hyphen, which a host name cannot have"
    return f"“{shown}” is not a valid host name"


@lru_cache(maxsize=65536)
def _idna_encode(host: str) -> str:
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError):
        raise InvalidName(name_problem(host)) from None


def normalise_name(name: str) -> str:
    """The normal form of a host name, a wildcard name ("*.example.com") or an IP literal.

    Raises InvalidName for anything else.
    """
    if not isinstance(name, str):
        raise InvalidName("name must be text")
    text = name.strip()
    if not text:
        raise InvalidName("empty name")
    ip = ip_literal(text)
    if ip is not None:
        return ip
    text = text.lower()
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise InvalidName("empty name")
    wildcard = False
    if text.startswith("*."):
        wildcard = True
        text = text[2:]
    if "*" in text:
        raise InvalidName("a wildcard is allowed only as the whole left-most label")
    if "." in text and ip_literal(text) is None and text.replace(".", "").isdigit():
        raise InvalidName("not a valid IP address")
    labels = text.split(".")
    if not all(label_is_plain(label) for label in labels):
        text = _idna_encode(text)
        labels = text.split(".")
    if wildcard and len(labels) < 2:
        # "*.com" would match every name under a top-level domain.
        raise InvalidName("a wildcard needs at least two labels under it")
    result = f"*.{text}" if wildcard else text
    _check_lengths(result)
    return result


# Already normal: lower-case LDH labels (no "--" anywhere, so no A-labels or reserved labels to
# check), optional leading wildcard, at least two labels, not ending in a digit (IP-like).
_NORMAL_NAME = re.compile(r"(?:\*\.)?(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z])?")


def normalise_certificate_name(name: str) -> str | None:
    """Like normalise_name, but tolerant of what CAs put in certificates (underscores); None if unusable.

    Certificates are attacker-controlled: anything that is not a plausible name is dropped here
    rather than stored.
    """
    # Fast path for the common case (CT ingestion calls this for every name of every entry).
    if len(name) <= MAX_NAME_LENGTH and "--" not in name and _NORMAL_NAME.fullmatch(name):
        return name
    try:
        return normalise_name(name)
    except InvalidName:
        pass
    text = name.strip().lower().rstrip(".")
    body = text[2:] if text.startswith("*.") else text
    if not body or len(text) > MAX_NAME_LENGTH:
        return None
    labels = body.split(".")
    if len(labels) < 2 or not all(_LENIENT_LABEL.fullmatch(label) for label in labels):
        return None
    if body.replace(".", "").isdigit():
        return None  # IP-like ("01.2.3.4"), yet no valid address: not a host name either
    return text


def is_wildcard(name: str) -> bool:
    return name.startswith("*.")


def reversed_name(name: str) -> str:
    """Labels in reverse order ("www.example.com" -> "com.example.www").

    All names under a domain then share a prefix, so "everything under example.com" is one index
    range scan ("com.example" itself, or anything starting with "com.example.").
    """
    if ip_literal(name) is not None:
        return name
    return ".".join(name.split(".")[::-1])


@lru_cache(maxsize=1)
def _psl():  # type: ignore[no-untyped-def]
    # Loading the list takes ~0.1 s; do it once, on first use.
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList()


@lru_cache(maxsize=1)
def _psl_rules() -> tuple[frozenset[str], frozenset[str]] | None:
    """(the PSL's rules, every suffix of every rule's base name), or None if the package changed.

    The package keeps its rules as one frozenset ("com", "*.kobe.jp", "!city.kobe.jp", ...); the
    equivalence with its own answer is a test (tests/certificates/test_names.py).
    """
    rules = getattr(_psl(), "_publicsuffix", None)
    if not isinstance(rules, frozenset):
        return None
    stems: set[str] = set()
    for rule in rules:
        base = rule.lstrip("!")
        base = base[2:] if base.startswith("*.") else base
        labels = base.split(".")
        stems.update(".".join(labels[i:]) for i in range(len(labels)))
    return rules, frozenset(stems)


@lru_cache(maxsize=65536)
def _private_suffix(host: str) -> str:
    return _psl().privatesuffix(host) or ""


def _psl_key(host: str) -> str:
    """The shortest tail of `host` that has the same registered domain as `host`.

    The PSL algorithm only matches suffixes that are a rule's base name or a tail of one
    ("stems"). With k the deepest stem, no rule looks further left, and the answer is at most
    k + 1 labels (k + 2 under a wildcard rule "*.<stem>"), and at least two (the default rule
    "*" for unknown suffixes). So "www.shop.example.com" is answered by "example.com", which
    every other name under example.com shares: one PSL walk per registered domain, not per name.
    """
    psl = _psl_rules()
    labels = host.split(".")
    if psl is None or "" in labels:
        return host
    rules, stems = psl
    k = 0
    while k < len(labels) and ".".join(labels[-(k + 1) :]) in stems:
        k += 1
    keep = max(k + 1, 2)
    if k and "*." + ".".join(labels[-k:]) in rules:
        keep = max(k + 2, 2)
    return host if keep >= len(labels) else ".".join(labels[-keep:])


@lru_cache(maxsize=65536)
def registered_domain(name: str) -> str:
    """The registered domain (public suffix + one label, e.g. "example.co.uk") of a normalised name.

    Uses the whole Public Suffix List, private section included, as Let's Encrypt's rate limits
    do ("user.github.io" is its own registered domain). "" for IP literals and for names that
    are themselves public suffixes.
    """
    if ip_literal(name) is not None:
        return ""
    host = name[2:] if name.startswith("*.") else name
    return _private_suffix(_psl_key(host))


def is_public_suffix(name: str) -> bool:
    """Whether a normalised host name is itself a public suffix ("com", "co.uk", "github.io"), or a
    single label that no rule names (the list's default rule makes every unknown TLD one).

    Names under such a suffix belong to many unrelated registrants: watching one would match
    everybody's certificates. Uses the bundled Public Suffix List (no network)."""
    if ip_literal(name) is not None:
        return False
    host = name[2:] if name.startswith("*.") else name
    return registered_domain(host) == ""


def parent_wildcard(name: str) -> str | None:
    """The wildcard name that would cover `name` ("www.example.com" -> "*.example.com")."""
    if ip_literal(name) is not None or name.startswith("*."):
        return None
    _, _, parent = name.partition(".")
    if "." not in parent:
        return None
    return f"*.{parent}"


def name_matches(pattern: str, name: str) -> bool:
    """Whether certificate name `pattern` (maybe a wildcard) covers host `name`; a wildcard matches one label."""
    if pattern == name:
        return True
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and head != "*" and rest == pattern[2:]
    return False
