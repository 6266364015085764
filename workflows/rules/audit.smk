# The audit of a finished GRPO run (--config audit="..."): one job per checkpoint (base included) measures PoS
# per question; one job puts them against C3, E4 and the shape test, writes the figure and audit.md, and logs
# MLflow. AUDIT (common.smk) holds the checked overrides and the points, base first, in step order.
rule audit_point:
    """Monte Carlo PoS of every question under one checkpoint (or the base), with its Wilson interval."""
    input:
        audit_point_inputs,
    output:
        f"{AUDIT_ROOT}/points/{{point}}.csv",
    log:
        f"{AUDIT_ROOT}/logs/audit_point/{{point}}.log",
    benchmark:
        f"{AUDIT_ROOT}/benchmarks/audit_point/{{point}}.tsv"
    conda:
        ENV
    threads: 1  # small models: two checkpoints at once on two cores beat one at a time on both
    wildcard_constraints:
        point=r"base|step-\d{8}",
    resources:
        gpu=0,
    params:
        cmd=lambda w: audit_stage("audit_point", shlex.quote(f"inputs.train={AUDIT_POINTS[w.point].path}")),
    shell:
        "OMP_NUM_THREADS={threads} {params.cmd} 'outputs.pos={output}' > {log} 2>&1"


rule audit:
    """The checkpoints against the theory: pos, predict, per-question and overall tables, figure, audit.md, MLflow."""
    input:
        [f"{AUDIT_ROOT}/points/{name}.csv" for name in AUDIT_POINTS],
    output:
        **AUDIT_FILES,
    log:
        f"{AUDIT_ROOT}/logs/audit/audit.log",
    benchmark:
        f"{AUDIT_ROOT}/benchmarks/audit/audit.tsv"
    conda:
        ENV
    params:
        cmd=audit_stage("audit", f"inputs.pos={AUDIT_ROOT}/points"),
    shell:
        "{params.cmd} > {log} 2>&1"
