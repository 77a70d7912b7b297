"""Rule packs and their pure evaluators (filled by the rules issue)."""
