"""Auth fixtures: a real OIDC provider (npm oidc-provider) on 127.0.0.1, and keys to forge tokens with.

The tests generate the provider's signing key themselves and hand it over in the provider's config,
so they can mint tokens the provider's JWKS vouches for (expired, wrong issuer, ...) next to the
tokens the provider issues itself. Each Elixir test user is a client of the provider whose access
tokens carry its groups in `eduperson_entitlement`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tesk.config.auth import ELIXIR_GROUP_PREFIX, ELIXIR_GROUP_SUFFIX
from tests.conftest import free_port

PROVIDER_DIR = Path(__file__).parent / "oidc_provider"
AUDIENCE = "urn:ga4gh:tes"
OPAQUE_RESOURCE = "urn:ga4gh:tes:opaque"
INTROSPECTOR = ("tes-api", "tes-api-secret")


def entitlement(*path: str) -> str:
    """An Elixir group as the provider writes it, below the default base group GA4GH:GA4GH-CAP."""
    return ELIXIR_GROUP_PREFIX + ":".join(("GA4GH:GA4GH-CAP", *path)) + ELIXIR_GROUP_SUFFIX


USERS: dict[str, list[str]] = {
    "alice": [entitlement("EBI", "SDO")],  # team member
    "bob": [entitlement("EBI", "SDO")],  # another member of the same team
    "carol": [entitlement("EBI", "SDO", "ADMIN")],  # team admin
    "dave": [entitlement("EBI", "ADMIN")],  # super admin
    "erin": [entitlement("EBI")],  # environment only
    "frank": [entitlement("CSC", "SDO")],  # another environment
    "grace": [entitlement("EBI", "TEST")],  # member of another team
    "heidi": [entitlement("EBI", "SDO"), entitlement("EBI", "TEST")],  # member of two teams
    "ivan": [entitlement("EBI", "TEST", "ADMIN")],  # admin of the other team
}


class SigningKey:
    """An RSA key with a kid, able to sign JWTs as an issuer would."""

    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self, *, private: bool) -> dict[str, Any]:
        key = self.private if private else self.private.public_key()
        data: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
        return data | {"kid": self.kid, "alg": "RS256", "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, claims: dict[str, Any], **headers: Any) -> str:
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": self.kid, **headers})


class OidcProvider:
    """The npm oidc-provider as a child process, configured through a JSON file."""

    def __init__(self, workdir: Path, keys: list[SigningKey], port: int | None = None) -> None:
        self.workdir = workdir
        self.keys = keys
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if shutil.which("node") is None or not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
            pytest.fail("the OIDC provider is not installed: run .ci/setup.d/50-oidc-provider.sh")
        clients = [
            {"client_id": name, "client_secret": f"{name}-secret", "entitlements": groups}
            for name, groups in USERS.items()
        ]
        clients.append({"client_id": INTROSPECTOR[0], "client_secret": INTROSPECTOR[1], "entitlements": []})
        config = {
            "port": self.port,
            "keys": [k.jwk(private=True) for k in self.keys],
            "clients": clients,
            "default_user": "alice",
        }
        config_file = self.workdir / f"oidc-{self.port}.json"
        config_file.write_text(json.dumps(config))
        log_file = self.workdir / f"oidc-{self.port}.log"
        with log_file.open("w") as log:
            self.process = subprocess.Popen(
                ["node", str(PROVIDER_DIR / "provider.mjs")],
                env={"OIDC_CONFIG": str(config_file), "PATH": "/usr/local/bin:/usr/bin:/bin"},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while "ready on" not in log_file.read_text():
            if self.process.poll() is not None:
                raise RuntimeError(f"oidc-provider exited: {log_file.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError("oidc-provider did not start within 20 s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def token(self, user: str, resource: str | None = None) -> str:
        """An access token the provider issues to `user` by client credentials."""
        data = {"grant_type": "client_credentials", "scope": "tes:read tes:write"}
        if resource:
            data["resource"] = resource
        response = httpx.post(f"{self.url}/token", data=data, auth=(user, f"{user}-secret"), timeout=10)
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def login(
        self,
        user: str,
        *,
        client_id: str,
        redirect_uri: str,
        authorization_url: str,
        token_url: str,
        scope: str = "openid eduperson_entitlement",
    ) -> str:
        """An access token by the authorization code flow with PKCE, as Swagger UI gets one.

        The provider logs in the user named by `login_hint` without a form (see provider.mjs).
        """
        verifier = secrets.token_urlsafe(48)
        challenge = b64url(hashlib.sha256(verifier.encode()).digest())
        state = secrets.token_urlsafe(8)
        params = {
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "login_hint": user,
        }
        with httpx.Client(timeout=10) as browser:
            response = browser.get(authorization_url, params=params)
            for _ in range(10):
                location = response.headers.get("location", "")
                if location.startswith(redirect_uri):
                    break
                assert response.is_redirect, f"{response.status_code}: {response.text[:300]}"
                response = browser.get(httpx.URL(str(response.url)).join(location))
            returned = httpx.URL(location).params
            assert returned["state"] == state
            answer = browser.post(
                token_url,
                data={
                    "grant_type": "authorization_code",
                    "code": returned["code"],
                    "redirect_uri": redirect_uri,
                    "client_id": client_id,
                    "code_verifier": verifier,
                },
            )
        answer.raise_for_status()
        token: str = answer.json()["access_token"]
        return token

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Claims of a valid access token from this issuer, for the tests to bend."""
        now = int(time.time())
        claims = {"iss": self.url, "sub": "alice", "aud": AUDIENCE, "iat": now, "exp": now + 300}
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture(scope="session")
def provider_key() -> SigningKey:
    return SigningKey("provider-key-1")


@pytest.fixture(scope="session")
def oidc_provider(
    tmp_path_factory: pytest.TempPathFactory, provider_key: SigningKey
) -> Iterator[OidcProvider]:
    provider = OidcProvider(tmp_path_factory.mktemp("oidc"), [provider_key])
    provider.start()
    yield provider
    provider.stop()


@pytest.fixture(scope="session")
def user_tokens(oidc_provider: OidcProvider) -> dict[str, str]:
    """One provider-issued JWT access token per test user."""
    return {user: oidc_provider.token(user) for user in USERS}
