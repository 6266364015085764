"""Auditing a finished GRPO run against the theory: its checkpoints' PoS per question beside C3.

    plan = audit_plan('base=/models/base checkpoints=/runs/out task=file task.path=/data/q.jsonl', scale="default")
    plan.points            # base (step 0), then every checkpoint in step order
    rows = measure_point(cfg, point, iteration)               # Monte Carlo PoS per question, Wilson interval
    per_q, overall, cols = analyse(pos, steps_per_iteration, theory_kw, group_size)  # C3, E4, shape test

checkpoints.py finds and checks the checkpoints (never unpickles: trainer_state.json and config files only,
weights only from safetensors); measure.py samples; analysis.py is the theory side; report.py the figure and
audit.md. The stages are grpo_amp.stages.audit_point (one checkpoint) and grpo_amp.stages.audit (the rest).
"""
