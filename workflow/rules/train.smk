# One training run per job; its JSON is written atomically and a killed job resumes from
# {output}.ckpt when rerun (also after a Slurm requeue).


rule train:
    output:
        f"{RESULTS}/{{study}}/runs/beta~{{beta}}/{{attack}}~{{strength}}/{{defense}}/seed~{{seed}}.json",
    log:
        f"{RESULTS}/{{study}}/logs/train/beta~{{beta}}/{{attack}}~{{strength}}/{{defense}}/seed~{{seed}}.log",
    benchmark:
        f"{RESULTS}/{{study}}/benchmarks/beta~{{beta}}/{{attack}}~{{strength}}/{{defense}}/seed~{{seed}}.tsv"
    conda:
        "../../envs/byzstress.yaml"
    threads: lambda wildcards: study_resource(wildcards.study, "threads", 2)
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
        args=run_args,
    shell:
        "OMP_NUM_THREADS={threads} python {params.cli:q} train {params.args}"
        " --out {output:q} --checkpoint {output:q}.ckpt --no-progress > {log:q} 2>&1"
