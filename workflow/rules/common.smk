# Study expansion and helpers. The logic lives in src/byzstress/runs/study.py; this file only
# binds it to the workflow.
import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake_interface_executor_plugins.settings import DeploymentMethod

SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)

from byzstress.runs.study import (
    StudyError,
    check_finite,
    check_shared_runs,
    expand_study,
    job_threads,
    selected_studies,
)  # noqa: E402

# The CLI launcher, relative to the working directory (a stable params value).
CLI = os.path.relpath(Path(workflow.basedir) / "workflow" / "scripts" / "byzstress.py")
RESULTS = config.get("results", "results")


envvars:
    "PATH",


# Rules call `python`: inside a conda env that is the env's; otherwise make it the
# interpreter running snakemake (which has the package's dependencies).
if DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
    os.environ["PATH"] = os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ["PATH"]]
    )

try:
    check_finite(config)
    STUDIES = selected_studies(config)
    RUNS = {s: expand_study(s, config["definitions"][s], config) for s in STUDIES}
    RUN_INDEX = check_shared_runs(RUNS, RESULTS)
except StudyError as err:
    raise WorkflowError(f"config.yaml: {err}")


wildcard_constraints:
    study=r"[^/]+",
    run=r"beta~[^/]+/[^/]+/.+/seed~\d+",


def study_def(study):
    return config["definitions"][study]


def run_of(wildcards):
    path = f"{RESULTS}/{wildcards.study}/runs/{wildcards.run}.json"
    if path not in RUN_INDEX:
        raise WorkflowError(
            f"{path} is not a run of the selected studies in config.yaml"
        )
    return RUN_INDEX[path]


def run_spec(wildcards):
    """The run's spec as one JSON object (only its own values: adding runs to the config
    never reruns existing ones)."""
    return run_of(wildcards).json


def study_resource(study, key, default):
    return study_def(study).get("resources", {}).get(key, default)


def report_option(study, key, default):
    return study_def(study).get("report", {}).get(key, default)


def run_files(wildcards):
    return [run.path(RESULTS) for run in RUNS[wildcards.study]]


def all_targets():
    targets = []
    for s in STUDIES:
        base = f"{RESULTS}/{s}"
        targets += [f"{base}/runs.csv", f"{base}/curves.png"]
        targets += [f"{base}/leaderboard.{ext}" for ext in ("csv", "md", "png")]
        if report_option(s, "table", True):
            targets += [f"{base}/table1.{ext}" for ext in ("csv", "md", "tex")]
        if report_option(s, "figure", True):
            targets += [f"{base}/figure1.{ext}" for ext in ("png", "pdf")]
        if report_option(s, "sensitivity", False):
            targets += [
                f"{base}/sensitivity-{name}"
                for name in (
                    "claims.md",
                    "claims.csv",
                    "diagnostics.md",
                    "diagnostics.csv",
                    "diagnostics.png",
                    "baseline.png",
                )
            ]
        if report_option(s, "detection", False):
            targets += [
                f"{base}/detection.{ext}" for ext in ("csv", "md", "png", "pdf")
            ]
        if report_option(s, "split_effect", False):
            targets += [
                f"{base}/split-effect{name}"
                for name in (".md", "-claims.csv", "-accuracy.csv")
            ]
        if study_def(s).get("type", "matrix") == "calibration":
            targets += [f"{base}/calibration.{ext}" for ext in ("csv", "md")]
    return targets
