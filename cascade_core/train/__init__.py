"""Per-stage training of the cascade (the trainer, its data and the procedural shapes dataset)."""
