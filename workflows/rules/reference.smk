rule tracking:
    """Create the MLflow store and the scale's experiment once, before any parallel job."""
    output:
        TRACKING_JSON,
    log:
        log_path("tracking", "tracking"),
    benchmark:
        bench_path("tracking", "tracking")
    conda:
        ENV
    params:
        cmd=stage("tracking"),
    shell:
        "{params.cmd} 'outputs.tracking={output}' > {log} 2>&1"


rule reference:
    """pi_ref and the task of a policy family (tabular: drawn; transformer: trained from scratch, or the
    model of policy.checkpoint copied with its provenance, checkpoint.json); {family}-draw{k}: task draw k's."""
    input:
        lm_inputs,
    output:
        directory(fill(paths.REFERENCE, family="{reference}")),
    log:
        log_path("reference", "{reference}"),
    benchmark:
        bench_path("reference", "{reference}")
    conda:
        ENV
    threads: 2
    params:
        cmd=lambda w: stage("reference", reference_args(w)),
    shell:
        "OMP_NUM_THREADS={threads} {params.cmd} 'outputs.reference={output}' > {log} 2>&1"
