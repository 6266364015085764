rule pos:
    """PoS of every question at every iteration (exact, or Monte Carlo with Wilson intervals)."""
    input:
        reference=lambda w: fill(paths.REFERENCE, family=paths.FAMILY_OF_POLICY[w.policy]),
        train=fill(paths.TRAIN, policy="{policy}", run="{variant}"),
    output:
        fill(paths.POS, policy="{policy}", run="{variant}"),
    log:
        log_path("pos", "{policy}/{variant}"),
    benchmark:
        bench_path("pos", "{policy}/{variant}")
    conda:
        ENV
    group:
        "run"  # with predict: one cluster submission per run (profiles: group-components)
    threads: 1
    params:
        cmd=lambda w: stage("pos", f"policy={w.policy}", run_args(w)),
    shell:
        "OMP_NUM_THREADS={threads} {params.cmd} > {log} 2>&1"
