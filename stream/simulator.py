"""Synthetic traffic for demos, tests, benchmarks and model work.

A Chinese bank's book of individual and corporate customers with their own habits
(channels, amounts, hours, weekdays, salaries, reused counterparties, some cross-border
business), plus injected, labelled money-laundering scenarios and malformed messages.

Everything here is pure: callers pass a seeded :class:`random.Random`; nothing reads
the clock, the environment or the global random state, so one seed gives one output.
Every generated transaction carries two extra fields, ``sim_typology`` ("" for normal
traffic) and ``sim_scenario_id``, which the Transaction contract keeps as extras.
"""

from __future__ import annotations

import csv
import heapq
import itertools
import json
import math
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from core.customer import CUSTOMER_COLUMNS, Customer, CustomerType, RiskRating
from core.manager import MANAGER_COLUMNS, Manager
from core.transaction import CONTRACT_FIELDS, OPTIONAL_FIELDS, REQUIRED_FIELDS, InvalidReason

# A fixed offset rather than ZoneInfo so that output never depends on the tz database.
SHANGHAI = timezone(timedelta(hours=8), "Asia/Shanghai")
BANK_COUNTRY = "CN"
HOME_CURRENCY = "CNY"
CASH_REPORT_THRESHOLD = Decimal("50000")
HIGH_RISK_COUNTRIES = ("KP", "IR", "MM")
# Scenarios started per 1,000 customer-days: 200 customers x 30 days gives about 12,
# enough for every typology to appear at least once.
DEFAULT_SCENARIO_RATE = 2.0

LABEL_FIELDS = ("sim_typology", "sim_scenario_id")
TRANSACTION_CSV_COLUMNS = (*CONTRACT_FIELDS, *LABEL_FIELDS)


class Typology(StrEnum):
    """The laundering patterns the simulator injects; the value is the ``sim_typology`` label."""

    STRUCTURING = "structuring"
    FAN_IN = "fan_in"
    FAN_OUT = "fan_out"
    RAPID_PASS_THROUGH = "rapid_pass_through"
    CYCLE = "cycle"
    DORMANT_REACTIVATION = "dormant_reactivation"
    HIGH_RISK_GEOGRAPHY = "high_risk_geography"
    BEHAVIOUR_CHANGE = "behaviour_change"


# --------------------------------------------------------------------------- reference data


_SURNAMES = (
    ("王", "wang"), ("李", "li"), ("张", "zhang"), ("刘", "liu"), ("陈", "chen"),
    ("杨", "yang"), ("黄", "huang"), ("赵", "zhao"), ("吴", "wu"), ("周", "zhou"),
    ("徐", "xu"), ("孙", "sun"), ("马", "ma"), ("朱", "zhu"), ("胡", "hu"),
    ("郭", "guo"), ("何", "he"), ("高", "gao"), ("林", "lin"), ("罗", "luo"),
    ("郑", "zheng"), ("梁", "liang"), ("谢", "xie"), ("宋", "song"), ("唐", "tang"),
    ("韩", "han"), ("冯", "feng"), ("邓", "deng"), ("曹", "cao"), ("彭", "peng"),
    ("曾", "zeng"), ("肖", "xiao"), ("田", "tian"), ("董", "dong"), ("袁", "yuan"),
    ("潘", "pan"), ("蒋", "jiang"), ("蔡", "cai"), ("余", "yu"), ("杜", "du"),
    ("叶", "ye"), ("程", "cheng"), ("苏", "su"), ("魏", "wei"), ("吕", "lv"),
    ("丁", "ding"), ("沈", "shen"), ("姚", "yao"), ("卢", "lu"), ("钟", "zhong"),
    ("欧阳", "ouyang"), ("司马", "sima"),
)  # fmt: skip
# Common surnames are far more common: Zipf-like weights.
_SURNAME_WEIGHTS = tuple(itertools.accumulate(1.0 / (rank + 4) for rank in range(len(_SURNAMES))))
_GIVEN = (
    ("伟", "wei"), ("芳", "fang"), ("娜", "na"), ("敏", "min"), ("静", "jing"), ("丽", "li"),
    ("强", "qiang"), ("磊", "lei"), ("军", "jun"), ("洋", "yang"), ("勇", "yong"), ("艳", "yan"),
    ("杰", "jie"), ("娟", "juan"), ("涛", "tao"), ("明", "ming"), ("超", "chao"), ("秀", "xiu"),
    ("霞", "xia"), ("平", "ping"), ("刚", "gang"), ("英", "ying"), ("华", "hua"), ("玉", "yu"),
    ("兰", "lan"), ("建", "jian"), ("国", "guo"), ("文", "wen"), ("辉", "hui"), ("红", "hong"),
    ("婷", "ting"), ("鑫", "xin"), ("宇", "yu"), ("浩", "hao"), ("晨", "chen"), ("欣", "xin"),
    ("怡", "yi"), ("佳", "jia"), ("子", "zi"), ("涵", "han"), ("俊", "jun"), ("博", "bo"),
    ("雪", "xue"), ("琳", "lin"), ("海", "hai"), ("志", "zhi"), ("鹏", "peng"), ("飞", "fei"),
    ("思", "si"), ("雨", "yu"), ("嘉", "jia"), ("梓", "zi"), ("轩", "xuan"), ("睿", "rui"),
    ("诗", "shi"), ("晓", "xiao"), ("斌", "bin"), ("凯", "kai"), ("丹", "dan"), ("萍", "ping"),
)  # fmt: skip
# (city, resident-ID region code of one of its districts)
_CITIES = (
    ("北京", "110105"), ("上海", "310115"), ("深圳", "440305"), ("广州", "440106"),
    ("杭州", "330106"), ("南京", "320102"), ("成都", "510107"), ("武汉", "420106"),
    ("苏州", "320505"), ("天津", "120101"), ("重庆", "500103"), ("西安", "610113"),
)  # fmt: skip
_TRADE_NAMES = (
    "华信", "恒通", "瑞丰", "鼎盛", "金源", "宏达", "嘉禾", "永泰", "盛世", "中联", "天成",
    "新元", "博远", "锦程", "东方", "海润", "卓越", "汇通", "星辰", "安泰", "众合", "联创",
    "远航", "龙腾",
)  # fmt: skip
_INDUSTRIES = (
    "科技", "贸易", "实业", "物流", "建设工程", "电子", "餐饮管理", "医药", "投资咨询",
    "服装", "食品", "文化传媒", "机械设备", "新能源", "供应链管理", "进出口",
)  # fmt: skip
_COMPANY_FORMS = ("有限公司", "有限公司", "有限公司", "股份有限公司", "有限责任公司")
_FOREIGN_PERSONS = (
    "David Wong", "Michael Chan", "Emily Lee", "Jason Lim", "Sarah Tan", "Kenji Sato",
    "Anna Mueller", "James Smith", "Minji Kim", "Olivia Brown", "Daniel Ng", "Grace Ho",
)  # fmt: skip
_FOREIGN_WORDS = (
    ("Pacific", "Golden", "Eastern", "Silver", "Harbour", "Global", "Pearl", "Summit",
     "Orient", "Sterling", "Northstar", "Bright", "Jade", "Lotus"),
    ("Trading", "Logistics", "Electronics", "Industries", "Holdings", "Textiles",
     "Resources", "Machinery", "Commodities", "Components", "Shipping", "Minerals"),
)  # fmt: skip
_COMPANY_SUFFIX = {
    "HK": "Limited", "US": "Inc.", "SG": "Pte. Ltd.", "JP": "Co., Ltd.", "KR": "Co., Ltd.",
    "DE": "GmbH", "FR": "SARL", "GB": "Ltd", "AU": "Pty Ltd", "AE": "FZE", "MY": "Sdn. Bhd.",
    "VN": "Co., Ltd.", "TH": "Co., Ltd.", "KP": "Corporation", "IR": "Co.", "MM": "Co., Ltd.",
}  # fmt: skip
# Where the bank's customers do cross-border business, and in which currencies.
_PARTNER_COUNTRIES = (
    ("HK", ("HKD", "USD")), ("US", ("USD",)), ("SG", ("SGD", "USD")), ("JP", ("JPY",)),
    ("KR", ("KRW", "USD")), ("DE", ("EUR",)), ("FR", ("EUR",)), ("GB", ("GBP",)),
    ("AU", ("AUD",)), ("AE", ("AED", "USD")), ("MY", ("USD",)), ("VN", ("USD",)),
    ("TH", ("USD",)),
)  # fmt: skip
# Rough CNY per unit; only used to give foreign amounts a plausible size.
_CNY_PER_UNIT = {
    "CNY": 1.0, "USD": 7.2, "EUR": 7.8, "HKD": 0.92, "JPY": 0.048, "GBP": 9.1, "SGD": 5.35,
    "KRW": 0.0053, "AUD": 4.75, "AED": 1.96,
}  # fmt: skip
_RESIDENT_COUNTRIES = ("HK", "MO", "US", "SG", "JP", "KR", "GB", "AU", "CA", "DE")
_BRANCHES = tuple(f"{city}分行" for city, _ in _CITIES)


def _pick_surname(rng: random.Random) -> tuple[str, str]:
    return rng.choices(_SURNAMES, cum_weights=_SURNAME_WEIGHTS)[0]


def _person_name(rng: random.Random) -> tuple[str, str]:
    """A Chinese personal name and its pinyin (surname first, as written)."""
    surname, surname_pinyin = _pick_surname(rng)
    given = [rng.choice(_GIVEN) for _ in range(1 if rng.random() < 0.35 else 2)]
    return surname + "".join(c for c, _ in given), surname_pinyin + "".join(p for _, p in given)


def _company_name(rng: random.Random, city: str | None = None) -> str:
    city = city or rng.choice(_CITIES)[0]
    return city + rng.choice(_TRADE_NAMES) + rng.choice(_INDUSTRIES) + rng.choice(_COMPANY_FORMS)


def _foreign_company_name(rng: random.Random, country: str) -> str:
    first, second = (rng.choice(words) for words in _FOREIGN_WORDS)
    return f"{first} {second} {_COMPANY_SUFFIX.get(country, 'Ltd')}"


def _digits(rng: random.Random, length: int) -> str:
    """``length`` random decimal digits: ``rng.choice("0123456789")`` each, inlined.

    The very draws ``Random.choice`` makes for a 10-item sequence (four random bits,
    drawn again while 10 or more), so a seed gives the same population as before; it
    was a third of the time of simulating a history.
    """
    draw = rng.getrandbits
    digits = []
    for _ in range(length):
        digit = draw(4)
        while digit >= 10:
            digit = draw(4)
        digits.append(_DIGIT_TEXT[digit])
    return "".join(digits)


_DIGIT_TEXT = "0123456789"


def _resident_id(rng: random.Random, region: str, birthday: date) -> str:
    """An 18-character PRC resident ID number with a valid GB 11643 check character."""
    body = f"{region}{birthday:%Y%m%d}{_digits(rng, 3)}"
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    check = "10X98765432"[sum(int(d) * w for d, w in zip(body, weights, strict=True)) % 11]
    return body + check


_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def _credit_code(rng: random.Random, region: str) -> str:
    """An 18-character unified social credit code with a valid GB 32100 check character."""
    body = "91" + region + "".join(rng.choice(_USCC_ALPHABET) for _ in range(9))
    weights = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
    total = sum(_USCC_ALPHABET.index(c) * w for c, w in zip(body, weights, strict=True))
    return body + _USCC_ALPHABET[(31 - total % 31) % 31]


def _managers(rng: random.Random, count: int) -> list[Manager]:
    seniors = max(1, round(count * 0.15))
    intermediates = round(count * 0.3) if count > 2 else 0
    managers: list[Manager] = []
    for index in range(count):
        manager_id = f"M{index + 1:04d}"
        name, pinyin = _person_name(rng)
        # Supervisors always come earlier in the list, so the chain cannot loop.
        if index == 0:
            grade, supervisor, branch = "senior", None, rng.choice(_BRANCHES)
        elif index < seniors:
            grade, supervisor, branch = "senior", managers[0], rng.choice(_BRANCHES)
        elif index < seniors + intermediates:
            grade, supervisor = "intermediate", rng.choice(managers[:seniors])
            branch = supervisor.branch
        else:
            grade = "junior"
            supervisor = rng.choice(managers[seniors : seniors + intermediates] or managers)
            branch = supervisor.branch
        managers.append(
            Manager(
                manager_id=manager_id,
                name=name,
                email=f"{pinyin}.{index + 1:04d}@bank.example",
                grade=grade,
                supervisor_id=supervisor.manager_id if supervisor else None,
                branch=branch,
                # Only juniors have left: supervisors stay reachable for escalation.
                active=grade != "junior" or rng.random() > 0.06,
            )
        )
    return managers


def _customer(rng: random.Random, index: int, manager_id: str, as_of: date) -> Customer:
    corporate = rng.random() < 0.2
    city, region = rng.choice(_CITIES)
    domestic = rng.random() < (0.98 if corporate else 0.96)
    country = BANK_COUNTRY if domestic else rng.choice(_RESIDENT_COUNTRIES)
    # Mostly long-standing relationships; a few opened in the last months.
    opened_days_ago = int(rng.triangular(30, 15 * 365, 4 * 365))
    opened_on = as_of - timedelta(days=opened_days_ago)
    if corporate:
        name = _company_name(rng, city)
        if country == BANK_COUNTRY:
            id_type, id_number = "uscc", _credit_code(rng, region)
        else:
            country = rng.choice(("HK", "SG"))
            name = _foreign_company_name(rng, country)
            id_type, id_number = "business_registration", _digits(rng, 8)
        risk = rng.choices(("low", "medium", "high"), weights=(0.55, 0.33, 0.12))[0]
    else:
        if country == BANK_COUNTRY or country in ("HK", "MO"):
            name = _person_name(rng)[0]
        else:
            name = rng.choice(_FOREIGN_PERSONS)
        age_days = int(rng.uniform(19 * 365, 80 * 365))
        birthday = as_of - timedelta(days=age_days)
        if country == BANK_COUNTRY:
            id_type, id_number = "resident_id", _resident_id(rng, region, birthday)
        elif country in ("HK", "MO"):
            id_type = "hk_macao_permit"
            id_number = rng.choice("HM") + _digits(rng, 8)
        else:
            id_type, id_number = "passport", rng.choice("ABCEGKLPS") + _digits(rng, 8)
        risk = rng.choices(("low", "medium", "high"), weights=(0.72, 0.22, 0.06))[0]
    return Customer(
        customer_id=f"C{index + 1:06d}",
        name=name,
        type=CustomerType.CORPORATE if corporate else CustomerType.INDIVIDUAL,
        risk_rating=RiskRating(risk),
        manager_id=manager_id,
        country=country,
        opened_on=opened_on,
        id_type=id_type,
        id_number=id_number,
    )


def generate_reference(
    rng: random.Random, n_customers: int, n_managers: int, *, as_of: date
) -> tuple[list[Customer], list[Manager]]:
    """Customers and their managers; every customer belongs to an active manager."""
    if n_customers < 1:
        raise ValueError("n_customers must be at least 1")
    if n_managers < 1:
        raise ValueError("n_managers must be at least 1")
    managers = _managers(rng, n_managers)
    active = [manager for manager in managers if manager.active]
    # Deal a first customer to every active manager, then weight by workload: juniors
    # carry the most customers, seniors the fewest.
    dealt = rng.sample(active, len(active))
    weights = [{"junior": 3, "intermediate": 2, "senior": 1}[m.grade] for m in active]
    customers = []
    for index in range(n_customers):
        owner = dealt[index] if index < len(dealt) else rng.choices(active, weights)[0]
        customers.append(_customer(rng, index, owner.manager_id, as_of))
    return customers, managers


# --------------------------------------------------------------------------- behaviour


@dataclass(frozen=True, slots=True)
class Counterparty:
    """The other side of a transaction as the bank sees it."""

    counterparty_id: str
    name: str
    country: str = BANK_COUNTRY
    currency: str = HOME_CURRENCY


_MERCHANTS = tuple(
    Counterparty(f"8981{index:011d}", name)
    for index, name in enumerate(
        (
            "美团", "盒马鲜生", "永辉超市", "星巴克", "肯德基", "中国石化加油站", "滴滴出行",
            "京东商城", "天猫", "屈臣氏", "优衣库", "麦当劳", "全家便利店", "华润万家",
            "海底捞", "携程旅行", "中国铁路12306", "瑞幸咖啡", "沃尔玛", "苏宁易购",
        )
    )
)  # fmt: skip
_FOREIGN_MERCHANTS = tuple(
    Counterparty(f"F{index:09d}", name, country, currency)
    for index, (name, country, currency) in enumerate(
        (
            ("DFS Galleria", "HK", "HKD"), ("Don Quijote", "JP", "JPY"),
            ("Marina Bay Sands", "SG", "SGD"), ("Apple Store Fifth Avenue", "US", "USD"),
            ("Galeries Lafayette", "FR", "EUR"), ("Lotte Duty Free", "KR", "KRW"),
            ("Harrods", "GB", "GBP"), ("Bic Camera", "JP", "JPY"),
        )
    )
)  # fmt: skip
# (counterparty, description) for direct debits and the bank's own postings.
_BILLERS = tuple(
    (Counterparty(f"9100{index:08d}", name), description)
    for index, (name, description) in enumerate(
        (
            ("国家电网", "电费"), ("中国移动", "话费"), ("中国联通", "话费"),
            ("中国平安保险", "保险费"), ("自来水公司", "水费"), ("燃气公司", "燃气费"),
            ("物业服务中心", "物业费"), ("本行个人贷款", "贷款还款"),
        )
    )
)  # fmt: skip
_BANK_POSTINGS = (
    (Counterparty("910099000001", "本行"), "利息"),
    (Counterparty("910099000002", "本行理财"), "理财赎回"),
)
_PAYROLL_ACCOUNT = Counterparty("910099000003", "本行代发工资专户")

_HOURS_INDIVIDUAL = (
    0.3, 0.15, 0.1, 0.08, 0.08, 0.15, 0.5, 1.5, 2.5, 3.0, 3.2, 3.5,
    4.0, 3.5, 3.0, 3.0, 3.2, 3.5, 4.0, 4.5, 4.5, 3.5, 2.0, 1.0,
)  # fmt: skip
_HOURS_CORPORATE = (
    0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.3, 2.5, 5.0, 5.0, 4.5,
    2.0, 4.0, 5.0, 5.0, 4.5, 3.0, 0.8, 0.4, 0.2, 0.1, 0.05, 0.05,
)  # fmt: skip
_HOURS_NIGHT_OWL = (
    3.0, 3.5, 3.5, 3.0, 2.0, 1.0, 0.5, 0.3, 0.3, 0.5, 0.5, 0.5,
    0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 3.0,
)  # fmt: skip
_CUM_HOURS = {
    name: tuple(itertools.accumulate(weights))
    for name, weights in (
        ("individual", _HOURS_INDIVIDUAL),
        ("corporate", _HOURS_CORPORATE),
        ("night", _HOURS_NIGHT_OWL),
    )
}
# Monday first: people shop at weekends, companies mostly rest.
_WEEKDAY_FACTOR = {
    False: (1.0, 1.0, 1.0, 1.0, 1.1, 0.85, 0.75),
    True: (1.0, 1.05, 1.0, 1.0, 1.1, 0.15, 0.08),
}
_CHANNEL_MIX: dict[tuple[bool, str], tuple[tuple[str, ...], tuple[float, ...]]] = {
    (False, "in"): (("transfer", "cash", "wire", "other"), (0.72, 0.17, 0.03, 0.08)),
    (False, "out"): (("card", "transfer", "cash", "other"), (0.55, 0.24, 0.12, 0.09)),
    (True, "in"): (("transfer", "wire", "cash", "other"), (0.76, 0.08, 0.12, 0.04)),
    (True, "out"): (("transfer", "wire", "card", "cash", "other"), (0.66, 0.08, 0.06, 0.08, 0.12)),
}
# (median CNY, log-normal sigma) per (corporate, channel)
_AMOUNTS = {
    (False, "card"): (150.0, 1.0),
    (False, "transfer"): (1500.0, 1.2),
    (False, "cash"): (1200.0, 0.8),
    (False, "wire"): (20000.0, 0.9),
    (False, "other"): (300.0, 0.9),
    (True, "card"): (3000.0, 0.9),
    (True, "transfer"): (45000.0, 1.3),
    (True, "cash"): (15000.0, 0.9),
    (True, "wire"): (180000.0, 1.0),
    (True, "other"): (8000.0, 1.0),
}
_DESCRIPTIONS = {
    (False, "in", "transfer"): ("转账", "还款", "红包", "生活费", "报销", "退款"),
    (False, "out", "transfer"): ("转账", "房租", "还款", "生活费", "学费", "借款"),
    (True, "in", "transfer"): ("货款", "服务费", "项目款", "预付款", "工程款"),
    (True, "out", "transfer"): ("货款", "采购款", "服务费", "运费", "租金", "咨询费"),
    (False, "in", "wire"): ("境外汇款", "汇款"),
    (False, "out", "wire"): ("汇款", "留学费用"),
    (True, "in", "wire"): ("出口收汇", "货款", "服务贸易收入"),
    (True, "out", "wire"): ("进口付汇", "货款", "服务费"),
}


@dataclass(slots=True)
class _Profile:
    """A customer's habits; mutable only for the dormancy bookkeeping."""

    customer: Customer
    accounts: tuple[str, ...]
    daily_rate: float
    amount_scale: float
    in_share: float
    payers: tuple[Counterparty, ...]
    payees: tuple[Counterparty, ...]
    merchants: tuple[Counterparty, ...]
    foreign: tuple[Counterparty, ...]
    foreign_share: float
    monthly_day: int
    monthly_amount: Decimal | None
    monthly_counterparty: Counterparty | None
    tax_office: Counterparty | None
    dormant: bool
    reactivated_on: date | None = None

    @property
    def corporate(self) -> bool:
        return self.customer.corporate


def _money(value: float) -> Decimal:
    """A positive amount with exactly two decimal places."""
    return max(Decimal("0.01"), Decimal(f"{value:.2f}"))


def _round_to(value: float, step: int) -> Decimal:
    return Decimal(max(step, round(value / step) * step)).quantize(Decimal("0.01"))


def _lognormal(rng: random.Random, median: float, sigma: float) -> float:
    return median * math.exp(rng.gauss(0.0, sigma))


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, product = math.exp(-lam), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


def _in_currency(rng: random.Random, cny: float, currency: str) -> Decimal:
    amount = cny / _CNY_PER_UNIT[currency]
    if currency in ("JPY", "KRW"):
        return _round_to(amount, 100 if currency == "JPY" else 1000)
    return _money(amount) if rng.random() < 0.6 else _round_to(amount, 10)


def _domestic_account(rng: random.Random) -> str:
    return rng.choice(("6222", "6217", "6228", "6214", "6225")) + _digits(rng, 15)


def _domestic_party(rng: random.Random, corporate: bool) -> Counterparty:
    name = _company_name(rng) if corporate else _person_name(rng)[0]
    return Counterparty(_domestic_account(rng), name)


def _foreign_party(
    rng: random.Random, corporate: bool, country: str | None = None, currency: str | None = None
) -> Counterparty:
    if country is None:
        country, currencies = rng.choice(_PARTNER_COUNTRIES)
        currency = currency or rng.choice(currencies)
    name = _foreign_company_name(rng, country) if corporate else rng.choice(_FOREIGN_PERSONS)
    return Counterparty(country + _digits(rng, 12), name, country, currency or "USD")


def _profile(rng: random.Random, customer: Customer, start: date) -> _Profile:
    corporate = customer.corporate
    risky = customer.risk_rating is RiskRating.HIGH
    if corporate:
        accounts = tuple(
            rng.choice(("1001", "3100", "4400")) + _digits(rng, 15)
            for _ in range(rng.randint(1, 3))
        )
        daily_rate = min(40.0, max(1.0, _lognormal(rng, 6.0, 0.6)))
        payers = tuple(_domestic_party(rng, True) for _ in range(rng.randint(5, 25)))
        payees = tuple(_domestic_party(rng, True) for _ in range(rng.randint(5, 25)))
        merchants = tuple(rng.sample(_MERCHANTS, 3))
        trades_abroad = rng.random() < (0.7 if risky else 0.35)
        foreign = tuple(
            _foreign_party(rng, True) for _ in range(rng.randint(1, 5) if trades_abroad else 0)
        )
        foreign_share = 0.0
        monthly_amount: Decimal | None = _round_to(_lognormal(rng, 300000.0, 0.8), 100)
        monthly_counterparty: Counterparty | None = _PAYROLL_ACCOUNT
        city_index = rng.randrange(len(_CITIES))
        tax_office: Counterparty | None = Counterparty(
            f"91008800{city_index:04d}", f"国家税务总局{_CITIES[city_index][0]}市税务局"
        )
        in_share = rng.uniform(0.4, 0.55)
    else:
        accounts = tuple(_domestic_account(rng) for _ in range(rng.randint(1, 2)))
        daily_rate = min(6.0, max(0.2, _lognormal(rng, 1.2, 0.5)))
        payees = tuple(_domestic_party(rng, False) for _ in range(rng.randint(2, 6)))
        payers = payees[: rng.randint(1, len(payees))]
        merchants = tuple(rng.sample(_MERCHANTS, rng.randint(6, 15)))
        has_family_abroad = rng.random() < 0.08 or customer.country != BANK_COUNTRY
        foreign = (_foreign_party(rng, False),) if has_family_abroad else ()
        foreign_share = rng.uniform(0.0, 0.05)
        employed = rng.random() < 0.75
        monthly_amount = (
            _round_to(min(80000.0, max(2500.0, _lognormal(rng, 9000.0, 0.5))), 10)
            if employed
            else None
        )
        monthly_counterparty = _domestic_party(rng, True) if employed else None
        tax_office = None
        in_share = rng.uniform(0.2, 0.35)
    # Dormant accounts: old relationships that have gone quiet before the simulation.
    dormant = start - customer.opened_on > timedelta(days=2 * 365) and rng.random() < 0.03
    return _Profile(
        customer=customer,
        accounts=accounts,
        daily_rate=daily_rate,
        amount_scale=_lognormal(rng, 1.0, 0.4),
        in_share=in_share,
        payers=payers,
        payees=payees,
        merchants=merchants,
        foreign=foreign,
        foreign_share=foreign_share,
        monthly_day=rng.choice((5, 10, 15, 20, 25)),
        monthly_amount=monthly_amount,
        monthly_counterparty=monthly_counterparty,
        tax_office=tax_office,
        dormant=dormant,
    )


# --------------------------------------------------------------------------- transactions


@dataclass(slots=True)
class _Draft:
    """A transaction before it gets its tx_id, which follows event-time order."""

    moment: datetime
    customer_id: str
    account_id: str
    direction: str
    amount: Decimal
    currency: str
    channel: str
    counterparty: Counterparty | None = None
    description: str | None = None
    typology: str = ""
    scenario_id: str = ""

    def document(self, tx_id: str) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "tx_id": tx_id,
            "timestamp": self.moment.isoformat(),
            "customer_id": self.customer_id,
            "account_id": self.account_id,
            "direction": self.direction,
            "amount": str(self.amount),
            "currency": self.currency,
            "channel": self.channel,
        }
        if self.counterparty is not None:
            doc["counterparty_id"] = self.counterparty.counterparty_id
            doc["counterparty_name"] = self.counterparty.name
            doc["counterparty_country"] = self.counterparty.country
        if self.description is not None:
            doc["description"] = self.description
        doc["sim_typology"] = self.typology
        doc["sim_scenario_id"] = self.scenario_id
        return doc


@dataclass
class _Scenario:
    """What a typology builder needs to know about the slot it fills."""

    scenario_id: str
    typology: Typology
    start: datetime
    horizon: timedelta | None

    def span(self, desired: timedelta) -> timedelta:
        """``desired``, shrunk so the scenario ends before the simulated period does."""
        return desired if self.horizon is None else min(desired, self.horizon * 0.9)

    def clamp(self, moment: datetime) -> datetime:
        """``moment``, or the latest time the scenario may use if that is earlier."""
        if self.horizon is None:
            return moment
        return min(moment, self.start + self.horizon * 0.95)


class _Simulation:
    """Day-by-day generator of normal traffic with scenarios woven in."""

    def __init__(
        self,
        rng: random.Random,
        customers: Sequence[Customer],
        *,
        start: date,
        tz: tzinfo,
        scenario_rate: float,
        typologies: Sequence[Typology],
    ) -> None:
        self.rng = rng
        self.tz = tz
        self.start = start
        self.run_tag = f"{rng.getrandbits(32):08x}"
        self.profiles = [_profile(rng, customer, start) for customer in customers]
        self.awake = [p for p in self.profiles if not p.dormant]
        self.scenarios_per_day = scenario_rate * len(self.profiles) / 1000.0
        self.typologies = list(typologies)
        self.upcoming: list[Typology] = []
        # Start with one scenario due, so that even a short run shows one.
        self.accrued = 1.0 if self.typologies and scenario_rate > 0 else 0.0
        self.scenarios = 0
        self.sequence = itertools.count()
        self.pending: list[tuple[datetime, int, _Draft]] = []
        self.builders: dict[Typology, Callable[[_Scenario], list[_Draft] | None]] = {
            Typology.STRUCTURING: self._structuring,
            Typology.FAN_IN: self._fan_in,
            Typology.FAN_OUT: self._fan_out,
            Typology.RAPID_PASS_THROUGH: self._rapid_pass_through,
            Typology.CYCLE: self._cycle,
            Typology.DORMANT_REACTIVATION: self._dormant_reactivation,
            Typology.HIGH_RISK_GEOGRAPHY: self._high_risk_geography,
            Typology.BEHAVIOUR_CHANGE: self._behaviour_change,
        }

    def run(self, days: int | None) -> Iterator[dict[str, Any]]:
        end = None if days is None else self._midnight(self.start + timedelta(days=days))
        emitted = 0
        for offset in itertools.count():
            if days is not None and offset >= days:
                break
            day = self.start + timedelta(days=offset)
            day_end = self._midnight(day + timedelta(days=1))
            for draft in self._normal_day(day):
                self._push(draft, end)
            self._start_scenarios(day, end)
            while self.pending and self.pending[0][0] < day_end:
                _, _, draft = heapq.heappop(self.pending)
                emitted += 1
                yield draft.document(f"tx-{self.run_tag}-{emitted:09d}")

    def _midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(), tzinfo=self.tz)

    def _at(self, day: date, hours: str) -> datetime:
        hour = self.rng.choices(range(24), cum_weights=_CUM_HOURS[hours])[0]
        second = self.rng.randrange(3600)
        return datetime.combine(day, time(hour, second // 60, second % 60), tzinfo=self.tz)

    def _push(self, draft: _Draft, end: datetime | None) -> None:
        # Whole seconds, as core banking systems stamp them.
        draft.moment = draft.moment.replace(microsecond=0)
        if end is None or draft.moment < end:
            heapq.heappush(self.pending, (draft.moment, next(self.sequence), draft))

    # ------------------------------------------------------------------ normal traffic

    def _normal_day(self, day: date) -> Iterator[_Draft]:
        rng = self.rng
        for profile in self.awake:
            factor = _WEEKDAY_FACTOR[profile.corporate][day.weekday()]
            for _ in range(_poisson(rng, profile.daily_rate * factor)):
                yield self._everyday(profile, day)
            if profile.monthly_amount is not None and day == _payday(day, profile.monthly_day):
                yield self._monthly(profile, day)
            if profile.tax_office is not None and day.day == 15:
                yield self._draft(
                    profile,
                    self._at(day, "corporate"),
                    "out",
                    _round_to(_lognormal(rng, 40000.0, 0.8) * profile.amount_scale, 1),
                    "transfer",
                    profile.tax_office,
                    "税款",
                )

    def _draft(
        self,
        profile: _Profile,
        moment: datetime,
        direction: str,
        amount: Decimal,
        channel: str,
        counterparty: Counterparty | None,
        description: str | None,
        currency: str = HOME_CURRENCY,
    ) -> _Draft:
        account = profile.accounts[0] if channel == "card" else self.rng.choice(profile.accounts)
        return _Draft(
            moment=moment,
            customer_id=profile.customer.customer_id,
            account_id=account,
            direction=direction,
            amount=amount,
            currency=currency,
            channel=channel,
            counterparty=counterparty,
            description=description,
        )

    def _monthly(self, profile: _Profile, day: date) -> _Draft:
        assert profile.monthly_amount is not None
        jitter = 1.0 if self.rng.random() < 0.7 else self.rng.uniform(0.9, 1.15)
        amount = _round_to(float(profile.monthly_amount) * jitter, 10)
        moment = datetime.combine(
            day, time(self.rng.randint(8, 11), self.rng.randrange(60)), tzinfo=self.tz
        )
        if profile.corporate:
            return self._draft(
                profile, moment, "out", amount, "transfer", profile.monthly_counterparty, "代发工资"
            )
        return self._draft(
            profile, moment, "in", amount, "transfer", profile.monthly_counterparty, "工资"
        )

    def _everyday(self, profile: _Profile, day: date) -> _Draft:
        rng = self.rng
        corporate = profile.corporate
        direction = "in" if rng.random() < profile.in_share else "out"
        channels, weights = _CHANNEL_MIX[corporate, direction]
        channel = rng.choices(channels, weights)[0]
        median, sigma = _AMOUNTS[corporate, channel]
        cny = _lognormal(rng, median, sigma) * profile.amount_scale
        moment = self._at(day, "corporate" if corporate else "individual")
        currency = HOME_CURRENCY
        counterparty: Counterparty | None = None
        description: str | None = None
        if channel == "cash":
            # Banknotes: whole hundreds. Individuals rarely carry report-sized cash.
            if not corporate:
                cny = min(cny, 30000.0)
            amount = _round_to(cny, 100)
            description = (
                "现金存款" if direction == "in" else ("ATM取款" if cny < 20000 else "柜台取现")
            )
        elif channel == "card":
            if profile.foreign_share and rng.random() < profile.foreign_share:
                counterparty = rng.choice(_FOREIGN_MERCHANTS)
                currency = counterparty.currency
                amount = _in_currency(rng, cny * 3, currency)
            else:
                counterparty = rng.choice(profile.merchants)
                amount = _money(cny)
            description = "消费"
        elif channel == "other":
            if direction == "out":
                counterparty, description = rng.choice(_BILLERS)
            else:
                counterparty, description = rng.choice(_BANK_POSTINGS)
            amount = _money(cny)
        elif channel == "wire" and profile.foreign and rng.random() < 0.85:
            counterparty = rng.choice(profile.foreign)
            currency = counterparty.currency
            amount = _in_currency(rng, cny, currency)
            description = rng.choice(_DESCRIPTIONS[corporate, direction, "wire"])
        else:
            pool = profile.payers if direction == "in" else profile.payees
            # Mostly known counterparties; now and then somebody new.
            counterparty = (
                rng.choice(pool) if rng.random() < 0.93 else _domestic_party(rng, corporate)
            )
            amount = _money(cny) if rng.random() < 0.5 else _round_to(cny, 10)
            description = rng.choice(_DESCRIPTIONS[corporate, direction, channel])
        return self._draft(
            profile, moment, direction, amount, channel, counterparty, description, currency
        )

    # ------------------------------------------------------------------ scenarios

    def _start_scenarios(self, day: date, end: datetime | None) -> None:
        self.accrued += self.scenarios_per_day
        while self.accrued >= 1.0:
            self.accrued -= 1.0
            # A builder may find nobody eligible (no dormant account left): try the next.
            for _ in range(len(self.typologies)):
                if not self.upcoming:
                    self.upcoming = self.rng.sample(self.typologies, len(self.typologies))
                typology = self.upcoming.pop()
                start = self._scenario_start(day)
                scenario = _Scenario(
                    scenario_id=f"sc-{self.run_tag}-{self.scenarios + 1:05d}",
                    typology=typology,
                    start=start,
                    horizon=None if end is None else end - start,
                )
                drafts = self.builders[typology](scenario)
                if drafts:
                    self.scenarios += 1
                    for draft in drafts:
                        draft.typology = typology.value
                        draft.scenario_id = scenario.scenario_id
                        self._push(draft, end)
                    break

    def _scenario_start(self, day: date) -> datetime:
        # Between 08:00 and 20:00 so that there is room left in the day.
        hour = self.rng.randint(8, 19)
        second = self.rng.randrange(3600)
        return datetime.combine(day, time(hour, second // 60, second % 60), tzinfo=self.tz)

    def _pick(self, *, prefer_corporate: bool | None = None) -> _Profile | None:
        candidates = self.awake
        if prefer_corporate is not None:
            preferred = [p for p in candidates if p.corporate == prefer_corporate]
            if preferred and self.rng.random() < 0.8:
                candidates = preferred
        return self.rng.choice(candidates) if candidates else None

    def _retime(self, scenario: _Scenario, moment: datetime, hours: str) -> datetime:
        """The same day at an hour typical of ``hours``, if that stays inside the scenario."""
        candidate = self._at(moment.date(), hours)
        if candidate < scenario.start or scenario.clamp(candidate) != candidate:
            return moment
        return candidate

    def _moments(self, start: datetime, span: timedelta, count: int) -> list[datetime]:
        seconds = max(1, int(span.total_seconds()))
        return [
            start + timedelta(seconds=s) for s in sorted(self.rng.sample(range(seconds), count))
        ]

    def _structuring(self, scenario: _Scenario) -> list[_Draft] | None:
        profile = self._pick(prefer_corporate=False)
        if profile is None:
            return None
        rng = self.rng
        count = rng.randint(3, 6)
        span = scenario.span(timedelta(days=rng.uniform(1.5, 4.0)))
        drafts = []
        for moment in self._moments(scenario.start, span, count):
            moment = self._retime(scenario, moment, "corporate")  # at the branch counter
            # Just under the 50,000 CNY large-cash report threshold.
            if rng.random() < 0.5:
                amount = Decimal(rng.randint(450, 499) * 100).quantize(Decimal("0.01"))
            else:
                amount = Decimal(rng.randint(4_500_000, 4_999_999)).scaleb(-2)
            drafts.append(self._draft(profile, moment, "in", amount, "cash", None, "现金存款"))
        return drafts

    def _fan_in(self, scenario: _Scenario) -> list[_Draft] | None:
        profile = self._pick()
        if profile is None:
            return None
        rng = self.rng
        count = rng.randint(10, 25)
        span = scenario.span(timedelta(hours=rng.uniform(2.0, 24.0)))
        drafts = []
        total = Decimal(0)
        for moment in self._moments(scenario.start, span, count):
            amount = _round_to(min(49000.0, max(1000.0, _lognormal(rng, 8000.0, 0.6))), 10)
            total += amount
            description = rng.choice(("转账", "货款", "投资款"))
            payer = _domestic_party(rng, corporate=rng.random() < 0.2)
            drafts.append(
                self._draft(profile, moment, "in", amount, "transfer", payer, description)
            )
        # Then the collected money leaves in one go.
        if rng.random() < 0.7:
            moment = scenario.clamp(drafts[-1].moment + timedelta(hours=rng.uniform(0.5, 4.0)))
            amount = (total * Decimal(str(rng.uniform(0.9, 0.99)))).quantize(Decimal("0.01"))
            drafts.append(
                self._draft(
                    profile, moment, "out", amount, "transfer", _domestic_party(rng, True), "货款"
                )
            )
        return drafts

    def _fan_out(self, scenario: _Scenario) -> list[_Draft] | None:
        profile = self._pick()
        if profile is None:
            return None
        rng = self.rng
        count = rng.randint(10, 25)
        total = _round_to(rng.uniform(200000.0, 1500000.0), 1000)
        source_channel = rng.choice(("transfer", "wire"))
        drafts = [
            self._draft(
                profile,
                scenario.start,
                "in",
                total,
                source_channel,
                _domestic_party(rng, True),
                "货款" if source_channel == "transfer" else "汇款",
            )
        ]
        span = scenario.span(timedelta(hours=rng.uniform(2.0, 24.0)))
        shares = [rng.uniform(0.5, 1.5) for _ in range(count)]
        scale = float(total) * rng.uniform(0.92, 0.99) / sum(shares)
        for moment, share in zip(
            self._moments(scenario.start + timedelta(minutes=5), span, count), shares, strict=True
        ):
            payee = _domestic_party(rng, corporate=rng.random() < 0.3)
            amount = _round_to(share * scale, 10)
            drafts.append(self._draft(profile, moment, "out", amount, "transfer", payee, "转账"))
        return drafts

    def _rapid_pass_through(self, scenario: _Scenario) -> list[_Draft] | None:
        profile = self._pick()
        if profile is None:
            return None
        rng = self.rng
        rounds = rng.randint(1, 3)
        span = scenario.span(timedelta(days=rng.uniform(1.0, 4.0)))
        drafts = []
        for moment in self._moments(scenario.start, span * 0.8, rounds):
            amount_in = _round_to(rng.uniform(100000.0, 2000000.0), 100)
            channel = rng.choice(("transfer", "transfer", "wire"))
            drafts.append(
                self._draft(
                    profile, moment, "in", amount_in, channel, _domestic_party(rng, True), "货款"
                )
            )
            # Out again within hours, less a small "fee" kept by the mule.
            out_at = scenario.clamp(moment + timedelta(hours=rng.uniform(0.3, 6.0)))
            amount_out = (amount_in * Decimal(str(rng.uniform(0.97, 0.999)))).quantize(
                Decimal("0.01")
            )
            drafts.append(
                self._draft(
                    profile,
                    out_at,
                    "out",
                    amount_out,
                    rng.choice(("transfer", "wire")),
                    _domestic_party(rng, True),
                    "货款",
                )
            )
        return drafts

    def _cycle(self, scenario: _Scenario) -> list[_Draft] | None:
        rng = self.rng
        size = min(rng.randint(3, 4), len(self.awake))
        if size < 2:
            return None
        ring = rng.sample(self.awake, size)
        accounts = {p.customer.customer_id: rng.choice(p.accounts) for p in ring}
        amount = _round_to(rng.uniform(200000.0, 1500000.0), 1000)
        span = scenario.span(timedelta(days=rng.uniform(1.0, 3.0)))
        hops = list(zip(ring, [*ring[1:], ring[0]], strict=True))
        drafts = []
        for (sender, receiver), moment in zip(
            hops, self._moments(scenario.start, span, len(hops)), strict=True
        ):
            sender_id, receiver_id = sender.customer.customer_id, receiver.customer.customer_id
            # Both legs of an internal transfer, as the bank books them.
            drafts.append(
                _Draft(
                    moment=moment,
                    customer_id=sender_id,
                    account_id=accounts[sender_id],
                    direction="out",
                    amount=amount,
                    currency=HOME_CURRENCY,
                    channel="transfer",
                    counterparty=Counterparty(accounts[receiver_id], receiver.customer.name),
                    description="往来款",
                )
            )
            drafts.append(
                _Draft(
                    moment=moment + timedelta(seconds=rng.randint(1, 30)),
                    customer_id=receiver_id,
                    account_id=accounts[receiver_id],
                    direction="in",
                    amount=amount,
                    currency=HOME_CURRENCY,
                    channel="transfer",
                    counterparty=Counterparty(accounts[sender_id], sender.customer.name),
                    description="往来款",
                )
            )
            amount = (amount * Decimal(str(rng.uniform(0.97, 0.995)))).quantize(Decimal("0.01"))
        return drafts

    def _dormant_reactivation(self, scenario: _Scenario) -> list[_Draft] | None:
        rng = self.rng
        day = scenario.start.date()
        # Months of silence first: never active here, or long enough since the last time.
        candidates = [
            p
            for p in self.profiles
            if p.dormant
            and (p.reactivated_on is None or day - p.reactivated_on > timedelta(days=180))
        ]
        if not candidates:
            return None
        profile = rng.choice(candidates)
        profile.reactivated_on = day
        amount_in = _round_to(rng.uniform(200000.0, 3000000.0), 100)
        if profile.foreign or rng.random() < 0.3:
            source = profile.foreign[0] if profile.foreign else _foreign_party(rng, True)
            drafts = [
                self._draft(
                    profile,
                    scenario.start,
                    "in",
                    _in_currency(rng, float(amount_in), source.currency),
                    "wire",
                    source,
                    "汇款",
                    source.currency,
                )
            ]
        else:
            drafts = [
                self._draft(
                    profile,
                    scenario.start,
                    "in",
                    amount_in,
                    "transfer",
                    _domestic_party(rng, True),
                    "往来款",
                )
            ]
        outs = rng.randint(1, 4)
        span = scenario.span(timedelta(hours=rng.uniform(1.0, 48.0)))
        remaining = float(amount_in) * rng.uniform(0.95, 0.99)
        for index, moment in enumerate(
            self._moments(scenario.start + timedelta(minutes=10), span, outs)
        ):
            part = remaining if index == outs - 1 else remaining * rng.uniform(0.3, 0.6)
            remaining -= part
            channel = rng.choice(("transfer", "transfer", "wire"))
            drafts.append(
                self._draft(
                    profile,
                    moment,
                    "out",
                    _round_to(part, 10),
                    channel,
                    _domestic_party(rng, True),
                    "转账",
                )
            )
        return drafts

    def _high_risk_geography(self, scenario: _Scenario) -> list[_Draft] | None:
        profile = self._pick(prefer_corporate=True)
        if profile is None:
            return None
        rng = self.rng
        country = rng.choice(HIGH_RISK_COUNTRIES)
        partner = Counterparty(
            country + _digits(rng, 12),
            _foreign_company_name(rng, country),
            country,
            rng.choices(("USD", "EUR", "CNY"), weights=(0.6, 0.25, 0.15))[0],
        )
        count = rng.randint(1, 3)
        span = scenario.span(timedelta(days=rng.uniform(0.5, 5.0)))
        drafts = []
        for moment in self._moments(scenario.start, span, count):
            moment = self._retime(scenario, moment, "corporate")
            direction = "out" if rng.random() < 0.6 else "in"
            amount = _in_currency(rng, rng.uniform(20000.0, 800000.0), partner.currency)
            description = rng.choice(_DESCRIPTIONS[True, direction, "wire"])
            drafts.append(
                self._draft(
                    profile,
                    moment,
                    direction,
                    amount,
                    "wire",
                    partner,
                    description,
                    partner.currency,
                )
            )
        return drafts

    def _behaviour_change(self, scenario: _Scenario) -> list[_Draft] | None:
        # An ordinary card-and-salary person who suddenly moves large sums, at night,
        # to and from people never seen before, partly abroad.
        profile = self._pick(prefer_corporate=False)
        if profile is None:
            return None
        rng = self.rng
        count = rng.randint(4, 10)
        span = scenario.span(timedelta(days=rng.uniform(1.0, 3.0)))
        drafts = []
        for moment in self._moments(scenario.start, span, count):
            moment = self._retime(scenario, moment, "night")
            direction = "out" if rng.random() < 0.75 else "in"
            cny = rng.uniform(50000.0, 600000.0) * max(1.0, profile.amount_scale)
            if rng.random() < 0.5:
                party = _foreign_party(rng, corporate=rng.random() < 0.5)
                amount = _in_currency(rng, cny, party.currency)
                channel, currency = "wire", party.currency
            else:
                party = _domestic_party(rng, corporate=rng.random() < 0.5)
                amount, channel, currency = _round_to(cny, 100), "transfer", HOME_CURRENCY
            drafts.append(
                self._draft(profile, moment, direction, amount, channel, party, "转账", currency)
            )
        return drafts


def _payday(day: date, nominal: int) -> date:
    """The nominal day of ``day``'s month, moved back to Friday when it is a weekend."""
    payday = day.replace(day=nominal)
    while payday.weekday() >= 5:
        payday -= timedelta(days=1)
    return payday


def iter_transactions(
    rng: random.Random,
    customers: Sequence[Customer],
    *,
    start: date,
    days: int | None = None,
    tz: tzinfo = SHANGHAI,
    scenario_rate: float = DEFAULT_SCENARIO_RATE,
    typologies: Iterable[Typology] | None = None,
) -> Iterator[dict[str, Any]]:
    """Transaction documents in event-time order from ``start``; endless when ``days`` is None."""
    if not customers:
        raise ValueError("at least one customer is needed")
    if days is not None and days < 1:
        raise ValueError("days must be at least 1")
    if scenario_rate < 0:
        raise ValueError("scenario_rate must not be negative")
    chosen = list(Typology) if typologies is None else list(dict.fromkeys(typologies))
    simulation = _Simulation(
        rng, customers, start=start, tz=tz, scenario_rate=scenario_rate, typologies=chosen
    )
    return simulation.run(days)


def generate_history(
    rng: random.Random,
    customers: Sequence[Customer],
    *,
    start: date,
    days: int,
    tz: tzinfo = SHANGHAI,
    scenario_rate: float = DEFAULT_SCENARIO_RATE,
    typologies: Iterable[Typology] | None = None,
) -> list[dict[str, Any]]:
    """All transactions of ``days`` days from ``start``, as a list of documents."""
    return list(
        iter_transactions(
            rng,
            customers,
            start=start,
            days=days,
            tz=tz,
            scenario_rate=scenario_rate,
            typologies=typologies,
        )
    )


# --------------------------------------------------------------------------- malformed messages


class MalformedKind(StrEnum):
    """The kinds of broken message the simulator can send, for dead-letter demos."""

    EMPTY = "empty"
    NOT_JSON = "not_json"
    JSON_ARRAY = "json_array"
    MISSING_FIELD = "missing_field"
    NEGATIVE_AMOUNT = "negative_amount"
    BAD_CURRENCY = "bad_currency"
    BAD_TIMESTAMP = "bad_timestamp"
    UNKNOWN_CHANNEL = "unknown_channel"
    NOT_UTF8 = "not_utf8"
    WRONG_TYPE = "wrong_type"
    TOO_LARGE = "too_large"

    @property
    def expected_reason(self) -> InvalidReason:
        """The reason ``decode_transaction`` gives for this kind of payload."""
        return EXPECTED_REASONS[self]


EXPECTED_REASONS: Mapping[MalformedKind, InvalidReason] = {
    MalformedKind.EMPTY: InvalidReason.EMPTY,
    MalformedKind.NOT_JSON: InvalidReason.NOT_JSON,
    MalformedKind.JSON_ARRAY: InvalidReason.NOT_OBJECT,
    MalformedKind.MISSING_FIELD: InvalidReason.MISSING_FIELD,
    MalformedKind.NEGATIVE_AMOUNT: InvalidReason.INVALID_VALUE,
    MalformedKind.BAD_CURRENCY: InvalidReason.INVALID_VALUE,
    MalformedKind.BAD_TIMESTAMP: InvalidReason.INVALID_VALUE,
    MalformedKind.UNKNOWN_CHANNEL: InvalidReason.INVALID_VALUE,
    MalformedKind.NOT_UTF8: InvalidReason.NOT_UTF8,
    MalformedKind.WRONG_TYPE: InvalidReason.WRONG_TYPE,
    MalformedKind.TOO_LARGE: InvalidReason.TOO_LARGE,
}

# A runaway upstream (a whole statement pasted into the description) is about this big.
TOO_LARGE_PAYLOAD_BYTES = 1024 * 1024

_BAD_CURRENCIES = ("RMB", "rmb", "US$", "YUAN", "CN¥", "EURO", "cny")
_BAD_TIMESTAMPS = (
    "2024-13-01T10:00:00+08:00",
    "2024-02-30T10:00:00+08:00",
    "2024/03/01 10:00:00",
    "01/03/2024 10:00",
    "2024-03-01T10:00:00",  # no offset: ambiguous event time
    "yesterday",
    "",
)
_UNKNOWN_CHANNELS = ("crypto", "ATM", "WIRE", "mobile", "pos", "")


def _sample_document(rng: random.Random) -> dict[str, Any]:
    return {
        "tx_id": f"tx-malformed-{rng.getrandbits(40):010x}",
        "timestamp": "2024-03-01T10:15:00+08:00",
        "customer_id": f"C{rng.randint(1, 999999):06d}",
        "account_id": _domestic_account(rng),
        "direction": rng.choice(("in", "out")),
        "amount": str(_money(_lognormal(rng, 2000.0, 1.0))),
        "currency": HOME_CURRENCY,
        "channel": rng.choice(("transfer", "card", "cash")),
        "description": "转账",
    }


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


def malformed_payload(
    kind: MalformedKind, rng: random.Random, template: Mapping[str, Any] | None = None
) -> bytes:
    """One broken message of ``kind``, built from a valid ``template`` document if given."""
    document = dict(template) if template is not None else _sample_document(rng)
    match kind:
        case MalformedKind.EMPTY:
            return b""
        case MalformedKind.NOT_JSON:
            text = json.dumps(document, ensure_ascii=False)
            variants = (
                text[: max(1, len(text) // 2)],  # cut off mid-message
                ";".join(f"{key}={value}" for key, value in document.items()),
                f"<transaction><tx_id>{document.get('tx_id')}</tx_id></transaction>",
                text.replace('"', "'"),
                text.replace(f'"{document.get("amount")}"', "NaN"),
            )
            return rng.choice(variants).encode()
        case MalformedKind.JSON_ARRAY:
            return _json_bytes([document])
        case MalformedKind.MISSING_FIELD:
            name = rng.choice(REQUIRED_FIELDS)
            if rng.random() < 0.5:
                document.pop(name, None)
            else:
                document[name] = None
            return _json_bytes(document)
        case MalformedKind.NEGATIVE_AMOUNT:
            amount = str(document.get("amount", "100.00")).lstrip("-")
            document["amount"] = rng.choice((f"-{amount}", "0", "0.00", "-0.01"))
            return _json_bytes(document)
        case MalformedKind.BAD_CURRENCY:
            document["currency"] = rng.choice(_BAD_CURRENCIES)
            return _json_bytes(document)
        case MalformedKind.BAD_TIMESTAMP:
            document["timestamp"] = rng.choice(_BAD_TIMESTAMPS)
            return _json_bytes(document)
        case MalformedKind.UNKNOWN_CHANNEL:
            document["channel"] = rng.choice(_UNKNOWN_CHANNELS)
            return _json_bytes(document)
        case MalformedKind.NOT_UTF8:
            # What a legacy core-banking feed in GBK looks like to a UTF-8 reader.
            document["description"] = rng.choice(("现金存款", "转账汇款", "工资代发"))
            payload = json.dumps(document, ensure_ascii=False).encode("gbk", errors="replace")
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError:
                return payload
            return payload + b"\xff"
        case MalformedKind.WRONG_TYPE:
            name, value = rng.choice(
                (
                    ("amount", [document.get("amount")]),
                    ("amount", True),
                    ("tx_id", 12345),
                    ("timestamp", 1709259300),
                    ("direction", {"code": "in"}),
                )
            )
            document[name] = value
            return _json_bytes(document)
        case MalformedKind.TOO_LARGE:
            document["description"] = ""
            padding = TOO_LARGE_PAYLOAD_BYTES - len(_json_bytes(document))
            document["description"] = "x" * max(padding, 0)
            return _json_bytes(document)
    raise ValueError(f"unknown malformed kind {kind!r}")


def malformed_payloads(
    rng: random.Random,
    template: Mapping[str, Any] | None = None,
    kinds: Iterable[MalformedKind] | None = None,
) -> Iterator[tuple[MalformedKind, bytes]]:
    """Endless (kind, payload) pairs of assorted broken messages."""
    chosen = tuple(MalformedKind) if kinds is None else tuple(kinds)
    if not chosen:
        raise ValueError("at least one malformed kind is needed")
    while True:
        kind = rng.choice(chosen)
        yield kind, malformed_payload(kind, rng, template)


# --------------------------------------------------------------------------- messages and files


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One record for the transactions topic: its key, value bytes and what it stands for."""

    key: bytes
    value: bytes
    typology: str = ""
    scenario_id: str = ""
    malformed: MalformedKind | None = None
    timestamp_ms: int | None = None


def transaction_json_bytes(document: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON of a transaction document, as producers put it on the topic."""
    return _json_bytes(dict(document))


def iter_messages(
    transactions: Iterable[Mapping[str, Any]],
    rng: random.Random,
    *,
    malformed_rate: float = 0.0,
    clock: Callable[[], datetime] | None = None,
) -> Iterator[SimMessage]:
    """Topic records for ``transactions`` with malformed ones slotted in at ``malformed_rate``.

    Malformed records are inserted rather than substituted, so the valid transactions are
    the same whatever the rate. With ``clock``, each transaction is stamped at the moment
    it is pulled (live mode); its simulated event order is kept.
    """
    if not 0.0 <= malformed_rate <= 1.0:
        raise ValueError("malformed_rate must be between 0 and 1")
    for document in transactions:
        if clock is not None:
            document = {**document, "timestamp": clock().isoformat(timespec="milliseconds")}
        key = str(document["customer_id"]).encode()
        # Draw only when needed, so a zero rate leaves rng untouched.
        while malformed_rate > 0.0 and rng.random() < malformed_rate:
            kind = rng.choice(tuple(MalformedKind))
            yield SimMessage(key, malformed_payload(kind, rng, document), malformed=kind)
        moment = datetime.fromisoformat(document["timestamp"])
        yield SimMessage(
            key=key,
            value=transaction_json_bytes(document),
            typology=document.get("sim_typology") or "",
            scenario_id=document.get("sim_scenario_id") or "",
            timestamp_ms=int(moment.timestamp() * 1000),
        )


def derive_rng(seed: int, purpose: str) -> random.Random:
    """An independent generator per purpose, so one seed drives several streams stably."""
    # str seeds are hashed with SHA-512 by random.Random: stable across processes.
    return random.Random(f"amlwatch-simulator/{seed}/{purpose}")


def _writer(out: TextIO, columns: Sequence[str]) -> csv.DictWriter[str]:
    return csv.DictWriter(out, fieldnames=list(columns), restval="", lineterminator="\n")


def _write_rows(
    target: Path | TextIO, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]
) -> int:
    if isinstance(target, Path):
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", encoding="utf-8", newline="") as out:
            return _write_rows(out, columns, rows)
    writer = _writer(target, columns)
    writer.writeheader()
    written = 0
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
        written += 1
    return written


def write_customers_csv(target: Path | TextIO, customers: Iterable[Customer]) -> int:
    """Write the customers CSV (CUSTOMER_COLUMNS, UTF-8); the number of rows."""
    return _write_rows(target, CUSTOMER_COLUMNS, (c.to_row() for c in customers))


def write_managers_csv(target: Path | TextIO, managers: Iterable[Manager]) -> int:
    """Write the managers CSV (MANAGER_COLUMNS, UTF-8); the number of rows."""
    return _write_rows(target, MANAGER_COLUMNS, (m.to_row() for m in managers))


def write_transactions_csv(target: Path | TextIO, rows: Iterable[Mapping[str, Any]]) -> int:
    """Write transactions with TRANSACTION_CSV_COLUMNS (contract plus labels); the row count."""
    return _write_rows(target, TRANSACTION_CSV_COLUMNS, rows)


def read_transactions_csv(source: Path | TextIO) -> Iterator[dict[str, Any]]:
    """Documents back from a transactions CSV: empty optional cells become absent."""
    if isinstance(source, Path):
        with source.open(encoding="utf-8", newline="") as handle:
            yield from read_transactions_csv(handle)
        return
    for row in csv.DictReader(source):
        yield {
            key: value for key, value in row.items() if not (value == "" and key in OPTIONAL_FIELDS)
        }


__all__ = [
    "CUSTOMER_COLUMNS",
    "DEFAULT_SCENARIO_RATE",
    "EXPECTED_REASONS",
    "HIGH_RISK_COUNTRIES",
    "LABEL_FIELDS",
    "MANAGER_COLUMNS",
    "SHANGHAI",
    "TRANSACTION_CSV_COLUMNS",
    "Counterparty",
    "Customer",
    "MalformedKind",
    "Manager",
    "SimMessage",
    "Typology",
    "derive_rng",
    "generate_history",
    "generate_reference",
    "iter_messages",
    "iter_transactions",
    "malformed_payload",
    "malformed_payloads",
    "read_transactions_csv",
    "transaction_json_bytes",
    "write_customers_csv",
    "write_managers_csv",
    "write_transactions_csv",
]
