"""The one HTTP client (client), the meaning of a reply (classify), key hiding (redact), where a key
travels (auth), per-unit limits (limits) and interruptible socket reads (transport).

The names callers use are re-exported here; each lives in the module named in its import below.
"""

from pipeline.http.auth import NO_AUTH, Auth
from pipeline.http.classify import HTTP_RULES, SourceRules, classify_response, parse_retry_after
from pipeline.http.client import ApiClient, RequestStats
from pipeline.http.limits import UnitLimits, current_unit, unit_limits
from pipeline.http.redact import safe_url, scrub_query_secrets

__all__ = [
    "HTTP_RULES",
    "NO_AUTH",
    "ApiClient",
    "Auth",
    "RequestStats",
    "SourceRules",
    "UnitLimits",
    "classify_response",
    "current_unit",
    "parse_retry_after",
    "safe_url",
    "scrub_query_secrets",
    "unit_limits",
]
