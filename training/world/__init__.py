"""The toy world: a procedurally generated scene world, the embedded default base model trained on it
(`python -m training.world train-base`), and the evaluator that measures concept quality."""
