"""The study's plan: which runs a scale makes, their names and Hydra overrides (read by the Snakefile
and the stages).
"""
