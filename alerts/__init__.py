"""Case store, routing, workflow, deadlines and the audit log.

Every service function takes an SQLAlchemy ``Session`` first and keyword-only
arguments after it, works inside the caller's transaction (audit events included) and
never commits: the caller commits or rolls back. Time is always passed in (``now``);
datetimes must be aware. Results are small frozen dataclasses; ORM rows never leave
the package. Errors are the categories of ``core.errors``: ``InvalidInput``,
``NotFound``, ``Conflict`` (a refused state transition), ``Forbidden`` (wrong role,
someone else's case, four eyes).

Setting up (``alerts.database``)::

    url = default_url(data_dir)        # or "postgresql+psycopg://user@host/db"
    migrate(url)                       # Alembic upgrade head, no alembic.ini needed
    Session = session_factory(make_engine(url))

Actors (``alerts.actors``): ``Actor(user_id, role)`` with ``Role.MANAGER``,
``SUPERVISOR``, ``COMPLIANCE``, ``ADMIN`` (and ``SYSTEM`` for amlwatch itself).

Reference data (``alerts.imports``), all rows validated before any is written:

- ``import_managers(session, path, *, actor, now=None) -> ImportResult``
- ``import_customers(session, path, *, actor, now=None) -> ImportResult``
  (``inserted/updated/unchanged``; a bad file raises ``ImportRejected`` whose
  ``errors`` are ``LocatedInputError``s with line and field)

Ingest and workflow (``alerts.cases``):

- ``ingest_detection(session, detection, *, now, calendar) -> IngestResult``
  (``case_id, report_id, created, joined, duplicate, routed_to``; idempotent on
  ``detection_id``; outcome ``report`` becomes a large-value report record due five
  working days after its bank day)
- ``acknowledge / start_investigation(session, *, case_id, actor, now) -> CaseSummary``
- ``close_case(session, *, case_id, actor, disposition, reason, now)``
- ``escalate(session, *, case_id, actor, assessment, now)``
- ``propose_report / approve_report(session, *, case_id, actor, now)`` (four eyes)
- ``add_note(session, *, case_id, actor, body, now) -> int``
- ``get_case(session, *, case_id)``, ``list_cases(session, *, assignee_id, queue, open_only)``

Routing (``alerts.routing``): ``route_customer(session, *, customer_id, severity)``,
``reassign_manager(session, *, from_manager, to_manager, actor, now) -> Reassignment``.

Deadlines (``alerts.deadlines``): ``DeadlinePolicy`` (per-severity
``SeverityDeadlines``, STR working days, time zone, business hours),
``escalate_overdue(session, *, now, calendar, policy) -> list[OverdueEscalation]``,
``add_business_hours``, ``close_of_business_after``, ``str_due``.

Performance (``alerts.performance``):
``manager_performance(session, *, start, end) -> list[ManagerPerformance]``.

Audit (``alerts.audit``): ``record_event(session, *, actor, role, action, target,
before, after, at)``, ``verify_audit_chain(session) -> ChainVerification``,
``export_audit(session, *, start, end, out) -> int`` (JSON Lines).
"""
