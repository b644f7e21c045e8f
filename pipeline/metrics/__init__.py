"""Prometheus metrics pulled from the database: `crypto-pipeline metrics` serves `/metrics`.

`collector` reads the values from the database on each scrape (so a dead scheduler stays visible),
`runlog` keeps the run log's totals current without re-reading the whole log, `background` refreshes the
figures that walk the stored data (gaps, the database's size) every minute in a thread, `server` serves
them over HTTP, `binding` decides where it may listen, and `command` is `crypto-pipeline metrics`.
"""
