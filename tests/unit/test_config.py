"""Settings: what production refuses, the public URL, the hosts, the operator key's strength."""

from __future__ import annotations

from typing import Any

import pytest

from creditbook.config import Settings
from creditbook.domain.errors import InvalidInput

STRONG = "s" * 32
PRODUCTION: dict[str, Any] = {
    "env": "production",
    "database_url": "postgresql+psycopg://cb@db/cb",
    "operator_key": STRONG,
    "payment_provider": "stripe",
    "secret_key": STRONG,
    "public_url": "https://credits.example.com",
}


def test_production_with_every_safe_setting_is_accepted() -> None:
    assert Settings(**PRODUCTION).origin == "https://credits.example.com"


def test_production_refuses_to_run_without_a_public_url() -> None:
    with pytest.raises(InvalidInput, match="CREDITBOOK_PUBLIC_URL must be set"):
        Settings(**{**PRODUCTION, "public_url": None})


@pytest.mark.parametrize(
    "bad",
    [
        "credits.example.com",
        "ftp://credits.example.com",
        "https://credits.example.com/dashboard",
        "https://credits.example.com/?next=x",
        "https://user@credits.example.com",
        "https://credits.example.com:99999",
        "https://",
    ],
)
def test_a_public_url_that_is_not_an_origin_is_refused(bad: str) -> None:
    with pytest.raises(InvalidInput, match="public origin"):
        Settings(public_url=bad)


def test_a_public_url_is_kept_as_its_origin() -> None:
    assert Settings(public_url="https://Credits.Example.com/").public_url == (
        "https://credits.example.com"
    )
    assert Settings(public_url="http://[::1]:8000").host_names()[0] == "[::1]"


def test_serve_defaults_the_public_url_to_its_own_address_unless_one_is_set() -> None:
    assert Settings().served_at("127.0.0.1", 8123).origin == "http://127.0.0.1:8123"
    assert Settings().served_at("0.0.0.0", 8123).origin == "http://127.0.0.1:8123"
    given = Settings(public_url="https://credits.example.com")
    assert given.served_at("127.0.0.1", 8123).origin == "https://credits.example.com"


def test_production_answers_only_for_its_public_host_and_the_extra_names() -> None:
    settings = Settings(**{**PRODUCTION, "allowed_hosts": "Internal.lan, *.credits.example.com"})
    assert settings.host_names() == [
        "credits.example.com",
        "internal.lan",
        "*.credits.example.com",
    ]


def test_outside_production_the_local_names_are_served_too() -> None:
    names = Settings(env="test", public_url="http://box:9000").host_names()
    assert names[0] == "box"
    assert {"localhost", "127.0.0.1", "testserver"} <= set(names)


def test_a_malformed_host_pattern_is_refused() -> None:
    with pytest.raises(InvalidInput, match="CREDITBOOK_ALLOWED_HOSTS"):
        Settings(allowed_hosts="credits.*.com")


def test_cookies_are_secure_when_the_public_url_is_https_unless_told_otherwise() -> None:
    assert Settings(public_url="https://credits.example.com").cookies_secure
    assert not Settings(public_url="http://127.0.0.1:8000").cookies_secure
    assert Settings(public_url="http://127.0.0.1:8000", secure_cookies=True).cookies_secure


@pytest.mark.parametrize("env", ["test", "production"])
@pytest.mark.parametrize("key", [None, "", "short-operator-key"])
def test_serving_outside_development_needs_a_strong_operator_key(env: str, key: str | None) -> None:
    values = {**PRODUCTION, "env": env}
    if env == "production":
        with pytest.raises(InvalidInput, match="OPERATOR_KEY"):
            Settings(**{**values, "operator_key": key})
        return
    with pytest.raises(InvalidInput, match=r"OPERATOR_KEY must be set \(32\+ characters\)"):
        Settings(env=env, operator_key=key).check_served()
    Settings(env=env, operator_key=STRONG).check_served()


def test_development_serves_with_a_short_operator_key() -> None:
    settings = Settings(env="development", operator_key="dev")
    settings.check_served()
    assert settings.weak_operator_key
