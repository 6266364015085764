rule train:
    """GRPO iterations from pi_ref for one (policy, run) over its seeds, PoS measured as it goes."""
    input:
        reference=reference_of,
        tracking=TRACKING_JSON,
    output:
        train=directory(fill(paths.TRAIN, policy="{policy}", run="{run}")),
        pos=fill(paths.POS, policy="{policy}", run="{run}"),
    log:
        log_path("train", "{policy}/{run}"),
    benchmark:
        bench_path("train", "{policy}/{run}")
    conda:
        ENV
    threads: 1
    resources:
        gpu=lambda w: 1 if registry.family_of(w.policy) == "transformer" and SCALE == "full" else 0,
    params:
        cmd=lambda w: stage("train", f"policy={w.policy}", lm_args(registry.family_of(w.policy)), run_args(w)),
    shell:
        "OMP_NUM_THREADS={threads} {params.cmd} 'inputs.reference={input.reference}' 'outputs.train={output.train}' "
        "'outputs.pos={output.pos}' > {log} 2>&1"
