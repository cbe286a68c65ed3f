"""The blocklist prompt check: a list of words and phrases, matched with tolerance for the usual evasions.

    check = Blocklist.from_file("my_list.txt")       # one entry per line, '#' comments; default: the shipped list
    check.check("a red block slides left")           # -> None (allowed) or the reason it is blocked

A prompt and every entry are normalized the same way (Unicode compatibility forms folded, accents dropped, lower case,
look-alike digits and symbols read as letters: "p0rn" -> "porn", punctuation as spaces), then an entry of k words
blocks the prompt when
  - some k consecutive prompt words equal it, or
  - it has at least `min_fuzzy_chars` letters and some k consecutive words are within one edit (a letter added,
    dropped or changed; rapidfuzz's Levenshtein distance) per `letters_per_edit` letters of it: "beheadding" and
    "decapitations" match, "pornografic" (two edits, 12 letters) matches, "heading" (two edits from the 9 letters
    of "beheading") does not, or
  - some run of up to `max_split_words` short words (each at most 3 characters: "p o r n", "ped o phile") spells it
    with the spaces removed, or one typed token spells it once the separators inside it are dropped
    ("ped.o.phile"). Runs of ordinary words are not joined, so "a desk in" never reads as "deskin".
What it cannot catch: synonyms, paraphrase, other languages, a word split into long pieces ("pedo phile"), and
anything that is only harmful in context. That is the guard model's job (guard_model.py).
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

# digits and symbols commonly typed for the letters they resemble
_LOOKALIKES = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s",
                             "!": "i", "|": "i", "€": "e"})
_NOT_WORD = re.compile(r"[^a-z0-9]+")


def normalize_words(text: str) -> list[str]:
    """Text -> its words as the blocklist compares them: NFKD-folded, accents dropped, lower case, look-alikes
    read as letters, anything else a separator."""
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch)).lower().translate(_LOOKALIKES)
    return [w for w in _NOT_WORD.split(folded) if w]


def read_entries(path: str | Path) -> list[str]:
    """A blocklist file -> its entries (one per line; blank lines and '#' comments skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ValueError(f"blocklist {path}: cannot read it ({e.strerror or e})") from None
    except UnicodeDecodeError:
        raise ValueError(f"blocklist {path}: not UTF-8 text") from None
    entries = [line.split("#", 1)[0].strip() for line in lines]
    return [e for e in entries if e]


def default_entries() -> list[str]:
    """The small list shipped with the package (guardrails/default_blocklist.txt)."""
    return read_entries(Path(str(resources.files(__package__) / "default_blocklist.txt")))


@dataclass
class Blocklist:
    entries: list[str]
    letters_per_edit: int = 5  # edits tolerated: one per this many letters of the entry (6-9 letters: 1, 10-14: 2)
    min_fuzzy_chars: int = 6  # shorter entries match exactly only (a fuzzy 4-letter word matches too much)
    max_split_words: int = 24  # the longest run of short words joined to spell an entry
    name: str = "blocklist"
    _fuzzy: dict[tuple[int, int], list[str]] = field(init=False, repr=False)  # (words, edits) -> entries
    _exact: set[str] = field(init=False, repr=False)
    _joined: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.letters_per_edit < 1:
            raise ValueError(f"letters_per_edit must be at least 1, got {self.letters_per_edit!r}")
        self._fuzzy, self._exact, self._joined = {}, set(), {}
        for entry in self.entries:
            words = normalize_words(entry)
            if not words:
                continue
            text = " ".join(words)
            self._exact.add(text)
            letters = len(text.replace(" ", ""))
            if letters >= self.min_fuzzy_chars:
                self._fuzzy.setdefault((len(words), letters // self.letters_per_edit), []).append(text)
            self._joined["".join(words)] = entry
        self._original = {" ".join(normalize_words(e)): e for e in self.entries}

    @classmethod
    def from_file(cls, path: str | Path | None = None, **options) -> "Blocklist":
        """`path`: a user's list; None: the shipped default."""
        entries = default_entries() if path is None else read_entries(path)
        if path is not None and not entries:
            raise ValueError(f"blocklist {path}: no entries (one word or phrase per line)")
        return cls(entries, **options)

    def check(self, text: str) -> str | None:
        """None when `text` is allowed, else the reason (naming the entry it matched)."""
        words = normalize_words(text)
        for k in sorted({len(e.split()) for e in self._exact}):
            windows = [" ".join(words[i:i + k]) for i in range(len(words) - k + 1)]
            for window in windows:
                if window in self._exact:
                    return f"matches the blocklist entry {self._original[window]!r}"
            for (n_words, edits), group in self._fuzzy.items():
                if n_words != k:
                    continue
                for window in windows:
                    hit = process.extractOne(window, group, scorer=Levenshtein.distance, score_cutoff=edits)
                    if hit is not None:
                        return (f"{window!r} is {hit[1]} edit{'s' if hit[1] != 1 else ''} from the blocklist entry "
                                f"{self._original[hit[0]]!r}")
        return self._split_match(words) or self._punctuated_match(text)

    def _punctuated_match(self, text: str) -> str | None:
        # one typed token with separators inside it ("ped.o.phile", "child-porn") read as one word
        for token in text.split():
            joined = "".join(normalize_words(token))
            if joined in self._joined:
                return f"{token!r} spells the blocklist entry {self._joined[joined]!r}"
        return None

    def _split_match(self, words: list[str]) -> str | None:
        # runs of short words only: "p o r n" spells an entry, "a desk in" does not get joined
        for i in range(len(words)):
            joined = ""
            for j in range(i, min(i + self.max_split_words, len(words))):
                if len(words[j]) > 3:
                    break
                joined += words[j]
                if j > i and joined in self._joined:
                    return f"{' '.join(words[i:j + 1])!r} spells the blocklist entry {self._joined[joined]!r}"
        return None
