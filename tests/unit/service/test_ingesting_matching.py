"""Which config owns a blob: pattern beats none, longest literal prefix, ties, disabled."""

from __future__ import annotations

from typing import Any

from service.ingesting import Route, choose_config


def config(source_id: str, pattern: str | None = None, **extra: Any) -> dict[str, Any]:
    ingestion: dict[str, Any] = {"landing_container": extra.pop("container", "landing")}
    if pattern is not None:
        ingestion["path_pattern"] = pattern
    return {"source_id": source_id, "ingestion": ingestion, **extra}


def choose(configs: list[dict[str, Any]], path: str = "sales/2024/jan.csv") -> Route:
    return choose_config(configs, container="landing", path=path)


def test_matching_pattern_beats_a_config_without_one() -> None:
    """A config whose pattern matches the path wins over the container's catch-all."""
    assert choose([config("all"), config("sales", "sales/*")]) == Route(source_id="sales")


def test_non_matching_pattern_leaves_the_catch_all() -> None:
    """A config whose pattern does not match is out; the catch-all takes the blob."""
    assert choose([config("hr", "hr/*"), config("all")]) == Route(source_id="all")
    assert choose([config("hr", "hr/*")]) == Route(reason="no_matching_config")


def test_longest_literal_prefix_wins() -> None:
    """Among matching patterns the one with the longer literal prefix is more specific."""
    configs = [config("any", "*.csv"), config("sales", "sales/*"), config("y24", "sales/2024/*")]
    assert choose(configs) == Route(source_id="y24")


def test_equal_prefix_falls_back_to_more_literal_characters() -> None:
    """With equal prefixes the pattern with more literal characters wins (``*.csv`` > ``*``)."""
    assert choose([config("any", "sales/*"), config("csv", "sales/*.csv")]) == Route(
        source_id="csv"
    )


def test_genuine_tie_is_ambiguous_and_lists_candidates() -> None:
    """Two equally specific matching patterns dead-letter as ambiguous with both source_ids."""
    route = choose([config("b", "sales/*4/*.csv"), config("a", "sales/*/j*.csv")])
    assert route == Route(reason="ambiguous_match", candidates=("a", "b"))


def test_two_catch_alls_are_ambiguous() -> None:
    """Two configs without pattern on one container cannot be told apart."""
    assert choose([config("x"), config("y")]) == Route(
        reason="ambiguous_match", candidates=("x", "y")
    )


def test_disabled_winner_is_dead_lettered_not_passed_to_a_fallback() -> None:
    """A disabled most-specific config parks the blob instead of handing it to the catch-all."""
    configs = [config("all"), config("sales", "sales/*", enabled=False)]
    assert choose(configs) == Route(source_id="sales", reason="disabled")
    assert choose([config("all", enabled=None)]) == Route(source_id="all")


def test_configs_of_other_containers_and_bad_patterns_are_ignored() -> None:
    """Only the blob's container counts; a non-string pattern never matches anything."""
    odd = {"source_id": "odd", "ingestion": {"landing_container": "landing", "path_pattern": 5}}
    configs = [config("other", container="elsewhere"), odd, {"source_id": "none"}]
    assert choose(configs) == Route(reason="no_matching_config")


def test_pattern_matching_is_case_sensitive_and_star_crosses_slashes() -> None:
    """Blob names are case-sensitive; ``*`` matches across ``/`` as in fnmatch."""
    assert choose([config("up", "SALES/*")]) == Route(reason="no_matching_config")
    assert choose([config("deep", "sales*jan.csv")]) == Route(source_id="deep")


def test_key_field_names_the_id_of_a_config() -> None:
    """The id reported is read from the configured key field."""
    configs = [{"name": "n1", "ingestion": {"landing_container": "landing"}}]
    route = choose_config(configs, container="landing", path="p", key_field="name")
    assert route == Route(source_id="n1")
