"""gmos_core.variants: one canonical set of variant names, legacy spellings mapped once."""

from __future__ import annotations

import pytest

from gmos_core.streaming.build import DEFAULT_BUNDLES
from gmos_core.variants import (
    BASELINE_VARIANTS,
    NETWORK_VARIANTS,
    head_of,
    parse_variant,
    variant_of_head,
)


def test_legacy_spellings_map_to_canonical_names():
    assert parse_variant("gmos-s") == "gmos_s" and parse_variant("gmos") == "gmos_online"
    for name in (*NETWORK_VARIANTS, *BASELINE_VARIANTS):
        assert parse_variant(name) == name
    with pytest.raises(ValueError, match="unknown model variant 'gmos_x'.*gmos_online"):
        parse_variant("gmos_x")


def test_heads_and_variants_round_trip_and_every_network_variant_has_a_bundle_path():
    assert [head_of(v) for v in NETWORK_VARIANTS] == ["gmos_s", "gmos"]
    assert all(variant_of_head(head_of(v)) == v for v in NETWORK_VARIANTS)
    assert set(DEFAULT_BUNDLES) == set(NETWORK_VARIANTS)
    with pytest.raises(ValueError, match="no network head"):
        head_of("ego_residual")
    with pytest.raises(ValueError, match="unknown network head"):
        variant_of_head("gmos_online")
