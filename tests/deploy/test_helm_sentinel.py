"""The Helm chart with a Sentinel URL: the Secret carries it and the settings accept it."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from shared.redis_url import parse_redis_url
from shared.settings import RedisSettings, load_group
from tests.deploy.test_helm_chart import CHART, one, render

SENTINEL_VALUES = CHART / "ci" / "sentinel-values.yaml"


def _secret_data(secret: dict[str, Any]) -> dict[str, str]:
    data = dict(secret.get("stringData") or {})
    for key, value in (secret.get("data") or {}).items():
        data[key] = base64.b64decode(value).decode()
    return data


def test_a_sentinel_url_and_password_reach_the_secret_and_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ci/sentinel-values.yaml renders a Secret whose Redis settings load as a Sentinel group."""
    values = yaml.safe_load(SENTINEL_VALUES.read_text())
    data = _secret_data(one(render("default", **values), "Secret"))
    assert data["SCC_REDIS_SENTINEL_PASSWORD"] == "change-me-sentinels"
    target = parse_redis_url(data["SCC_REDIS_URL"])
    assert target is not None and target.master == "mymaster" and len(target.sentinels) == 3
    monkeypatch.setenv("SCC_REDIS_URL", data["SCC_REDIS_URL"])
    monkeypatch.setenv("SCC_REDIS_SENTINEL_PASSWORD", data["SCC_REDIS_SENTINEL_PASSWORD"])
    monkeypatch.setenv("SCC_REDIS_SUBSCRIBE_URL", data["SCC_REDIS_SUBSCRIBE_URL"])
    settings = load_group(RedisSettings)
    assert settings.sentinel_password is not None
    subscribe = parse_redis_url(settings.subscribe_target.get_secret_value())
    assert subscribe is not None and subscribe.role == "replica"


def test_without_a_sentinel_password_the_secret_has_no_such_key() -> None:
    """The default values render no SCC_REDIS_SENTINEL_PASSWORD and no SCC_REDIS_SUBSCRIBE_URL."""
    data = _secret_data(one(render(), "Secret"))
    assert "SCC_REDIS_SENTINEL_PASSWORD" not in data and "SCC_REDIS_SUBSCRIBE_URL" not in data
