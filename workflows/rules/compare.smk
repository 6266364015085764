rule compare:
    """runs.csv, E5's ladder and factorial and the claims table from every run's measured and predicted PoS."""
    input:
        predict=ALL_PREDICT,
        train=ALL_TRAIN,
        pos=ALL_POS,
        draws=DRAW_PREDICT,
        tracking=TRACKING_JSON,
    output:
        runs=RUNS_CSV,
        ladder=report(LADDER_CSV, caption="../report/ladder.rst", category="Claims"),
        factorial=report(FACTORIAL_CSV, caption="../report/factorial_table.rst", category="Claims"),
        attribution=report(ATTRIBUTION_CSV, caption="../report/attribution.rst", category="Claims"),
        iterations=ITERATIONS_CSV,
        claims_csv=report(CLAIMS_CSV, caption="../report/claims.rst", category="Claims"),
        claims_md=CLAIMS_MD,
        draws=DRAWS_CSV,
        study_run=STUDY_RUN_JSON,
    log:
        log_path("compare", "compare"),
    benchmark:
        bench_path("compare", "compare")
    conda:
        ENV
    # it runs last, when the other core would idle: its runs' summaries and policies' claim rows over both
    # (grpo_amp.parallel; the files do not depend on the number of workers)
    threads: 2
    params:
        cmd=stage("compare"),
        files=compare_files,
    shell:
        "{params.cmd} workers={threads} {params.files} > {log} 2>&1"
