"""The two-stage scheme's policy modules as they were before re-planning was indexed (commit
e4bf675), kept only as the reference the indexed successor must match decision for decision
(``TwoStageReference`` is not registered; its options and shares are the live ones)."""
