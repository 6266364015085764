# grpo-amp: does GRPO amplify the probability of success the way the theory says?
#   snakemake --cores all                       # the default (CPU laptop) study
#   snakemake --cores all --config scale=smoke  # seconds
#   snakemake --report results/default/report.html   # then the HTML report (or add --report-after-run)
#   snakemake --cores all --config audit="base=/models/base checkpoints=/runs/out task=file task.path=q.jsonl"
# Rules live in workflows/rules/<stage>.smk; this file only includes them and defines `all`.

include: "workflows/rules/common.smk"
include: "workflows/rules/reference.smk"
include: "workflows/rules/train.smk"
include: "workflows/rules/compare.smk"
include: "workflows/rules/report.smk"
include: "workflows/rules/audit.smk"


rule all:
    input:
        # --config audit="...": the audit of a finished run (audit.smk) instead of the study
        list(AUDIT_FILES.values()) if AUDIT.overrides else [CLAIMS_CSV, CLAIMS_MD, LADDER_CSV, FACTORIAL_CSV, ATTRIBUTION_CSV,
                                                        ITERATIONS_CSV, DRAWS_CSV, *FIGURES],
    default_target: True
