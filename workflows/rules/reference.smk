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
    # one thread: the transformer's pi_ref is the same bytes at 1 and 2 threads (cmp), and three of them on one core
    # each beside other jobs cost fewer core-seconds than one at a time on both (19 s of CPU against 2 x 15 s)
    threads: 1
    # first among the references: every transformer-family job, the longest of the study, waits for one
    priority: lambda w: 3 if paths.parse_reference_name(w.reference)[0] == "transformer" else 0
    params:
        cmd=lambda w: stage("reference", reference_args(w)),
    shell:
        "OMP_NUM_THREADS={threads} {params.cmd} 'outputs.reference={output}' > {log} 2>&1"
