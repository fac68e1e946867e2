"""Concept training: datasets, the Custom Diffusion loop, the Ray Train job and the toy world."""
