rule predict:
    """C3 (population and E1's finite G) iterated from the measured p_ref of one run, per seed."""
    input:
        pos=fill(paths.POS, policy="{policy}", run="{run}"),
    output:
        predict=fill(paths.PREDICT, policy="{policy}", run="{run}"),
        curves=fill(paths.CURVES, policy="{policy}", run="{run}"),
    log:
        log_path("predict", "{policy}/{run}"),
    benchmark:
        bench_path("predict", "{policy}/{run}")
    conda:
        ENV
    group:
        "run"
    params:
        cmd=lambda w: stage("predict", f"policy={w.policy}", lm_args(registry.family_of(w.policy)), run_args(w)),
    shell:
        "{params.cmd} 'inputs.pos={input.pos}' 'outputs.predict={output.predict}' 'outputs.curves={output.curves}' > {log} 2>&1"
