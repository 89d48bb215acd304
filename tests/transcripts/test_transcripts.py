"""Every scenario of tests/transcripts/*.txt, played against the sans-IO engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from transcript import Transcript, load_transcripts, run_against_engine

HERE = Path(__file__).parent
SCENARIOS = load_transcripts(HERE)


def test_the_transcript_files_hold_scenarios() -> None:
    assert len(SCENARIOS) >= 20


@pytest.mark.parametrize("scenario", SCENARIOS, ids=str)
def test_scenario(scenario: Transcript) -> None:
    run_against_engine(scenario)
