"""Hot swaps: what a binding writes, where it writes it, how health is judged, and the state machine."""
