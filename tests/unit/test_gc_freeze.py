"""Start-up objects are moved out of the garbage collector's reach before the server listens, so that a full
collection during a storm walks only what the storm created (bench/bench_storm.py reports the pauses' effect)."""

from __future__ import annotations

import gc

from responder.cli.serve import freeze_startup_objects


def test_freezing_moves_what_exists_into_the_permanent_generation() -> None:
    kept = [{"startup": [i]} for i in range(10_000)]  # long-lived objects such as start-up leaves behind
    before = gc.get_freeze_count()
    try:
        freeze_startup_objects()
        assert gc.get_freeze_count() >= before + len(kept)
    finally:
        gc.unfreeze()
