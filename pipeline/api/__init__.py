"""The read-only REST API (FastAPI): `create_app(settings, db)` in `app`, served by `crypto-pipeline api`
(`server`) and by `crypto-pipeline up` beside the dashboard."""
