"""gmos_core.errors: typed errors with a machine-readable kind."""

from __future__ import annotations

import pytest

from gmos_core.errors import GmosError, ModelSetupError
from gmos_core.streaming.build import RuntimeSettings, load_frame_model


def test_model_setup_error_has_a_kind_and_stays_a_runtime_error():
    with pytest.raises(ModelSetupError) as err:
        load_frame_model(RuntimeSettings(variant="nope"))  # type: ignore[arg-type]
    assert isinstance(err.value, RuntimeError) and isinstance(err.value, GmosError)
    assert err.value.kind == "model_setup"
    assert GmosError("x", kind="duplicate_stamp").kind == "duplicate_stamp"
