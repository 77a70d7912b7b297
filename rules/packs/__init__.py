"""Rule packs shipped with amlwatch (TOML data files)."""
