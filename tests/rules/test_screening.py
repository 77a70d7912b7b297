"""Watch-list screening: normalisation, fuzzy matching, and no hits on ordinary traffic."""

from __future__ import annotations

import random
from datetime import date

import pytest

from core.errors import InvalidInput
from rules.reference_data import load_watch_list
from rules.screening import ScreeningMatch, WatchList, WatchListEntry, normalise_name
from stream import simulator

ENTRIES = (
    WatchListEntry("P1", "test-sanctions", "Xue Mingqian", ("薛铭骞",), "TW"),
    WatchListEntry("P2", "test-sanctions", "Kuang Yuheng", ("邝昱珩",), "CN"),
    WatchListEntry("E1", "test-sanctions", "Zephyrine Maritime Holdings Ltd", (), "KP"),
    WatchListEntry("E2", "test-terrorism", "渤澜星舟航运有限公司", (), "HK"),
    WatchListEntry("P3", "test-watch", "Kestrin Valdoro", ("K. Valdoro",), "VE"),
)


@pytest.fixture(scope="module")
def watch_list() -> WatchList:
    return WatchList(ENTRIES, as_of=date(2026, 11, 28), source="test")


def full_width(text: str) -> str:
    """ASCII letters and spaces as their full-width forms (as typed with a Chinese IME)."""
    return "".join("\u3000" if c == " " else chr(ord(c) + 0xFEE0) for c in text)


def entry_of(match: ScreeningMatch | None) -> str | None:
    return match.entry.entry_id if match is not None else None


# --------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [
        ("  ZHANG   Wei ", "zhang wei"),
        (full_width("ZHANG WEI"), "zhang wei"),
        ("Zhang-Wei.", "zhang wei"),
        ("K'uang Yü-heng", "kuang yu heng"),  # apostrophe joins, accents go
        ("Zephyrine Maritime Holdings Co., Ltd.", "zephyrine maritime holdings"),
        ("Zephyrine Maritime Holdings Limited", "zephyrine maritime holdings"),
        ("ACME Trading Pte. Ltd.", "acme trading"),
        ("Quillmoor Capital L.L.C.", "quillmoor capital"),
        ("Smith & Co", "smith"),
        ("Mr. Kuang Yuheng", "kuang yuheng"),
        ("张 伟", "张伟"),
        ("渤澜星舟航运股份有限公司", "渤澜星舟航运"),
        ("衡岳曜石集团有限公司", "衡岳曜石"),
        ("\uff08香港\uff09渤澜星舟航运有限公司", "香港渤澜星舟航运"),  # full-width brackets
        ("邝昱珩 KUANG Yuheng", "邝昱珩 kuang yuheng"),
        ("Limited", "limited"),  # never stripped to nothing
        ("有限公司", "有限公司"),
        ("Co., Ltd.", "co ltd"),
        # Accents in other Latin alphabets, a combining mark typed apart, Greek; Hangul
        # syllables and kana are left whole; a word in two scripts is split between them.
        ("Nguyễn Văn Thành", "nguyen van thanh"),
        ("Dr. José  Álvarez-Núñez", "jose alvarez nunez"),
        ("MÜLLER & SÖHNE GmbH", "muller and sohne"),
        ("x\u0301y", "xy"),
        ("Ελλάς", "ελλασ"),
        ("김민준 Trading Co., Ltd.", "김민준 trading"),
        ("田中太郎さん", "田中太郎さん"),
        ("Zhāng Wěi 张伟", "zhang wei 张伟"),
        ("ABC公司", "abc 公司"),
        ("!!!", ""),
        ("", ""),
    ],
)
def test_normalise_name(raw: str, normalised: str) -> None:
    assert normalise_name(raw) == normalised


# --------------------------------------------------------------------------- matching


def test_exact_match_scores_one(watch_list: WatchList) -> None:
    match = watch_list.best_match("Xue Mingqian")
    assert match is not None
    assert match.entry.entry_id == "P1"
    assert match.entry.list_name == "test-sanctions"
    assert match.matched_name == "Xue Mingqian"
    assert match.score == 1.0


@pytest.mark.parametrize(
    "name",
    [
        "XUE MINGQIAN",
        "xue mingqian",
        "  Xue   Mingqian ",
        "Xue-Mingqian.",
        "Xue, Mingqian",
        "Xue Ming Qian",
    ],
)
def test_case_spacing_and_punctuation_variants(watch_list: WatchList, name: str) -> None:
    match = watch_list.best_match(name)
    assert entry_of(match) == "P1"
    assert match is not None and match.score == 1.0


def test_full_width_characters(watch_list: WatchList) -> None:
    match = watch_list.best_match(full_width("XUE Mingqian"))
    assert entry_of(match) == "P1"
    assert match is not None and match.score == 1.0


@pytest.mark.parametrize("name", ["Mingqian Xue", "Yuheng Kuang", "Valdoro, Kestrin"])
def test_word_order(watch_list: WatchList, name: str) -> None:
    match = watch_list.best_match(name)
    assert match is not None and match.score == 1.0


@pytest.mark.parametrize(
    "name",
    [
        "Zephyrine Maritime Holdings Ltd",
        "Zephyrine Maritime Holdings Limited",
        "ZEPHYRINE MARITIME HOLDINGS CO., LTD.",
        "Zephyrine Maritime Holdings Inc.",
        "Zephyrine Maritime Holdings Group",
        "The Zephyrine Maritime Holdings Company Limited",
    ],
)
def test_company_suffix_variants(watch_list: WatchList, name: str) -> None:
    match = watch_list.best_match(name)
    assert entry_of(match) == "E1"
    assert match is not None and match.score == 1.0


@pytest.mark.parametrize(
    "name", ["渤澜星舟航运有限公司", "渤澜星舟航运", "渤澜星舟航运股份有限公司", "渤澜星舟航运集团"]
)
def test_chinese_company_suffix_variants(watch_list: WatchList, name: str) -> None:
    match = watch_list.best_match(name)
    assert entry_of(match) == "E2"
    assert match is not None and match.score == 1.0


@pytest.mark.parametrize(
    ("name", "entry_id"),
    [
        ("HSUEH Ming-ch'ien", "P1"),  # Wade-Giles: hs = x, ch' = q, -ien = -ian
        ("Hsueh Ming Chien", "P1"),  # the apostrophe is usually dropped
        ("K'uang Yü-heng", "P2"),
        ("Yu-heng K'uang", "P2"),
    ],
)
def test_transliteration_variants(watch_list: WatchList, name: str, entry_id: str) -> None:
    match = watch_list.best_match(name)
    assert entry_of(match) == entry_id
    assert match is not None and match.score == 1.0


def test_chinese_characters_are_compared_directly(watch_list: WatchList) -> None:
    for name in ("薛铭骞", "薛 铭 骞", "薛铭骞先生"):
        match = watch_list.best_match(name)
        assert entry_of(match) == "P1"
        assert match is not None and match.matched_name == "薛铭骞" and match.score == 1.0
    # One different character of three is another person.
    assert watch_list.best_match("薛铭谦") is None
    # Characters are never compared with a romanisation; entries list both forms.
    assert watch_list.best_match("Xue Mingqian") is not None
    only_latin = WatchList([WatchListEntry("L", "t", "Xue Mingqian")])
    assert only_latin.best_match("薛铭骞") is None


def test_a_name_in_two_scripts_is_screened_by_each(watch_list: WatchList) -> None:
    match = watch_list.best_match("邝昱珩 KUANG YUHENG")
    assert entry_of(match) == "P2"
    assert entry_of(watch_list.best_match("Kuang Yuheng (邝某某)")) == "P2"


def test_typos_still_match_below_one(watch_list: WatchList) -> None:
    match = watch_list.best_match("Zephyrin Maritime Holdings")
    assert entry_of(match) == "E1"
    assert match is not None and 0.85 <= match.score < 1.0
    assert entry_of(watch_list.best_match("Kestrin Valdorro")) == "P3"


@pytest.mark.parametrize(
    "name",
    [
        "Xue Jianguo",  # same surname, another given name
        "Kuang Yuming",
        "Zhang Mingqian",  # same given name, another surname
        "Zephyrine Travel",
        "Global Maritime Holdings",  # shares the long generic words only
        "Valdoro",
    ],
)
def test_near_misses_are_not_matched(watch_list: WatchList, name: str) -> None:
    assert watch_list.best_match(name) is None


@pytest.mark.parametrize("name", [None, "", "   ", "!!!", "Co., Ltd."])
def test_empty_names(watch_list: WatchList, name: str | None) -> None:
    assert watch_list.best_match(name) is None


def test_scores_and_thresholds(watch_list: WatchList) -> None:
    exact = watch_list.best_match("Zephyrine Maritime Holdings")
    typo = watch_list.best_match("Zephyrin Maritime Holdings")
    worse = watch_list.best_match("Zefyrin Maritim Holdings", threshold=0.5)
    assert exact is not None and typo is not None and worse is not None
    assert exact.score == 1.0 > typo.score > worse.score > 0.5
    # A threshold only filters: the same name scores the same under any threshold.
    assert watch_list.best_match("Zephyrin Maritime Holdings", threshold=0.5) == typo
    assert watch_list.best_match("Zephyrin Maritime Holdings", threshold=typo.score) == typo
    assert watch_list.best_match("Zephyrin Maritime Holdings", threshold=0.99) is None
    assert watch_list.best_match("Zephyrine Maritime Holdings", threshold=1.0) == exact
    for threshold in (0.0, -1.0, 1.5):
        with pytest.raises(ValueError, match="threshold"):
            watch_list.best_match("Xue Mingqian", threshold=threshold)


def test_repeated_screening_is_answered_from_the_cache(watch_list: WatchList) -> None:
    first = watch_list.best_match("Hsueh Ming Chien")
    assert watch_list.best_match("Hsueh Ming Chien") is first


def test_duplicate_entry_ids_are_refused() -> None:
    with pytest.raises(InvalidInput, match="appears twice"):
        WatchList([WatchListEntry("A", "t", "Alpha"), WatchListEntry("A", "t", "Beta")])


def test_ties_go_to_the_first_entry() -> None:
    twins = WatchList(
        [WatchListEntry("A", "t", "Kuang Yuheng"), WatchListEntry("B", "t", "Yuheng Kuang")]
    )
    assert entry_of(twins.best_match("Kuang Yuheng")) == "A"
    assert entry_of(twins.best_match("Yuheng Kuang")) == "A"


# --------------------------------------------------------------------------- the packaged list


def test_packaged_list_matches_its_own_names_and_variants() -> None:
    watch_list = load_watch_list()
    for entry in watch_list.entries:
        for name in entry.names:
            match = watch_list.best_match(name)
            assert entry_of(match) == entry.entry_id, name
            assert match is not None and match.score == 1.0
            assert entry_of(watch_list.best_match(name.upper() + " Co., Ltd.")) == entry.entry_id


def test_simulator_traffic_does_not_hit_the_packaged_list() -> None:
    watch_list = load_watch_list()
    rng = simulator.derive_rng(7, "screening-test")
    customers, _ = simulator.generate_reference(rng, 150, 10, as_of=date(2026, 11, 1))
    history = simulator.generate_history(rng, customers, start=date(2026, 10, 1), days=20)
    names = {tx["counterparty_name"] for tx in history if tx.get("counterparty_name")}
    names |= {customer.name for customer in customers}
    assert len(names) > 500
    assert {
        name: watch_list.best_match(name) for name in names if watch_list.best_match(name)
    } == {}


def test_every_simulator_foreign_company_and_person_name_is_clear() -> None:
    watch_list = load_watch_list()
    first_words, second_words = simulator._FOREIGN_WORDS
    suffixes = {*simulator._COMPANY_SUFFIX.values(), "Ltd"}
    names = [f"{a} {b} {suffix}" for a in first_words for b in second_words for suffix in suffixes]
    names += list(simulator._FOREIGN_PERSONS)
    hits = {name: match for name in names if (match := watch_list.best_match(name))}
    assert hits == {}


def test_simulator_chinese_person_names_are_clear() -> None:
    watch_list = load_watch_list()
    rng = random.Random(3)
    surnames = [surname for surname, _ in simulator._SURNAMES]
    given = [character for character, _ in simulator._GIVEN]
    for _ in range(3000):
        name = rng.choice(surnames) + "".join(rng.choices(given, k=rng.choice((1, 2))))
        assert watch_list.best_match(name) is None, name


def test_high_risk_style_entries_exist_for_the_simulator() -> None:
    # Named like stream/simulator.py's foreign companies for KP, IR and MM, so a
    # high-risk-geography scenario could use them to produce real watch-list hits.
    watch_list = load_watch_list()
    for name, country in (
        ("Blackfen Minerals Corporation", "KP"),
        ("Cobaltine Shipping Co.", "IR"),
        ("Irrawood Commodities Co., Ltd.", "MM"),
    ):
        match = watch_list.best_match(name)
        assert match is not None and match.score == 1.0 and match.entry.country == country
