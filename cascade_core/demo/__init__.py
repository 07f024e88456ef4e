"""The built-in demo cascade (trained with cascade_core.train on the procedural shapes data)."""
