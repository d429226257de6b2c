"""The Allegro-FM-mini recipe, one wing of allegro-fm-bench (the paper's experiments are the other: experiments/):
``minidata`` (the labelled periodic and molecular data, stage by stage), ``active`` (the active-learning rounds),
``labelstore`` (the finished stages kept in the repository), ``peers`` (SevenNet-0 and CHGNet on the held-out families).
Both wings stand on the shared floor (``structures``, ``labelling``, ``neb``, ``report``) and never import each other.
"""
