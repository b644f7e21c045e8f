"""The /v1 resources, one module per group: coins and prices (`coins`), chains (`chains`), the run log
and data quality (`runs`), and reports (`reports`: coverage, gaps, freshness, health, statistics,
analytics across coins). `common` holds what they share: parameter types, cursor ranges, replies."""
