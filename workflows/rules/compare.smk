rule compare:
    """runs.csv and the claims table from every run's measured and predicted PoS."""
    input:
        predict=ALL_PREDICT,
        train=ALL_TRAIN,
    output:
        runs=RUNS_CSV,
        claims_csv=report(CLAIMS_CSV, caption="../report/claims.rst", category="Claims"),
        claims_md=CLAIMS_MD,
    log:
        log_path("compare", "compare"),
    benchmark:
        bench_path("compare", "compare")
    conda:
        ENV
    params:
        cmd=stage("compare"),
    shell:
        "{params.cmd} > {log} 2>&1"
