rule train:
    """GRPO iterations from pi_ref for one (policy, run) over its seeds, PoS measured as it goes, then C3 (population
    and E1's finite G) iterated from that measured p_ref in the same process (grpo_amp.stages.predict says why). The
    policies of a family in the scale's study.one_job_per_policy train in train_<policy> below instead."""
    wildcard_constraints:
        policy="|".join(RUN_JOB_POLICIES) or "(?!)",  # (?!) matches nothing: every policy has its own job
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
    # on a cluster the profile packs several short table jobs into one submission (group-components), where a scale
    # gives the table a job per run; the transformer family stays out (its partition differs); a local run ignores groups
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


# All runs of a policy in one job, one process (grpo_amp.stages.train_policy), for the families the scale's
# study.one_job_per_policy names: starting Python with torch, Hydra and the model's classes takes 3-5 s, a table run's
# arithmetic about 0.5 s, a CPU transformer run's about 12 s. The files are each run's own, the same bytes as the train
# rule's; a changed run re-runs its policy's job.
for _policy, _runs in POLICY_JOBS.items():
    rule:
        name:
            f"train_{_policy}"
        input:
            references=sorted({reference_of_run(_policy, r) for r in _runs}),
            tracking=TRACKING_JSON,
        output:
            train=[directory(fill(paths.TRAIN, policy=_policy, run=r)) for r in _runs],
            pos=[fill(paths.POS, policy=_policy, run=r) for r in _runs],
            predict=[fill(paths.PREDICT, policy=_policy, run=r) for r in _runs],
            curves=[fill(paths.CURVES, policy=_policy, run=r) for r in _runs],
        log:
            log_path("train", _policy),
        benchmark:
            bench_path("train", _policy)
        conda:
            ENV
        threads: 1
        # on a cluster the profile packs several table jobs into one submission (group-components); the transformer
        # family stays out (it may ask for another partition); a local run ignores groups
        group:
            None if registry.family_of(_policy) == "transformer" else "table"
        priority: registry.policy(_policy).priority
        params:
            # policy= at the job level too: the job's own config must compose (lm overrides such as task=file refuse
            # the default policy's task); each run then sets its own
            cmd=stage("train_policy", f"policy={_policy}", lm_args(registry.family_of(_policy)),
                      hydra_list("inputs.run_names", [f"{_policy}/{r}" for r in _runs]),
                      hydra_list("inputs.references", [reference_of_run(_policy, r) for r in _runs])),
            files=policy_output_files,
        shell:
            "OMP_NUM_THREADS={threads} {params.cmd} {params.files} > {log} 2>&1"
