"""Logic on top of the store: coverage, gap filling, quality checks, freshness, access."""
