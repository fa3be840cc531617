"""The statistics layer: Gaussians, Fréchet distances between class sets, and their fast
evaluators for the ladder walks (see docs/DESIGN.md for what each module holds)."""
