"""Counterparty-name screening against a watch list: normalise, then match fuzzily.

Names are normalised (NFKC, case, accents, punctuation, honorifics, company suffixes) and
compared in one of two ways:

- Chinese, Japanese and Korean characters are compared character by character, with
  spaces ignored (张 伟 is 张伟).
- Other scripts are compared as words, after each word is reduced to a rough phonetic
  key that makes common pinyin and Wade-Giles spellings of the same syllable equal
  (see ``_phonetic``). Word order does not matter (Zhang Wei is Wei Zhang), and neither
  does how the syllables are split into words (Xiaoming is Xiao Ming is Hsiao-ming).
  Besides the whole-name score, every word of the listed name must have a close
  counterpart in the screened name, so shared generic words ("Shipping", "Holdings")
  cannot carry a different distinctive one.

Characters are never compared with their romanisation: each watch-list entry lists
both forms as aliases. The score is difflib's ratio in [0, 1]; 1.0 means the normalised
forms are equal. Screening favours recall: a one-letter difference in a long name still
scores above the default threshold, and every hit goes to a person for review.

Speed: aliases are normalised and indexed by character n-grams once, when the list is
built; a name is compared only with aliases sharing enough n-grams and passing cheap
upper bounds on the score (length, letters in common); results are cached per raw and
per normalised name.
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from difflib import SequenceMatcher
from functools import cache, lru_cache

from core.errors import InvalidInput

DEFAULT_THRESHOLD = 0.85
DEFAULT_CACHE_SIZE = 65_536
# Longer input is cut: no real name is this long, and difflib is quadratic in the worst case.
MAX_NAME_LENGTH = 300
# Word-order variants (rotations: the surname moved from front to back, or back to
# front) are precomputed for aliases of up to this many words.
MAX_ROTATED_WORDS = 4
# How close a word of a listed name must come to a word of the screened name, on top of
# the whole-name score (see _words_covered).
WORD_MATCH = 0.75

# Han ideographs, kana and Hangul: scripts written without spaces between words.
_DENSE = re.compile(
    "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f]"
)
_DENSE_RUNS = re.compile(f"({_DENSE.pattern}+)")
_APOSTROPHES = str.maketrans("", "", "'\u2018\u2019\u02bc\u0060\u00b4")
_SEPARATORS = re.compile(r"[\W_]+")

# Legal-form words dropped from the end of a name, longest first; "group" because 集团 is.
_LATIN_SUFFIXES: tuple[tuple[str, ...], ...] = tuple(
    sorted(
        (
            tuple(suffix.split())
            for suffix in (
                "co ltd", "co limited", "company limited", "company ltd", "pte ltd",
                "pvt ltd", "pty ltd", "sdn bhd", "l l c", "and co", "ltd", "limited", "inc",
                "incorporated", "llc", "corp", "corporation", "co", "company", "plc", "gmbh",
                "ag", "sa", "sarl", "fze", "fzco", "llp", "group",
            )
        ),
        key=len,
        reverse=True,
    )
)  # fmt: skip
# The last word of each legal form: a name ending in none of them has none to drop.
_LATIN_SUFFIX_ENDINGS = frozenset(suffix[-1] for suffix in _LATIN_SUFFIXES)
_LATIN_PREFIXES = frozenset({"the", "mr", "mrs", "ms", "miss", "dr"})
_DENSE_SUFFIXES = (
    "股份有限公司", "有限责任公司", "有限責任公司", "有限公司", "集团", "集團", "公司",
    "先生", "女士",
)  # fmt: skip

# Wade-Giles (and a few other) spellings whose pinyin the general rules below cannot
# reach. Deliberately small: pinyin syllables (jun, juan, ...) are never remapped.
_WHOLE_SYLLABLES = {
    "jen": "ren", "jung": "rong", "jou": "rou", "jui": "rui", "jih": "ri", "jo": "ruo",
    "jan": "ran", "jang": "rang", "jao": "rao", "je": "re",
    "shih": "shi", "szu": "si", "ssu": "si", "tzu": "zi", "yen": "yan", "i": "yi",
    "ho": "he", "ko": "ge", "erh": "er", "lv": "lu", "nv": "nu",
}  # fmt: skip
# Affricates and sibilants, anywhere in a word: zh/ch/j/q (WG ch, ch') all become j,
# hs/x become x, ts/tz/c (WG ts, ts') become z.
_AFFRICATES = re.compile("zh|ch|hs|ts|tz|q|c")
_AFFRICATE_KEYS = {"zh": "j", "ch": "j", "q": "j", "hs": "x", "ts": "z", "tz": "z", "c": "z"}
# Word-initial aspiration pairs, which Wade-Giles tells apart only by an apostrophe that
# is usually dropped: k/g, t/d, p/b.
_INITIALS = {"k": "g", "t": "d", "p": "b"}
# Wade-Giles finals at the end of a word: -ieh/-ueh, -ien, -ung, -ih.
_FINALS = (("eh", "e"), ("ien", "ian"), ("ung", "ong"), ("ih", "i"))


@dataclass(frozen=True)
class WatchListEntry:
    """One listed person or organisation, with the other names it is known by."""

    entry_id: str
    list_name: str
    name: str
    aliases: tuple[str, ...] = ()
    country: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """The listed name followed by its aliases."""
        return (self.name, *self.aliases)


@dataclass(frozen=True)
class ScreeningMatch:
    """The best watch-list hit for a name; ``score`` in [0, 1], 1.0 for equal forms."""

    entry: WatchListEntry
    matched_name: str
    score: float


def normalise_name(name: str) -> str:
    """A name's comparable form: NFKC, lower case, no accents, punctuation or legal suffix."""
    return " ".join(_segment_text(segment) for segment in _segments(name))


# --------------------------------------------------------------------------- normalisation


@dataclass(frozen=True, slots=True)
class _Segment:
    dense: bool
    words: tuple[str, ...]  # one element, without spaces, when dense


def _segment_text(segment: _Segment) -> str:
    return segment.words[0] if segment.dense else " ".join(segment.words)


def _segments(name: str) -> list[_Segment]:
    text = unicodedata.normalize("NFKC", name[:MAX_NAME_LENGTH]).casefold()
    if not text.isascii():
        # Drop accents (ü -> u, é -> e); NFC puts Hangul syllables back together.
        decomposed = unicodedata.normalize("NFD", text)
        text = unicodedata.normalize("NFC", decomposed.translate(_combining_marks()))
    # Apostrophes mark aspiration in Wade-Giles (ch'en): they join, never split, a word.
    text = text.translate(_APOSTROPHES).replace("&", " and ")
    # Runs of one script: dense runs are glued together, other words are kept apart.
    runs: list[tuple[bool, list[str]]] = []
    for word in _SEPARATORS.split(text):
        for dense, run in _script_runs(word):
            if runs and runs[-1][0] is dense:
                runs[-1][1].append(run)
            else:
                runs.append((dense, [run]))
    return [
        _strip_legal_forms(_Segment(dense, ("".join(words),) if dense else tuple(words)))
        for dense, words in runs
    ]


def _script_runs(word: str) -> Iterator[tuple[bool, str]]:
    if not word:
        return
    if word.isascii():
        yield False, word
        return
    # Split on the dense runs, kept: they are the odd parts, the other scripts the even.
    for index, part in enumerate(_DENSE_RUNS.split(word)):
        if part:
            yield index % 2 == 1, part


@cache
def _combining_marks() -> dict[int, None]:
    """A str.translate table deleting every combining mark (accents, diacritics).

    Made on the first name that is not ASCII (a pass over all of Unicode, about 60 ms),
    then one C call per name instead of a Python test per character.
    """
    return {code: None for code in range(sys.maxunicode + 1) if unicodedata.combining(chr(code))}


def _strip_legal_forms(segment: _Segment) -> _Segment:
    if segment.dense:
        text = segment.words[0]
        # endswith with the whole tuple first: most names end in no legal form.
        while text.endswith(_DENSE_SUFFIXES):
            suffix = next(s for s in _DENSE_SUFFIXES if text.endswith(s))
            if len(text) == len(suffix):
                break  # the name is nothing but a legal form: keep it
            text = text[: -len(suffix)]
        return _Segment(True, (text,))
    words = segment.words
    while len(words) > 1 and words[0] in _LATIN_PREFIXES:
        words = words[1:]
    while words[-1] in _LATIN_SUFFIX_ENDINGS:
        legal_form = next((s for s in _LATIN_SUFFIXES if words[-len(s) :] == s), None)
        if legal_form is None or len(words) == len(legal_form):
            break
        words = words[: -len(legal_form)]
    return _Segment(False, words)


@lru_cache(maxsize=65_536)
def _phonetic(word: str) -> str:
    """A rough key under which pinyin and Wade-Giles spellings of a syllable agree."""
    if not (word.isascii() and word.isalpha()):
        return word
    if word in _WHOLE_SYLLABLES:
        return _WHOLE_SYLLABLES[word]
    for final, replacement in _FINALS:
        if word.endswith(final) and len(word) > len(final):
            word = word[: -len(final)] + replacement
            break
    word = _AFFRICATES.sub(lambda found: _AFFRICATE_KEYS[found.group()], word)
    initial = _INITIALS.get(word[0])
    return initial + word[1:] if initial else word


# --------------------------------------------------------------------------- matching


# Not frozen: a frozen dataclass's __init__ sets each field through object.__setattr__,
# and a form is made for every name screened for the first time. Nothing changes one.
@dataclass(slots=True)
class _Form:
    """One script part of a name, ready to compare."""

    dense: bool
    joined: str  # characters or phonetic words, without spaces, in the written order
    words: tuple[str, ...]  # phonetic words in the written order (() when dense)
    sorted_words: str  # the words sorted, space-separated ("" when dense)
    grams: frozenset[str]

    @property
    def key(self) -> tuple[bool, str]:
        return self.dense, self.joined


def _form(segment: _Segment) -> _Form:
    if segment.dense:
        text = segment.words[0]
        padded = f"\x02{text}\x03"
        grams = frozenset(padded[i : i + 2] for i in range(len(padded) - 1))
        return _Form(True, text, (), "", grams)
    words = tuple(_phonetic(word) for word in segment.words)
    grams = frozenset(
        padded[i : i + 3] for padded in (f" {w} " for w in words) for i in range(len(padded) - 2)
    )
    return _Form(False, "".join(words), words, " ".join(sorted(words)), grams)


def _query_forms(normalised: str) -> list[_Form]:
    """The whole name; a name in two scripts also gets each script's part on its own."""
    segments = _segments_of_normalised(normalised)
    if not segments:
        return []
    whole = _form(_merge(segments))
    forms = [whole]
    for dense in (True, False):
        part = [segment for segment in segments if segment.dense is dense]
        if part and len(part) < len(segments):
            forms.append(_form(_merge(part)))
    return forms


def _segments_of_normalised(normalised: str) -> list[_Segment]:
    runs: list[tuple[bool, list[str]]] = []
    for word in normalised.split():
        dense = _DENSE.match(word) is not None
        if not dense and runs and not runs[-1][0]:
            runs[-1][1].append(word)
        else:
            runs.append((dense, [word]))
    return [_Segment(dense, tuple(words)) for dense, words in runs]


def _merge(segments: list[_Segment]) -> _Segment:
    if len(segments) == 1:
        return segments[0]
    if all(not segment.dense for segment in segments):
        return _Segment(False, tuple(w for segment in segments for w in segment.words))
    # Mixed scripts are compared character by character, like dense text.
    return _Segment(True, ("".join("".join(segment.words) for segment in segments),))


@dataclass(frozen=True, slots=True)
class _Alias:
    entry_index: int
    text: str
    form: _Form
    # Every word order of the alias, joined, for comparing with a name as written.
    orders: tuple[str, ...]
    # The n-grams of each word of four letters or more: a name that shares none with one
    # of them cannot pass _words_covered, so it is dismissed before any letter counting.
    # (A shorter word can be 0.8 alike without a common trigram: jiu and ju.)
    word_grams: tuple[frozenset[str], ...]
    # How often each character occurs in the joined form: the multiset bound on difflib's
    # ratio (what its quick_ratio computes), counted once instead of per comparison.
    letters: dict[str, int]


def _orders(form: _Form) -> tuple[str, ...]:
    """The alias joined in each order it is compared in: as listed first, then rotated.

    Any other order is left to the sorted-words comparison, which needs the same words.
    """
    if form.dense:
        return (form.joined,)
    words = form.words
    if len(words) > MAX_ROTATED_WORDS:
        return tuple(dict.fromkeys(("".join(words), "".join(sorted(words)))))
    rotations = ("".join(words[i:] + words[:i]) for i in range(len(words)))
    return tuple(dict.fromkeys(rotations))


def _min_gram_dice(threshold: float) -> float:
    """The n-gram overlap (Dice) below which a pair is assumed to score under ``threshold``."""
    return max(0.0, 1.5 * threshold - 1.1)


def _word_grams(form: _Form) -> tuple[frozenset[str], ...]:
    return tuple(
        frozenset(f" {word} "[i : i + 3] for i in range(len(word)))
        for word in form.words
        if len(word) >= 4
    )


def _ratio(matcher: SequenceMatcher[str], candidate: str, threshold: float) -> float:
    """difflib's ratio of ``candidate`` to the matcher's name, 0.0 when the bounds rule it out."""
    matcher.set_seq1(candidate)
    if matcher.real_quick_ratio() < threshold or matcher.quick_ratio() < threshold:
        return 0.0
    return matcher.ratio()


class WatchList:
    """Screens names against watch-list entries; build once, then call best_match often."""

    def __init__(
        self,
        entries: Iterable[WatchListEntry],
        *,
        as_of: date | None = None,
        source: str = "",
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self.entries: tuple[WatchListEntry, ...] = tuple(entries)
        self.as_of = as_of
        self.source = source
        seen: set[str] = set()
        for entry in self.entries:
            if entry.entry_id in seen:
                raise InvalidInput(f"watch-list entry id {entry.entry_id!r} appears twice")
            seen.add(entry.entry_id)
        self._aliases: list[_Alias] = []
        self._exact: dict[tuple[bool, str], int] = {}
        grams: dict[str, list[int]] = {}
        for entry_index, entry in enumerate(self.entries):
            for text in dict.fromkeys(entry.names):
                segments = _segments(text)
                if not segments:
                    raise InvalidInput(
                        f"watch-list entry {entry.entry_id!r} has a name with no letters"
                    )
                segment = _merge(segments)
                form = _form(segment)
                alias = _Alias(
                    entry_index, text, form, _orders(form), _word_grams(form), Counter(form.joined)
                )
                alias_index = len(self._aliases)
                self._aliases.append(alias)
                for order in alias.orders:
                    # The first entry in file order wins a tie.
                    self._exact.setdefault((form.dense, order), alias_index)
                for gram in form.grams:
                    grams.setdefault(gram, []).append(alias_index)
        self._grams = {gram: tuple(indexes) for gram, indexes in grams.items()}
        self._gram_counts = tuple(len(alias.form.grams) for alias in self._aliases)
        self._screen_raw = lru_cache(maxsize=cache_size)(self._screen_name)
        self._screen_normalised = lru_cache(maxsize=cache_size)(self._screen)

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        as_of = self.as_of.isoformat() if self.as_of else None
        return f"WatchList({len(self.entries)} entries, as_of={as_of})"

    def best_match(
        self, name: str | None, threshold: float = DEFAULT_THRESHOLD
    ) -> ScreeningMatch | None:
        """The highest-scoring entry at or above ``threshold``, or None (also for no name)."""
        if not 0.0 < threshold <= 1.0:
            raise ValueError("threshold must be greater than 0 and at most 1")
        if not name or not name.strip():
            return None
        return self._screen_raw(name[:MAX_NAME_LENGTH], threshold)

    def _screen_name(self, name: str, threshold: float) -> ScreeningMatch | None:
        normalised = normalise_name(name)
        if not normalised:
            return None
        return self._screen_normalised(normalised, threshold)

    def _screen(self, normalised: str, threshold: float) -> ScreeningMatch | None:
        best: tuple[float, int] | None = None
        for form in _query_forms(normalised):
            exact = self._exact.get(form.key)
            if exact is not None:
                candidate = (1.0, exact)
            else:
                found = self._fuzzy(form, threshold)
                if found is None:
                    continue
                candidate = found
            if best is None or _better(candidate, best, self._aliases):
                best = candidate
        if best is None:
            return None
        score, alias_index = best
        alias = self._aliases[alias_index]
        return ScreeningMatch(self.entries[alias.entry_index], alias.text, score)

    def _fuzzy(self, form: _Form, threshold: float) -> tuple[float, int] | None:
        # Only aliases sharing enough n-grams are compared. The bound is empirical (not
        # a proof): two-typo variants of every packaged alias that still score 0.85
        # share at least 0.28 of their n-grams (Dice); the cut leaves a margin below that.
        # Counted in a plain loop: most names share no n-gram with any alias, and then
        # this is a few dict lookups.
        postings = self._grams
        shared: dict[int, int] = {}
        for gram in form.grams:
            for alias_index in postings.get(gram, ()):
                shared[alias_index] = shared.get(alias_index, 0) + 1
        if not shared:
            return None
        half_dice = _min_gram_dice(threshold) / 2
        size = len(form.grams)
        gram_counts = self._gram_counts
        candidates = sorted(
            alias_index
            for alias_index, count in shared.items()
            if count >= half_dice * (size + gram_counts[alias_index])
        )
        if not candidates:
            return None
        joined: SequenceMatcher[str] | None = None
        by_words: SequenceMatcher[str] | None = None
        best: tuple[float, int] | None = None
        query_length = len(form.joined)
        query_letters: Counter[str] | None = None  # counted for the first candidate needing it
        for alias_index in candidates:
            alias = self._aliases[alias_index]
            if alias.form.dense is not form.dense:
                continue
            if any(grams.isdisjoint(form.grams) for grams in alias.word_grams):
                continue
            # Upper bounds on difflib's ratio before computing it: the shorter length,
            # then the letters in common; every word order has the same letters. The
            # space-separated sorted words add at most the fewer spaces in common.
            length = query_length + len(alias.form.joined)
            spaces = 0 if form.dense else min(len(form.words), len(alias.form.words)) - 1
            words_length = len(form.sorted_words) + len(alias.form.sorted_words)
            shorter = min(query_length, len(alias.form.joined))
            if 2 * shorter < threshold * length and (
                form.dense or 2 * (shorter + spaces) < threshold * words_length
            ):
                continue
            if query_letters is None:
                query_letters = Counter(form.joined)
            letters = alias.letters
            common = sum(min(count, letters.get(c, 0)) for c, count in query_letters.items())
            score = 0.0
            if 2 * common >= threshold * length:
                if joined is None:
                    joined = SequenceMatcher(None, autojunk=False)
                    joined.set_seq2(form.joined)
                for order in alias.orders:
                    joined.set_seq1(order)
                    score = max(score, joined.ratio())
                    if score == 1.0:
                        break
            if not form.dense and score < 1.0 and 2 * (common + spaces) >= threshold * words_length:
                if by_words is None:
                    by_words = SequenceMatcher(None, autojunk=False)
                    by_words.set_seq2(form.sorted_words)
                by_words.set_seq1(alias.form.sorted_words)
                score = max(score, by_words.ratio())
            if score < threshold or (best is not None and score <= best[0]):
                continue
            if score < 1.0 and not form.dense and not _words_covered(alias.form.words, form.words):
                continue
            best = (min(score, 1.0), alias_index)
        return best


def _runs(words: tuple[str, ...]) -> list[tuple[str, range]]:
    """Each run of one to three adjacent words, joined, with the positions it spans."""
    return [
        ("".join(words[start : start + size]), range(start, start + size))
        for size in (1, 2, 3)
        for start in range(len(words) - size + 1)
    ]


def _words_covered(listed: tuple[str, ...], name: tuple[str, ...]) -> bool:
    """Whether every word of a listed alias has a close counterpart in the name.

    Letter-level similarity alone lets long shared words carry a distinctive one that
    differs ("Global Shipping" is 0.875 like "Kobaltin Shipping"). A word counts as
    present when it is close to a word of the name, or when a run of two or three adjacent
    words containing it is close to a run of a different number of words of the name (so
    Ming Qian still finds Mingqian, but Kobaltin Shipping never borrows from Shipping to
    pass as Global Shipping); a one-letter word (an initial) when a word of the name
    starts with it.
    """
    name_runs = [(joined, len(span)) for joined, span in _runs(name)]
    covered: set[int] = set()
    matcher = SequenceMatcher(None, autojunk=False)
    for position, word in enumerate(listed):
        if len(word) == 1 and any(other.startswith(word) for other in name):
            covered.add(position)
    for joined, span in _runs(listed):
        if all(position in covered for position in span):
            continue
        if len(span) > 1 and any(len(listed[position]) == 1 for position in span):
            continue  # an initial must be matched as an initial, not hidden in a run
        matcher.set_seq2(joined)
        for other, size in name_runs:
            if size == len(span) > 1:
                continue
            if _ratio(matcher, other, WORD_MATCH) >= WORD_MATCH:
                covered.update(span)
                break
    return len(covered) == len(listed)


def _better(candidate: tuple[float, int], best: tuple[float, int], aliases: list[_Alias]) -> bool:
    if candidate[0] != best[0]:
        return candidate[0] > best[0]
    return aliases[candidate[1]].entry_index < aliases[best[1]].entry_index


__all__ = [
    "DEFAULT_THRESHOLD",
    "ScreeningMatch",
    "WatchList",
    "WatchListEntry",
    "normalise_name",
]
