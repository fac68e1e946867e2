"""Custom Diffusion recipe settings calibrated for the toy-world base model."""

REG_SIMILARITY_THRESHOLD = 0.6
"""The paper's 0.85 is calibrated for CLIP; the toy text encoder's pooled features of related world
captions reach 0.45–0.82 with "photo of a {category}", so 0.6 keeps the closer half."""
