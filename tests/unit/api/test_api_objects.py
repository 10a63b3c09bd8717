"""The raw-body readers every holder of an object body uses (`api/objects.py`)."""

from __future__ import annotations

import pytest

from oneiric_operator.api.objects import (
    is_older,
    namespace_of,
    object_key,
    resource_version,
    resource_version_number,
)


def body(**meta: object) -> dict[str, object]:
    return {"metadata": meta}


def test_a_body_without_a_namespace_is_in_the_default_namespace() -> None:
    assert namespace_of(body(name="a", namespace="shop")) == "shop"
    assert namespace_of(body(name="a")) == "default"
    assert namespace_of(body(name="a", namespace="")) == "default"
    assert namespace_of({}) == "default"
    assert namespace_of(None) == "default"


def test_the_key_is_namespace_and_name() -> None:
    assert object_key(body(name="redis", namespace="shop")) == ("shop", "redis")
    assert object_key(body(name="redis")) == ("default", "redis")
    with pytest.raises(KeyError):
        object_key(body(namespace="shop"))


def test_resource_versions() -> None:
    assert resource_version(body(resourceVersion="42")) == "42"
    assert resource_version(body()) == ""
    assert resource_version(None) == ""
    assert resource_version_number(body(resourceVersion="42")) == 42
    assert resource_version_number(body(resourceVersion="opaque-7")) is None
    assert resource_version_number(body()) is None


def test_only_a_lower_comparable_version_is_older() -> None:
    held = body(resourceVersion="10")
    assert is_older(body(resourceVersion="9"), held)
    assert not is_older(body(resourceVersion="10"), held)
    assert not is_older(body(resourceVersion="11"), held)
    assert not is_older(body(resourceVersion="9"), None)
    assert not is_older(body(), held)
    assert not is_older(body(resourceVersion="x"), held)
