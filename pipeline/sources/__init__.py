"""Per-API knowledge: endpoints, pagination, parsers (pure) and client factories."""
