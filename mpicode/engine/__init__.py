"""The engine: one run loop, one event loop over sources, the uplink's slot clock (no MPI)."""
