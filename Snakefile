# byzstress: the experiment matrix of config.yaml -> one training job per run -> Table 1,
# Figure 1, curves, leaderboard and an HTML report (snakemake --report report.html).
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"


localrules:
    all,
    collect,
    table,
    figure,
    curves,
    leaderboard,
    calibration,
    sensitivity,
    detection,
    split_effect,


rule all:
    default_target: True
    input:
        all_targets(),
