"""The only package that writes SQL: engine, upserts, runs, bookmarks, coordination, queries."""
