"""``TwoStageReference``: the registered two-stage scheme with its re-planning as it was before
the index (``twostage_reference.replanning``, commit e4bf675). Stage 1, stealing, stage 2,
options and shares are the live ones (the index changed none of their decisions); not
registered."""

from __future__ import annotations

from mpicode.schemes.two_stage import TwoStage
from twostage_reference.replanning import Replanning


class TwoStageReference(Replanning, TwoStage):
    """The old re-planning methods first in the MRO; everything else is TwoStage's."""
