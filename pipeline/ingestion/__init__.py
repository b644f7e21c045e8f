"""Ingestors: fetch from a source, parse with the pure parsers, load through DatabaseService, log units."""
