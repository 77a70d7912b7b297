"""Builders for rule tests: the packaged pack and reference data, transactions, customers."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.customer import Customer, CustomerType, RiskRating
from core.detection import Detection
from core.transaction import Transaction, transaction_from_mapping
from rules.engine import RuleEngine
from rules.pack import load_pack, packaged_pack_path
from rules.reference_data import Reference, load_country_lists, load_rates, load_watch_list
from rules.state import CustomerState

SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.fixture(scope="session")
def reference() -> Reference:
    return Reference(
        rates=load_rates(),
        country_lists=load_country_lists(),
        watch_list=load_watch_list(),
        timezone=SHANGHAI,
    )


@pytest.fixture(scope="session")
def pboc_engine(reference: Reference) -> RuleEngine:
    return RuleEngine(load_pack(packaged_pack_path()), reference)


def customer(kind: str = "individual", customer_id: str = "C1") -> Customer:
    return Customer(
        customer_id=customer_id,
        name="测试客户",
        type=CustomerType(kind),
        risk_rating=RiskRating.LOW,
        manager_id="M1",
        country="CN",
        opened_on=date(2020, 1, 1),
        id_type="resident_id",
        id_number="110101199003071234",
    )


@dataclass
class Ledger:
    """Feeds transactions for one customer through an engine, keeping the state."""

    engine: RuleEngine
    customer: Customer | None = field(default_factory=customer)
    state: CustomerState = field(default_factory=CustomerState)
    start: datetime = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)  # a Monday
    detections: list[Detection] = field(default_factory=list)
    _count: int = 0

    def build(
        self,
        amount: str | int | Decimal,
        *,
        at: datetime | timedelta | None = None,
        direction: str = "in",
        channel: str = "transfer",
        currency: str = "CNY",
        **fields: Any,
    ) -> Transaction:
        """A transaction of this ledger's customer, not applied."""
        self._count += 1
        moment = self.start + at if isinstance(at, timedelta) else at or self.start
        document = {
            "tx_id": fields.pop("tx_id", f"T{self._count:05d}"),
            "timestamp": moment.isoformat(),
            "customer_id": self.customer.customer_id if self.customer else "C1",
            "account_id": "A1",
            "direction": direction,
            "amount": str(amount),
            "currency": currency,
            "channel": channel,
            **fields,
        }
        return transaction_from_mapping(document)

    def tx(self, amount: str | int | Decimal, **options: Any) -> list[Detection]:
        """Apply one transaction; return what it triggered (also kept in ``detections``)."""
        found = list(
            self.engine.process(self.state, self.build(amount, **options), self.customer).detections
        )
        self.detections.extend(found)
        return found

    def fired(self, rule_id: str) -> list[Detection]:
        return [d for d in self.detections if d.detector == rule_id]


def rule_ids(detections: Iterable[Detection]) -> set[str]:
    return {detection.detector for detection in detections}


@pytest.fixture
def ledger(pboc_engine: RuleEngine) -> Ledger:
    return Ledger(pboc_engine)
