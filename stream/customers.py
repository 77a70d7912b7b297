"""The customers the worker knows, read from the configured CSV and re-read when it changes."""

from __future__ import annotations

import logging
from pathlib import Path

from core.customer import Customer, ReferenceRowError, read_customers_csv

log = logging.getLogger(__name__)


class CustomerDirectory:
    """customer_id -> Customer; a bad file keeps the previous directory and logs where."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._customers: dict[str, Customer] = {}
        self._loaded_mtime: float | None = None

    def get(self, customer_id: str) -> Customer | None:
        return self._customers.get(customer_id)

    def __len__(self) -> int:
        return len(self._customers)

    def refresh(self) -> bool:
        """Re-read the file if it changed since the last read; whether it was re-read."""
        if self.path is None:
            return False
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return False
        if mtime == self._loaded_mtime:
            return False
        try:
            customers = {
                customer.customer_id: customer for customer in read_customers_csv(self.path)
            }
        except ReferenceRowError as exc:
            # The message names file, line and field only: no customer data.
            log.error("customers file not loaded: %s", exc)
            return False
        self._customers = customers
        self._loaded_mtime = mtime
        log.info("loaded %d customers from %s", len(customers), self.path.name)
        return True
