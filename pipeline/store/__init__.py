"""The only package that writes SQL, one module per concern; `pipeline.database.DatabaseService` composes
the mixins. Imports only the base modules (config, errors, models, schemas, columns, ranges, ...).

- `engine`: engines, URLs, driver errors -> DatabaseError, `DatabaseCore` (transactions, the database clock)
- `schema`: Alembic migrations, `create_tables`, `check_schema`
- `upsert`, `records`: bulk idempotent writes and plain reads of the seed's records
- `stats`: row counts, coverage per coin, size on disk, the health ping
- `runs`: the run log's statements; `bookmarks`: where each ingestor stands, moved with its batch
- `coordination`: heartbeats, leases, the replay-request queue and its claims, abandoned runs
- `quality`: data-quality findings; `coverage`: the reads coverage and gap planning are computed from
- `queries`: the dashboard's read models (reads only)
"""
