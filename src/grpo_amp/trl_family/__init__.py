"""TRL beside our loop: ``policy`` (TRL's GRPOTrainer behind the trainer's contract), ``settings``
(our GRPO settings <-> TRL's) and ``bench`` (its benchmark). Named so, not ``trl``, to stay apart from
the library.
"""
