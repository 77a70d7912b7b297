"""Case store, routing, workflow and audit log (filled by the alerts issue)."""
