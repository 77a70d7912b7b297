"""Build the rule engine from settings: the pack and the dated reference data."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from core.settings import Settings
from rules.engine import RuleEngine
from rules.pack import load_pack, packaged_pack_path
from rules.reference_data import Reference, load_country_lists, load_rates, load_watch_list


def build_rule_engine(settings: Settings) -> RuleEngine:
    """The engine the worker and the backtest share, configured by ``settings``."""
    pack = load_pack(settings.rule_pack or packaged_pack_path())
    reference = Reference(
        rates=load_rates(settings.rates_file),
        country_lists=load_country_lists(settings.country_lists_file),
        watch_list=load_watch_list(settings.watch_list_file),
        timezone=ZoneInfo(settings.bank_timezone),
        bank_country=settings.bank_country,
    )
    return RuleEngine(pack, reference, lateness_hours=settings.allowed_lateness_hours)
