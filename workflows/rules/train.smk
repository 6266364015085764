rule train:
    """GRPO iterations from pi_ref for one (policy, run): per-iteration states, metrics, C1 table."""
    input:
        reference=lambda w: fill(paths.REFERENCE, family=paths.FAMILY_OF_POLICY[w.policy]),
        tracking=TRACKING_JSON,
    output:
        directory(fill(paths.TRAIN, policy="{policy}", run="{variant}")),
    log:
        log_path("train", "{policy}/{variant}"),
    benchmark:
        bench_path("train", "{policy}/{variant}")
    conda:
        ENV
    threads: 1
    resources:
        gpu=lambda w: 1 if w.policy == "transformer" and SCALE == "full" else 0,
    params:
        cmd=lambda w: stage("train", f"policy={w.policy}", run_args(w)),
    shell:
        "OMP_NUM_THREADS={threads} {params.cmd} > {log} 2>&1"
