rule train:
    """GRPO iterations from pi_ref for one (policy, run) over its seeds, PoS measured as it goes, then C3 (population
    and E1's finite G) iterated from that measured p_ref in the same process (grpo_amp.stages.predict says why)."""
    input:
        reference=reference_of,
        tracking=TRACKING_JSON,
    output:
        train=directory(fill(paths.TRAIN, policy="{policy}", run="{run}")),
        pos=fill(paths.POS, policy="{policy}", run="{run}"),
        predict=fill(paths.PREDICT, policy="{policy}", run="{run}"),
        curves=fill(paths.CURVES, policy="{policy}", run="{run}"),
    log:
        log_path("train", "{policy}/{run}"),
    benchmark:
        bench_path("train", "{policy}/{run}")
    conda:
        ENV
    threads: 1
    # on a cluster the profile packs several short table jobs into one submission (group-components); the
    # transformer family stays out (its partition differs); a local run ignores groups
    group:
        lambda w: None if registry.family_of(w.policy) == "transformer" else "table"
    # longest first (registry.PolicySpec.priority): the long transformer jobs start while short ones fill the other core
    priority: lambda w: registry.policy(w.policy).priority
    resources:
        gpu=lambda w: 1 if registry.family_of(w.policy) == "transformer" and SCALE == "full" else 0,
    params:
        cmd=lambda w: stage("train", f"policy={w.policy}", lm_args(registry.family_of(w.policy)), run_args(w)),
    shell:
        "OMP_NUM_THREADS={threads} {params.cmd} 'inputs.reference={input.reference}' 'outputs.train={output.train}' "
        "'outputs.pos={output.pos}' 'outputs.predict={output.predict}' 'outputs.curves={output.curves}' > {log} 2>&1"
