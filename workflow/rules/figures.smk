# Figure 1 (accuracy vs attack strength) and the accuracy curves of every run.


rule figure:
    input:
        f"{RESULTS}/{{study}}/runs.csv",
    output:
        png=report(
            f"{RESULTS}/{{study}}/figure1.png",
            caption="../report/figure.rst",
            category="{study}",
            subcategory="Figure 1",
        ),
        pdf=f"{RESULTS}/{{study}}/figure1.pdf",
    log:
        f"{RESULTS}/{{study}}/logs/figure.log",
    conda:
        "../../envs/byzstress.yaml"
    params:
        cli=CLI,
        metric=lambda wildcards: report_option(wildcards.study, "metric", "max_acc"),
        prefix=lambda wildcards: f"{RESULTS}/{wildcards.study}/figure1",
    shell:
        "python {params.cli:q} figure {input:q}"
        " --out-prefix {params.prefix:q} --metric {params.metric} > {log:q} 2>&1"


rule curves:
    input:
        run_files,
    output:
        report(
            f"{RESULTS}/{{study}}/curves.png",
            caption="../report/curves.rst",
            category="{study}",
            subcategory="Curves",
        ),
    log:
        f"{RESULTS}/{{study}}/logs/curves.log",
    conda:
        "../../envs/byzstress.yaml"
    params:
        cli=CLI,
    shell:
        "python {params.cli:q} curves {input:q} --out {output:q} > {log:q} 2>&1"


rule detection:
    input:
        f"{RESULTS}/{{study}}/runs.csv",
    output:
        csv=f"{RESULTS}/{{study}}/detection.csv",
        md=f"{RESULTS}/{{study}}/detection.md",
        png=report(
            f"{RESULTS}/{{study}}/detection.png",
            caption="../report/detection.rst",
            category="{study}",
            subcategory="Detection",
        ),
        pdf=f"{RESULTS}/{{study}}/detection.pdf",
    log:
        f"{RESULTS}/{{study}}/logs/detection.log",
    conda:
        "../../envs/byzstress.yaml"
    params:
        cli=CLI,
        metric=lambda wildcards: report_option(wildcards.study, "metric", "max_acc"),
        prefix=lambda wildcards: f"{RESULTS}/{wildcards.study}/detection",
    shell:
        "python {params.cli:q} detection {input:q} --out-prefix {params.prefix:q}"
        " --metric {params.metric} > {log:q} 2>&1"
