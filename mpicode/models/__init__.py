"""Models of the world the policies face: stragglers (compute delays) and uplink channels."""
