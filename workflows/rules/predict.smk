rule predict:
    """C3 (population and E1's finite G) iterated from the measured p_ref of one run."""
    input:
        fill(paths.POS, policy="{policy}", run="{variant}"),
    output:
        fill(paths.PREDICT, policy="{policy}", run="{variant}"),
    log:
        log_path("predict", "{policy}/{variant}"),
    benchmark:
        bench_path("predict", "{policy}/{variant}")
    conda:
        ENV
    group:
        "run"
    params:
        cmd=lambda w: stage("predict", f"policy={w.policy}", run_args(w)),
    shell:
        "{params.cmd} > {log} 2>&1"
