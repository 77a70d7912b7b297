"""goAML XML (UNODC): one ``<report>`` per file, CTR for large-value, STR for suspicious.

The element order follows the goAML 5.0.x report schema (``rentity_id`` ...
``report_indicators``); the codes come from the FIU's lists (``goaml_codes.toml``).
Each transaction has the customer's side as ``t_from_my_client`` (a debit) or
``t_to_my_client`` (a credit) with the customer's account and, inside it, the customer
as signatory; the counterparty is the plain ``t_to`` / ``t_from`` side.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from pathlib import Path

from alerts.reports.config import GoamlCodes, Institution
from alerts.reports.entries import ReportParty, ReportTransaction
from alerts.reports.xmltext import amount_text, child, to_bytes
from core.errors import InvalidInput


def render_report(
    *,
    report_code: str,
    reference: str,
    transactions: Sequence[tuple[ReportParty, ReportTransaction]],
    indicators: Sequence[str],
    reason: str,
    action: str,
    codes: GoamlCodes,
    institution: Institution,
    now: datetime,
    tz: tzinfo,
) -> bytes:
    """One goAML report; an empty period gives a report whose reason says so."""
    root = ET.Element("report")
    child(root, "rentity_id", str(institution.rentity_id))
    child(root, "rentity_branch", institution.rentity_branch)
    child(root, "submission_code", codes.submission_code)
    child(root, "report_code", report_code)
    child(root, "entity_reference", reference)
    child(root, "submission_date", _datetime(now, tz))
    child(root, "currency_code_local", codes.currency_code_local)
    person = child(root, "reporting_person")
    child(person, "first_name", institution.reporting_person_first_name)
    child(person, "last_name", institution.reporting_person_last_name)
    location = child(root, "location")
    child(location, "address_type", "B")
    child(location, "address", institution.address)
    child(location, "city", institution.city)
    child(location, "country_code", institution.country)
    child(root, "reason", reason[:8000])
    child(root, "action", action[:8000])
    if transactions:
        for party, tx in transactions:
            _transaction(root, party, tx, codes, institution, tz)
    else:
        # Nothing to report in the period: goAML's report without transactions.
        activity = child(root, "activity")
        child(activity, "report_parties")
    listed = child(root, "report_indicators")
    for indicator in sorted(set(indicators)) or [codes.code("indicators", "default")]:
        child(listed, "indicator", indicator)
    return to_bytes(root)


def validate_goaml(document: bytes, xsd: Path) -> list[str]:
    """Problems found by validating against the FIU's XSD (XSD 1.1, via xmlschema)."""
    import xmlschema

    try:
        schema = xmlschema.XMLSchema11(str(xsd))
    except (OSError, xmlschema.XMLSchemaException) as exc:
        raise InvalidInput(f"--xsd {xsd}: not a usable XML schema: {exc}") from None
    return [
        f"{error.path or '/'}: {error.reason}" for error in schema.iter_errors(document.decode())
    ]


def check_goaml(document: bytes) -> list[str]:
    """The project's own structural checks when no FIU XSD is given."""
    try:
        root = ET.fromstring(document)
    except ET.ParseError as exc:
        return [f"not well-formed XML: {exc}"]
    if root.tag != "report":
        return [f"root is {root.tag}, expected report"]
    problems = [
        f"report: {name} is missing"
        for name in (
            "rentity_id",
            "submission_code",
            "report_code",
            "submission_date",
            "currency_code_local",
            "reporting_person",
            "report_indicators",
        )
        if root.find(name) is None
    ]
    if root.find("transaction") is None and root.find("activity") is None:
        problems.append("report: neither transaction nor activity")
    for index, tx in enumerate(root.iter("transaction"), start=1):
        for name in ("transactionnumber", "date_transaction", "transmode_code", "amount_local"):
            if not (tx.findtext(name) or "").strip():
                problems.append(f"transaction #{index}: {name} is missing")
        sides = [tx.find(n) for n in ("t_from_my_client", "t_from", "t_to_my_client", "t_to")]
        if sum(side is not None for side in sides[:2]) != 1:
            problems.append(f"transaction #{index}: needs exactly one from side")
        if sum(side is not None for side in sides[2:]) != 1:
            problems.append(f"transaction #{index}: needs exactly one to side")
    return problems


def _transaction(
    root: ET.Element,
    party: ReportParty,
    tx: ReportTransaction,
    codes: GoamlCodes,
    institution: Institution,
    tz: tzinfo,
) -> None:
    element = child(root, "transaction")
    child(element, "transactionnumber", tx.tx_id)
    child(element, "transaction_location", institution.rentity_branch)
    child(element, "transaction_description", tx.purpose or f"{tx.channel} {tx.direction}")
    child(element, "date_transaction", _datetime(tx.at, tz))
    child(element, "transmode_code", codes.code("transmode", tx.channel))
    child(element, "amount_local", amount_text(tx.amount_cny))
    if tx.direction == "out":
        _my_client_side(element, "from", party, tx, codes, institution)
        _counterparty_side(element, "to", tx, codes, institution)
    else:
        _counterparty_side(element, "from", tx, codes, institution)
        _my_client_side(element, "to", party, tx, codes, institution)


def _my_client_side(
    parent: ET.Element,
    side: str,
    party: ReportParty,
    tx: ReportTransaction,
    codes: GoamlCodes,
    institution: Institution,
) -> None:
    element = child(parent, f"t_{side}_my_client")
    child(element, f"{side}_funds_code", codes.code("funds", tx.channel))
    if tx.currency != codes.currency_code_local:
        foreign = child(element, f"{side}_foreign_currency")
        child(foreign, "foreign_currency_code", tx.currency)
        child(foreign, "foreign_amount", amount_text(tx.amount))
        exchange = tx.amount_cny / tx.amount
        child(foreign, "foreign_exchange_rate", format(exchange.normalize(), "f"))
    account = child(element, f"{side}_account")
    child(account, "institution_name", institution.name)
    child(account, "swift", institution.pboc_code)
    child(account, "account", tx.account_id)
    child(account, "currency_code", tx.currency)
    if party.type == "corporate":
        entity = child(account, "t_entity")
        child(entity, "name", party.name)
        child(entity, "incorporation_number", party.id_number)
        child(entity, "incorporation_country_code", party.country)
    else:
        person = child(child(account, "signatory"), "t_person")
        child(person, "last_name", party.name)
        child(person, "nationality1", party.country)
        identification = child(person, "identification")
        child(identification, "type", codes.code("id_type", party.id_type))
        child(identification, "number", party.id_number)
        child(identification, "issue_country", party.country)
    child(element, f"{side}_country", institution.country)


def _counterparty_side(
    parent: ET.Element,
    side: str,
    tx: ReportTransaction,
    codes: GoamlCodes,
    institution: Institution,
) -> None:
    element = child(parent, f"t_{side}")
    child(element, f"{side}_funds_code", codes.code("funds", tx.channel))
    if tx.channel == "cash" or not (tx.counterparty_account or tx.counterparty_name):
        # Cash: the other side is the customer at the counter, not another account.
        person = child(element, f"{side}_person")
        child(person, "last_name", tx.counterparty_name or "cash")
    else:
        account = child(element, f"{side}_account")
        child(account, "institution_name", tx.counterparty_institution or "unknown")
        child(account, "account", tx.counterparty_account or "unknown")
        if tx.counterparty_name:
            child(account, "account_name", tx.counterparty_name)
    child(element, f"{side}_country", tx.counterparty_country or institution.country)


def _datetime(moment: datetime, tz: tzinfo) -> str:
    """xs:dateTime in bank-local time, to the second, without offset (goAML's style)."""
    return moment.astimezone(tz if tz is not None else UTC).strftime("%Y-%m-%dT%H:%M:%S")


__all__ = ["check_goaml", "render_report", "validate_goaml"]
