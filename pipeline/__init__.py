"""Self-hosted crypto data pipeline: ingest Blockchair blocks and CoinGecko prices into one database."""
