"""Two-stage's re-planning as it was before it was indexed (commit e4bf675), kept only as the
reference the indexed successor must match decision for decision (``TwoStageReference`` is not
registered; everything but re-planning is the live scheme)."""
