"""A small OpenID Connect provider on 127.0.0.1 for the login tests, built on Authlib's authorization server.

The protocol is Authlib's: `AuthorizationServer` with its authorization-code grant, the OpenID Connect
extension (`OpenIDCode`: the RS256-signed ID token with the request's nonce, which must be there) and PKCE
(`CodeChallenge`, which Streamlit's login uses with S256 when the discovery document offers it); the keys and
the JWKS are joserfc's (the JOSE library Authlib itself uses; `authlib.jose` is deprecated). This module only
adds the HTTP front (stdlib `ThreadingHTTPServer` in a thread), the in-memory stores and a login page:

    /.well-known/openid-configuration   the discovery document (checked with Authlib's metadata model)
    /authorize                          GET: the login page, one button per configured user; POST: that
                                        user logs in, and the browser goes back to the client with a code
    /token                              the code (client secret + PKCE verifier) for an access and ID token
    /jwks                               the public key that signs the ID tokens
    /userinfo                           the user's claims for a bearer access token

What it was sent is recorded (`authorizations`: state, nonce, PKCE method, who logged in; `id_tokens`), so a
test can check that the client's state and nonce made the round trip; `tamper` makes it break one of them
("state" or "nonce") to show that the client refuses such a login.
"""

from __future__ import annotations

import hmac
import html
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from authlib.common.security import generate_token
from authlib.oauth2 import AuthorizationServer, OAuth2Error
from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.grants import AuthorizationCodeGrant
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.discovery import OpenIDProviderMetadata
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

SCOPES = ("openid", "email", "profile", "groups")


@dataclass(frozen=True)
class User:
    """Someone who can log in: the claims the ID token carries about them."""

    email: str
    name: str
    groups: tuple[str, ...] = ()

    @property
    def sub(self) -> str:
        """The stable subject identifier (this provider's user id)."""
        return f"user-{self.email}"


@dataclass
class _Client(ClientMixin):
    """The one registered client (the dashboard): a confidential client with a secret."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in (scope or "").split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return endpoint == "token" and method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class _Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


class _Payload(OAuth2Payload):
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    @property
    def data(self) -> dict[str, str]:
        return dict(self._pairs)

    @property
    def datalist(self) -> defaultdict[str, list]:
        values: defaultdict[str, list] = defaultdict(list)
        for key, value in self._pairs:
            values[key].append(value)
        return values


class _Request(OAuth2Request):
    """An HTTP request as Authlib's server reads it: query arguments and form fields together."""

    def __init__(self, method: str, uri: str, headers: Any, query: str, body: str) -> None:
        super().__init__(method=method, uri=uri, headers=headers)
        self._args = parse_qsl(query, keep_blank_values=True)
        self._form = parse_qsl(body, keep_blank_values=True)
        self.payload = _Payload(self._args + self._form)

    @property
    def args(self) -> dict[str, str]:
        return dict(self._args)

    @property
    def form(self) -> dict[str, str]:
        return dict(self._form)


class _Server(AuthorizationServer):
    """Authlib's server with in-memory clients, codes and tokens; responses are (status, body, headers)."""

    def __init__(self, provider: OIDCProvider) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self.provider = provider
        self.register_token_generator("default", BearerTokenGenerator(lambda **_kwargs: generate_token(42)))

    def query_client(self, client_id: str) -> _Client | None:
        client = self.provider.client
        return client if client_id == client.client_id else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.provider.access_tokens[token["access_token"]] = request.user

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, list]:
        return status, body, list(headers or [])

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


class _CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]  # noqa: RUF012 - Authlib's

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        provider: OIDCProvider = self.server.provider
        provider.codes[code] = _Code(
            code=code,
            client_id=request.client.get_client_id(),
            redirect_uri=data.get("redirect_uri", ""),
            scope=request.scope,
            user=request.user,
            nonce=data.get("nonce"),
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
        )

    def query_authorization_code(self, code: str, client: _Client) -> _Code | None:
        found: _Code | None = self.server.provider.codes.get(code)
        return found if found is not None and found.client_id == client.client_id else None

    def delete_authorization_code(self, authorization_code: _Code) -> None:
        self.server.provider.codes.pop(authorization_code.code, None)

    def authenticate_user(self, authorization_code: _Code) -> User:
        return authorization_code.user


class _OpenIDCode(OpenIDCode):
    def __init__(self, provider: OIDCProvider) -> None:
        super().__init__(require_nonce=True)
        self.provider = provider

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return any(code.nonce == nonce for code in self.provider.codes.values())

    def resolve_client_private_key(self, client: _Client) -> RSAKey:
        return self.provider.key

    def get_encode_header(self, client: _Client) -> dict[str, str]:
        return {"alg": "RS256", "kid": str(self.provider.key.kid)}

    def get_client_claims(self, client: _Client) -> dict[str, Any]:
        return {"iss": self.provider.issuer, "aud": [client.get_client_id()]}

    def get_authorization_code_claims(self, authorization_code: _Code) -> dict[str, Any]:
        claims: dict[str, Any] = super().get_authorization_code_claims(authorization_code)
        if self.provider.tamper == "nonce":
            claims["nonce"] = "not-the-nonce-the-client-sent"
        return claims

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        return self.provider.claims(user, scope)


class OIDCProvider:
    """The provider: `with OIDCProvider(users, redirect_uri=...) as idp:` serves it on `idp.url`."""

    def __init__(
        self,
        users: list[User],
        *,
        redirect_uri: str,
        client_id: str = "crypto-pipeline-dashboard",
        client_secret: str | None = None,
    ) -> None:
        self.users = {user.email: user for user in users}
        self.client = _Client(client_id, client_secret or generate_token(32), (redirect_uri,))
        self.key = RSAKey.generate_key(2048, auto_kid=True)
        self.codes: dict[str, _Code] = {}
        self.access_tokens: dict[str, User] = {}
        self.authorizations: list[dict[str, str | None]] = []  # what each completed authorization carried
        self.id_tokens: list[dict[str, Any]] = []  # the claims of every ID token issued
        self.tamper: str | None = None  # "state" or "nonce": send the client a wrong one
        self.server = _Server(self)
        self.server.register_grant(_CodeGrant, [_OpenIDCode(self), CodeChallenge(required=True)])
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._http.serve_forever, name="oidc-provider", daemon=True)

    @property
    def url(self) -> str:
        """The issuer's base URL, http://127.0.0.1:PORT."""
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def issuer(self) -> str:
        """The `iss` of its ID tokens (its URL)."""
        return self.url

    @property
    def metadata_url(self) -> str:
        """The discovery document's address (Streamlit's `server_metadata_url`)."""
        return f"{self.url}/.well-known/openid-configuration"

    def __enter__(self) -> OIDCProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(10)

    def claims(self, user: User, scope: str) -> UserInfo:
        """What the ID token and /userinfo say about a user, for the scopes granted."""
        scopes = scope.split()
        info = UserInfo(sub=user.sub)
        if "profile" in scopes:
            info["name"] = user.name
        if "email" in scopes:
            info["email"], info["email_verified"] = user.email, True
        info["groups"] = list(user.groups)  # always: Streamlit asks for openid email profile only
        return info

    def metadata(self) -> dict[str, Any]:
        """The discovery document (validated with Authlib's OpenID provider metadata model)."""
        document = OpenIDProviderMetadata(
            issuer=self.issuer,
            authorization_endpoint=f"{self.url}/authorize",
            token_endpoint=f"{self.url}/token",
            userinfo_endpoint=f"{self.url}/userinfo",
            jwks_uri=f"{self.url}/jwks",
            scopes_supported=list(SCOPES),
            response_types_supported=["code"],
            grant_types_supported=["authorization_code"],
            subject_types_supported=["public"],
            id_token_signing_alg_values_supported=["RS256"],
            token_endpoint_auth_methods_supported=["client_secret_basic", "client_secret_post"],
            code_challenge_methods_supported=["S256"],
            claims_supported=["sub", "iss", "aud", "exp", "iat", "nonce", "name", "email", "groups"],
        )
        document.validate()
        return dict(document)

    def jwks(self) -> dict[str, Any]:
        """The public half of the signing key, as a JWK set."""
        return KeySet([self.key]).as_dict(private=False)

    def decode(self, id_token: str) -> dict[str, Any]:
        """An ID token's claims, its RS256 signature checked with the public key."""
        return dict(jwt.decode(id_token, self.key, algorithms=["RS256"]).claims)

    # ------------------------------------------------------------------ endpoints

    def login_page(self, request: _Request) -> tuple[int, str, list]:
        """GET /authorize: check the request as Authlib does, then offer one button per user; the form
        posts the same parameters back with the user chosen."""
        try:
            self.server.get_consent_grant(request)
        except OAuth2Error as error:
            return 400, f"<p>{html.escape(error.error)}: {html.escape(error.description or '')}</p>", []
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in request.payload.data.items()
        )
        buttons = "".join(
            f'<p><button type="submit" name="login_as" value="{html.escape(u.email)}">'
            f"Log in as {html.escape(u.name)} ({html.escape(u.email)})</button></p>"
            for u in self.users.values()
        )
        page = (
            "<!doctype html><title>Test identity provider</title><h1>Test identity provider</h1>"
            f'<form method="post" action="/authorize">{hidden}{buttons}</form>'
        )
        return 200, page, [("Content-Type", "text/html; charset=utf-8")]

    def authorize(self, request: _Request) -> tuple[int, Any, list]:
        """POST /authorize: the chosen user logs in; Authlib issues the code and redirects back."""
        user = self.users.get(request.form.get("login_as", ""))
        try:
            grant = self.server.get_consent_grant(request, end_user=user)
        except OAuth2Error as error:
            return 400, f"<p>{html.escape(error.error)}</p>", []
        status, body, headers = self.server.create_authorization_response(
            request, grant_user=user, grant=grant
        )
        data = request.payload.data
        self.authorizations.append(
            {
                "user": user.email if user else None,
                "state": data.get("state"),
                "nonce": data.get("nonce"),
                "code_challenge_method": data.get("code_challenge_method"),
                "prompt": data.get("prompt"),
                "redirect_uri": data.get("redirect_uri"),
            }
        )
        if self.tamper == "state":
            headers = [(k, _with_param(v, "state", "not-the-state-the-client-sent")) for k, v in headers]
        return status, body, headers

    def token(self, request: _Request) -> tuple[int, Any, list]:
        """POST /token: Authlib checks the client, the code, the redirect URI and the PKCE verifier."""
        status, body, headers = self.server.create_token_response(request)
        if status == 200 and "id_token" in body:
            self.id_tokens.append(self.decode(body["id_token"]))
        return status, body, headers

    def userinfo(self, authorization: str) -> tuple[int, Any, list]:
        """GET /userinfo with a bearer access token."""
        scheme, _, token = authorization.partition(" ")
        user = self.access_tokens.get(token) if scheme.lower() == "bearer" else None
        if user is None:
            return 401, {"error": "invalid_token"}, [("WWW-Authenticate", "Bearer")]
        return 200, dict(self.claims(user, "openid email profile")), []


def _with_param(url: str, name: str, value: str) -> str:
    if not url.startswith("http"):
        return url
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != name] + [(name, value)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _handler(provider: OIDCProvider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
            pass  # quiet: pytest shows what failed

        def _request(self, body: str = "") -> _Request:
            path, _, query = self.path.partition("?")
            return _Request(self.command, f"{provider.url}{self.path}", self.headers, query, body)

        def _send(self, status: int, body: Any, headers: list) -> None:
            if isinstance(body, dict):
                payload = json.dumps(body).encode()
                headers = [*headers, ("Content-Type", "application/json")]
            else:
                payload = str(body or "").encode()
            self.send_response(status)
            for key, value in headers:
                if key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            if path == "/.well-known/openid-configuration":
                self._send(200, provider.metadata(), [])
            elif path == "/jwks":
                self._send(200, provider.jwks(), [])
            elif path == "/authorize":
                self._send(*provider.login_page(self._request()))
            elif path == "/userinfo":
                self._send(*provider.userinfo(self.headers.get("Authorization", "")))
            else:
                self._send(404, {"error": "not_found"}, [])

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            path = self.path.partition("?")[0]
            if path == "/authorize":
                self._send(*provider.authorize(self._request(body)))
            elif path == "/token":
                self._send(*provider.token(self._request(body)))
            else:
                self._send(404, {"error": "not_found"}, [])

    return Handler
