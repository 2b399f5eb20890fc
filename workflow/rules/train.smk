# One training run per job; its JSON is written atomically and a killed job resumes from
# {output}.ckpt when rerun (also after a Slurm requeue). {run} is the run's path below
# runs/ (beta~B/ATTACK~S/DEFENSE/[KEY~VALUE/...]seed~S), see byzstress.runs.study.


rule train:
    output:
        f"{RESULTS}/{{study}}/runs/{{run}}.json",
    log:
        f"{RESULTS}/{{study}}/logs/train/{{run}}.log",
    benchmark:
        f"{RESULTS}/{{study}}/benchmarks/{{run}}.tsv"
    conda:
        "../../envs/byzstress.yaml"
    threads: lambda wildcards: job_threads(study_def(wildcards.study))
    resources:
        mem_mb=lambda wildcards, attempt: study_resource(
            wildcards.study, "mem_mb", 3000
        )
        * attempt,
        runtime=lambda wildcards, attempt: study_resource(
            wildcards.study, "runtime", 60
        )
        * attempt,
        gpu=lambda wildcards: study_resource(wildcards.study, "gpu", 0),
    params:
        cli=CLI,
        spec=run_spec,
    shell:
        "OMP_NUM_THREADS={threads} python {params.cli:q} train --spec {params.spec:q}"
        " --out {output:q} --checkpoint {output:q}.ckpt --no-progress > {log:q} 2>&1"
