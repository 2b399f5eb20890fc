# Summaries: tidy CSV of all runs, Table 1, leaderboard and calibration tables.


rule collect:
    input:
        run_files,
    output:
        f"{RESULTS}/{{study}}/runs.csv",
    log:
        f"{RESULTS}/{{study}}/logs/collect.log",
    conda:
        "../../envs/byzstress.yaml"
    params:
        cli=CLI,
    shell:
        "python {params.cli:q} collect {input:q} --out {output:q} > {log:q} 2>&1"


rule table:
    input:
        f"{RESULTS}/{{study}}/runs.csv",
    output:
        csv=report(
            f"{RESULTS}/{{study}}/table1.csv",
            caption="../report/table.rst",
            category="{study}",
            subcategory="Table 1",
        ),
        md=report(
            f"{RESULTS}/{{study}}/table1.md",
            caption="../report/table.rst",
            category="{study}",
            subcategory="Table 1",
        ),
        tex=f"{RESULTS}/{{study}}/table1.tex",
    log:
        f"{RESULTS}/{{study}}/logs/table.log",
    conda:
        "../../envs/byzstress.yaml"
    params:
        cli=CLI,
        metric=lambda wildcards: report_option(wildcards.study, "metric", "max_acc"),
        paper=lambda wildcards: (
            "--paper" if report_option(wildcards.study, "paper", False) else ""
        ),
        prefix=lambda wildcards: f"{RESULTS}/{wildcards.study}/table1",
    shell:
        "python {params.cli:q} table {input:q} --out-prefix {params.prefix:q}"
        " --metric {params.metric} {params.paper} > {log:q} 2>&1"


rule leaderboard:
    input:
        f"{RESULTS}/{{study}}/runs.csv",
    output:
        csv=report(
            f"{RESULTS}/{{study}}/leaderboard.csv",
            caption="../report/leaderboard.rst",
            category="{study}",
            subcategory="Leaderboard",
        ),
        md=f"{RESULTS}/{{study}}/leaderboard.md",
        png=report(
            f"{RESULTS}/{{study}}/leaderboard.png",
            caption="../report/leaderboard.rst",
            category="{study}",
            subcategory="Leaderboard",
        ),
    log:
        f"{RESULTS}/{{study}}/logs/leaderboard.log",
    conda:
        "../../envs/byzstress.yaml"
    params:
        cli=CLI,
        metric=lambda wildcards: report_option(wildcards.study, "metric", "max_acc"),
        prefix=lambda wildcards: f"{RESULTS}/{wildcards.study}/leaderboard",
    shell:
        "python {params.cli:q} leaderboard {input:q}"
        " --out-prefix {params.prefix:q} --metric {params.metric} > {log:q} 2>&1"


rule calibration:
    input:
        f"{RESULTS}/{{study}}/runs.csv",
    output:
        csv=report(
            f"{RESULTS}/{{study}}/calibration.csv",
            caption="../report/calibration.rst",
            category="{study}",
            subcategory="Calibration",
        ),
        md=f"{RESULTS}/{{study}}/calibration.md",
    log:
        f"{RESULTS}/{{study}}/logs/calibration.log",
    conda:
        "../../envs/byzstress.yaml"
    params:
        cli=CLI,
        metric=lambda wildcards: report_option(wildcards.study, "metric", "max_acc"),
        fraction=lambda wildcards: report_option(
            wildcards.study, "breaking_fraction", 0.5
        ),
        prefix=lambda wildcards: f"{RESULTS}/{wildcards.study}/calibration",
    shell:
        "python {params.cli:q} calibration {input:q}"
        " --out-prefix {params.prefix:q} --fraction {params.fraction}"
        " --metric {params.metric} > {log:q} 2>&1"


rule sensitivity:
    input:
        csv=f"{RESULTS}/{{study}}/runs.csv",
        runs=run_files,
    output:
        claims=report(
            f"{RESULTS}/{{study}}/sensitivity-claims.md",
            caption="../report/sensitivity.rst",
            category="{study}",
            subcategory="Claims",
        ),
        claims_csv=f"{RESULTS}/{{study}}/sensitivity-claims.csv",
        diag=f"{RESULTS}/{{study}}/sensitivity-diagnostics.md",
        diag_csv=f"{RESULTS}/{{study}}/sensitivity-diagnostics.csv",
        diag_png=report(
            f"{RESULTS}/{{study}}/sensitivity-diagnostics.png",
            caption="../report/sensitivity.rst",
            category="{study}",
            subcategory="Claims",
        ),
        baseline_png=f"{RESULTS}/{{study}}/sensitivity-baseline.png",
    log:
        f"{RESULTS}/{{study}}/logs/sensitivity.log",
    conda:
        "../../envs/byzstress.yaml"
    params:
        cli=CLI,
        metric=lambda wildcards: report_option(wildcards.study, "metric", "max_acc"),
        prefix=lambda wildcards: f"{RESULTS}/{wildcards.study}/sensitivity",
    shell:
        "python {params.cli:q} sensitivity {input.csv:q} {input.runs:q}"
        " --out-prefix {params.prefix:q} --metric {params.metric} > {log:q} 2>&1"


rule split_effect:
    input:
        f"{RESULTS}/{{study}}/runs.csv",
    output:
        md=report(
            f"{RESULTS}/{{study}}/split-effect.md",
            caption="../report/split_effect.rst",
            category="{study}",
            subcategory="Splits",
        ),
        claims=f"{RESULTS}/{{study}}/split-effect-claims.csv",
        accuracy=f"{RESULTS}/{{study}}/split-effect-accuracy.csv",
    log:
        f"{RESULTS}/{{study}}/logs/split_effect.log",
    conda:
        "../../envs/byzstress.yaml"
    params:
        cli=CLI,
        metric=lambda wildcards: report_option(wildcards.study, "metric", "max_acc"),
        prefix=lambda wildcards: f"{RESULTS}/{wildcards.study}/split-effect",
    shell:
        "python {params.cli:q} split-effect {input:q}"
        " --out-prefix {params.prefix:q} --metric {params.metric} > {log:q} 2>&1"
