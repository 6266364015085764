# grpo-amp: does GRPO amplify the probability of success the way the theory says?
#   snakemake --cores all                       # the default (CPU laptop) study
#   snakemake --cores all --config scale=smoke  # seconds
#   snakemake --report results/default/report.html   # then the HTML report (or add --report-after-run)
# Rules live in workflows/rules/<stage>.smk; this file only includes them and defines `all`.

include: "workflows/rules/common.smk"
include: "workflows/rules/reference.smk"
include: "workflows/rules/train.smk"
include: "workflows/rules/predict.smk"
include: "workflows/rules/compare.smk"
include: "workflows/rules/report.smk"


rule all:
    input:
        CLAIMS_CSV,
        CLAIMS_MD,
        LADDER_CSV,
        FACTORIAL_CSV,
        ATTRIBUTION_CSV,
        ITERATIONS_CSV,
        FIGURES,
    default_target: True
