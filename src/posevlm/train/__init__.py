"""Training: freeze policies, LoRA and optimiser groups, the non-finite guard, DeepSpeed configs, seeds, provenance."""
