"""The one HTTP client: transport, retries, rate limits, classification and redaction."""
