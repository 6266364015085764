report: "../report/workflow.rst"


rule figures:
    """Seaborn figures drawn from runs.csv, ladder.csv, attribution.csv and the predict and curves CSVs
    (never from training)."""
    input:
        runs=RUNS_CSV,
        ladder=LADDER_CSV,
        attribution=ATTRIBUTION_CSV,
        predict=ALL_PREDICT,
        curves=ALL_CURVES,
        study_run=STUDY_RUN_JSON,
    output:
        [report(f, caption=f"../report/{Path(f).stem}.rst", category="Figures") for f in FIGURES],
    log:
        log_path("figures", "figures"),
    benchmark:
        bench_path("figures", "figures")
    conda:
        ENV
    threads: 2  # the figures are drawn over both cores (grpo_amp.parallel): nothing else runs by then
    params:
        cmd=stage("figures"),
        files=figure_files,
    shell:
        "MPLBACKEND=Agg {params.cmd} workers={threads} {params.files} > {log} 2>&1"
