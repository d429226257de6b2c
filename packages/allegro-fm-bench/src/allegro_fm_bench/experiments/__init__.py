"""The paper's experiments, one module each. Each ``run(...)`` returns a result dataclass with a
``markdown()`` table that puts the measured numbers next to the paper's, and writes its plot."""
