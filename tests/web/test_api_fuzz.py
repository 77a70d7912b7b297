"""Schemathesis fuzzes every operation of the published OpenAPI schema as a signed-in
compliance officer (the widest case scope; an admin for the user routes) against the real
server: no input yields a 5xx.

Bounded in time: ``MAX_EXAMPLES`` derandomised examples per operation.
"""

from __future__ import annotations

import itertools
from collections import Counter

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.web.conftest import WebWorld

MAX_EXAMPLES = 25
# Logging out would revoke the fuzzing user's own token mid-run.
SKIPPED = {("POST", "/api/logout")}


def test_no_input_yields_a_server_error(web_world: WebWorld) -> None:
    for _ in range(3):  # rows for the generated ids to hit, besides missing ones
        web_world.new_case("M1")
    schema = schemathesis.openapi.from_url(f"{web_world.base_url}/openapi.json")
    # Compliance has the widest case scope; user management is the admin's alone.
    compliance = {"Authorization": f"Bearer {web_world.tokens['C1']}"}
    admin = {"Authorization": f"Bearer {web_world.tokens['A1']}"}
    server_errors: list[str] = []
    statuses: Counter[int] = Counter()
    fuzzed = 0
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation, mode in itertools.product(operations, GenerationMode):
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        fuzzed += 1

        @given(case=operation.as_strategy(mode))
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: schemathesis.Case) -> None:
            users = case.operation.path.startswith("/api/users")
            response = case.call(headers=admin if users else compliance, timeout=30)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                server_errors.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:200]}"
                )

        try:
            fuzz()
        except Unsatisfiable:
            # Nothing to make invalid: an operation without parameters or body.
            assert mode is GenerationMode.NEGATIVE, operation.path
    assert fuzzed >= 2 * 21  # valid and invalid inputs for every operation
    assert server_errors == []
    # Authenticated for real: plenty of requests got through to the handlers.
    assert statuses[200] > 50, statuses
    assert statuses[422] > 50, statuses
