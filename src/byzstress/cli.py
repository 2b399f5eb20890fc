"""Command-line interface: ``byzstress train | collect | table | figure | curves |
leaderboard | calibration | sensitivity | detection | split-effect | pack | restore |
verify | readme | download | list | runs``.

Every training knob of :class:`byzstress.sim.spec.RunSpec` is a flag of ``byzstress train``
(``--lr-milestones 0.5,0.75``); ``--config FILE`` reads them from YAML first, and flags
given on the command line override it. Bad values exit with status 2 and a message naming
the key and the valid choices.
"""

from __future__ import annotations

import argparse
import sys
import typing
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from .sim.spec import RunSpec, SpecError, field_help, read_spec_json

__all__ = ["main"]


def _convert(name: str, text: str) -> Any:
    """Parse a flag's text into the field's type (validation proper happens in RunSpec)."""
    hint = typing.get_type_hints(RunSpec)[name]
    origin_args = set(typing.get_args(hint)) or {hint}
    if text == "" and type(None) in origin_args:
        return None
    if (
        list in origin_args
        or typing.get_origin(hint) is list
        or any(typing.get_origin(a) is list for a in origin_args)
    ):
        items = [t.strip() for t in text.split(",") if t.strip()]
        if name == "plugins":
            return items
        return [_number_or_text(t) for t in items]
    if bool in origin_args:
        low = text.lower()
        if low in ("true", "yes", "1", "on"):
            return True
        if low in ("false", "no", "0", "off"):
            return False
        return text
    if int in origin_args and float not in origin_args:
        try:
            return int(text)
        except ValueError:
            return text
    if float in origin_args:
        return _number_or_text(text)
    return text


def _number_or_text(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train one run and write its JSON",
        description="Train one run of Byzantine D-SGD and write its metrics as JSON.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", type=Path, help="YAML file with any of the keys below")
    p.add_argument(
        "--spec",
        metavar="JSON",
        help="the run spec as one JSON object (what a workflow job is handed; applied after "
        "--config, before the flags below)",
    )
    p.add_argument("--out", type=Path, help="where to write the run's JSON (atomically)")
    p.add_argument(
        "--checkpoint", type=Path, help="checkpoint file (resumed if present; default OUT.ckpt)"
    )
    prog = p.add_mutually_exclusive_group()
    prog.add_argument("--progress", dest="progress", action="store_true", default=None)
    prog.add_argument("--no-progress", dest="progress", action="store_false")
    defaults, helps = RunSpec(), field_help()
    for f in fields(RunSpec):
        default = getattr(defaults, f.name)
        p.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f.name,
            default=argparse.SUPPRESS,
            metavar=f.name.upper(),
            help=f"{helps[f.name]} (default: {default!r})",
        )


def _spec_from_args(args: argparse.Namespace) -> RunSpec:
    values: dict[str, Any] = {}
    if args.config is not None:
        try:
            loaded = yaml.safe_load(args.config.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise SpecError(f"--config: cannot read {str(args.config)!r}: {err}") from err
        if not isinstance(loaded, dict):
            raise SpecError(f"--config: {str(args.config)!r} must hold a mapping of keys")
        values.update(loaded)
    if args.spec is not None:
        values.update(read_spec_json(args.spec))
    for f in fields(RunSpec):
        if f.name in args:
            values[f.name] = _convert(f.name, getattr(args, f.name))
    return RunSpec.from_dict(values)


def _cmd_train(args: argparse.Namespace) -> int:
    from .runs.runner import run
    from .runs.storage import WriteError
    from .sim.data import DataNotFoundError

    spec = _spec_from_args(args)
    ckpt = args.checkpoint
    if ckpt is None and args.out is not None:
        ckpt = args.out.with_name(args.out.name + ".ckpt")
    try:
        result = run(spec, out=args.out, checkpoint=ckpt, progress=args.progress)
    except DataNotFoundError as err:
        print(f"byzstress train: error: {err}", file=sys.stderr)
        return 3
    except WriteError as err:
        print(
            f"byzstress train: error: {err.strerror}; nothing partial was written, and a "
            "rerun resumes from the last checkpoint",
            file=sys.stderr,
        )
        return 4
    print(
        f"{result['status']}: max_acc={result['max_acc']:.4f} final_acc={result['final_acc']:.4f} "
        f"steps={result['steps_done']} {result['steps_per_sec']:.2f} steps/s on {result['device']}"
        + (f" -> {args.out}" if args.out else "")
    )
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from .sim.data import load

    load(args.dataset, args.data_root, train=True, download=True)
    load(args.dataset, args.data_root, train=False, download=True)
    print(f"{args.dataset} ready under {args.data_root}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from .sim import data, models
    from .threats import attacks, defenses, plugins

    plugins.load_plugins()
    print("datasets:        " + ", ".join(data.DATASETS))
    print("models:          " + ", ".join(models.MODELS))
    print("attacks:         " + ", ".join(sorted(attacks.ATTACKS)))
    print("rules:           " + ", ".join(sorted(defenses.RULES)))
    print("pre-aggregators: " + ", ".join(sorted(defenses.PRE_AGGREGATORS)))
    return 0


def _load_study(name: str, config_file: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The whole config and study ``name``'s definition in it."""
    try:
        config = yaml.safe_load(config_file.read_text()) or {}
        study = config["definitions"][name]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as err:
        raise SpecError(f"--config: no study {name!r} in {str(config_file)!r} ({err})") from err
    if not isinstance(study, dict):
        raise SpecError(f"definitions.{name}: must be a mapping, got {study!r}")
    return config, study


def _study_run_paths(name: str, config_file: Path, only: str | None = None) -> list[str]:
    """The run files of study ``name`` in ``config_file`` (of one slice with ``only``)."""
    from .runs.study import StudyError, expand_study

    config, study = _load_study(name, config_file)
    try:
        runs = expand_study(name, study, config, only=only)
    except StudyError as err:
        raise SpecError(str(err)) from err
    results = config.get("results", "results")
    return [run.path(results) for run in runs]


def _cmd_runs(args: argparse.Namespace) -> int:
    if args.slices:
        # in config order, so that a driver trains the slices in the order they were added
        from .runs.study import StudyError, expand_study

        config, study = _load_study(args.study, args.config)
        try:
            expand_study(args.study, study, config)  # the same checks as a run
        except StudyError as err:
            raise SpecError(str(err)) from err
        names = [sl.get("name") for sl in study.get("slices") or []]
        if None in names:
            raise SpecError(
                f"definitions.{args.study}.slices[{names.index(None)}]: has no 'name', so a "
                "driver cannot train it by name"
            )
        print("\n".join(str(n) for n in names))
        return 0
    if args.runs_dir:
        config, study = _load_study(args.study, args.config)
        folder = study.get("runs_of") or args.study
        print(f"{config.get('results', 'results')}/{folder}/runs")
        return 0
    print("\n".join(_study_run_paths(args.study, args.config, args.slice)))
    return 0


def _fraction(text: str) -> float:
    """A number in (0, 1] (argparse reports the ValueError with the flag's name)."""
    value = float(text)
    if not 0.0 < value <= 1.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text!r}")
    return value


class _Lazy:
    """A module imported on first attribute access: ``byzstress train`` never pays for
    pandas and seaborn, which only the reporting commands use."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import importlib

        return getattr(importlib.import_module(self._name, __package__), attr)


def _add_reporting(sub: argparse._SubParsersAction) -> None:
    reporting = _Lazy(".analysis.reporting")

    p = sub.add_parser("collect", help="gather run JSONs into a tidy CSV")
    p.add_argument("runs", nargs="+", type=Path, help="run JSON files")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=lambda a: reporting.collect_cmd(a.runs, a.out))

    p = sub.add_parser("table", help="Table 1 (CSV, Markdown, LaTeX) from the tidy CSV")
    p.add_argument("csv", type=Path)
    p.add_argument("--out-prefix", type=Path, required=True, help="writes PREFIX.{csv,md,tex}")
    p.add_argument("--metric", default="max_acc", choices=["max_acc", "final_acc"])
    p.add_argument("--paper", action="store_true", help="put the seed paper's numbers beside")
    p.set_defaults(func=lambda a: reporting.table_cmd(a.csv, a.out_prefix, a.metric, a.paper))

    p = sub.add_parser("figure", help="Figure 1 (PNG and PDF): max accuracy vs strength")
    p.add_argument("csv", type=Path)
    p.add_argument("--out-prefix", type=Path, required=True, help="writes PREFIX.{png,pdf}")
    p.add_argument("--metric", default="max_acc", choices=["max_acc", "final_acc"])
    p.set_defaults(func=lambda a: reporting.figure_cmd(a.csv, a.out_prefix, a.metric))

    p = sub.add_parser("curves", help="accuracy-over-steps figure of every run")
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--out", type=Path, required=True, help="PNG file")
    p.set_defaults(func=lambda a: reporting.curves_cmd(a.runs, a.out))

    p = sub.add_parser("leaderboard", help="worst-case accuracy per defense and β")
    p.add_argument("csv", type=Path)
    p.add_argument("--out-prefix", type=Path, required=True, help="PREFIX.{csv,md,png}")
    p.add_argument("--metric", default="max_acc", choices=["max_acc", "final_acc"])
    p.set_defaults(func=lambda a: reporting.leaderboard_cmd(a.csv, a.out_prefix, a.metric))

    p = sub.add_parser("calibration", help="lowest-mean and breaking strengths (descriptive)")
    p.add_argument("csv", type=Path)
    p.add_argument("--out-prefix", type=Path, required=True, help="PREFIX.{csv,md}")
    p.add_argument(
        "--fraction",
        type=_fraction,
        default=0.5,
        help="breaking = max accuracy below this fraction of the no-attack accuracy",
    )
    p.add_argument("--metric", default="max_acc", choices=["max_acc", "final_acc"])
    p.set_defaults(
        func=lambda a: reporting.calibration_cmd(a.csv, a.out_prefix, a.fraction, a.metric)
    )


def _add_sensitivity(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sensitivity",
        help="verdict per claim of the paper and per setting, diagnostics tables and figures",
    )
    p.add_argument("csv", type=Path, help="the study's runs.csv (byzstress collect)")
    p.add_argument(
        "runs", nargs="*", type=Path, help="the study's run JSONs (for the figures; optional)"
    )
    p.add_argument(
        "--out-prefix",
        type=Path,
        required=True,
        help="writes PREFIX-claims.{csv,md}, PREFIX-diagnostics.{csv,md,png}, PREFIX-baseline.png",
    )
    p.add_argument("--metric", default="max_acc", choices=["max_acc", "final_acc"])

    def run(a: argparse.Namespace) -> None:
        from .analysis.verdicts import sensitivity_cmd

        sensitivity_cmd(a.csv, a.runs, a.out_prefix, a.metric)

    p.set_defaults(func=run)


def _add_detection(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "detection",
        help="is an attack detected? the Byzantine share each defense keeps, per strength",
    )
    p.add_argument("csv", type=Path, help="the study's runs.csv (byzstress collect)")
    p.add_argument(
        "--out-prefix",
        type=Path,
        required=True,
        help="writes PREFIX.{csv,md,png,pdf}",
    )
    p.add_argument("--metric", default="max_acc", choices=["max_acc", "final_acc"])

    def run(a: argparse.Namespace) -> None:
        from .analysis.detection import detection_cmd

        detection_cmd(a.csv, a.out_prefix, a.metric)

    p.set_defaults(func=run)


def _add_claims(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "claims",
        help="decide the paper's claims (claims.yaml) from the studies' published runs.csv",
    )
    p.add_argument("--claims", type=Path, default=Path("claims.yaml"))
    p.add_argument("--config", type=Path, default=Path("config.yaml"))
    p.add_argument(
        "--runs",
        action="append",
        default=[],
        metavar="STUDY=CSV",
        help="a study's runs.csv (default: docs/STUDY/runs.csv where it exists)",
    )
    p.add_argument(
        "--out-prefix",
        type=Path,
        default=Path("docs/claims-results"),
        help="writes PREFIX.md, PREFIX.csv and PREFIX.png",
    )
    p.add_argument(
        "--slices",
        metavar="STUDY",
        help="instead: print the config.yaml slices that give STUDY's split cells their "
        "extra seeds (claims.yaml's split rule), only what it does not define yet",
    )

    def run(a: argparse.Namespace) -> None:
        from .analysis.report import claims_cmd

        runs = {}
        for item in a.runs:
            study, sep, path = item.partition("=")
            if not sep:
                raise SpecError(f"--runs: expected STUDY=CSV, got {item!r}")
            runs[study] = Path(path)
        claims_cmd(a.claims, a.config, runs, a.out_prefix, a.slices)

    p.set_defaults(func=run)


def _add_split_effect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "split-effect",
        help="do the claims' conclusions change with the kind of split? (a 'split' axis)",
    )
    p.add_argument("csv", type=Path, help="the study's runs.csv (byzstress collect)")
    p.add_argument(
        "--out-prefix",
        type=Path,
        required=True,
        help="writes PREFIX.md, PREFIX-{claims,accuracy}.csv",
    )
    p.add_argument("--metric", default="max_acc", choices=["max_acc", "final_acc"])

    def run(a: argparse.Namespace) -> None:
        from .analysis.split_effect import split_effect_cmd

        split_effect_cmd(a.csv, a.out_prefix, a.metric)

    p.set_defaults(func=run)


def _add_records(sub: argparse._SubParsersAction) -> None:
    """Published run records: pack, restore, verify (:mod:`byzstress.runs.archive`,
    :mod:`byzstress.runs.verify`)."""
    p = sub.add_parser("pack", help="pack a study's run JSONs into one .tar.xz archive")
    p.add_argument("runs", type=Path, help="the study's runs folder (results/STUDY/runs)")
    p.add_argument("--out", type=Path, required=True, help="the archive (docs/STUDY/runs.tar.xz)")
    p.add_argument(
        "--study",
        help="only this study's records (for studies that share a runs folder: runs_of)",
    )
    p.add_argument("--config", type=Path, default=Path("config.yaml"))

    def pack(a: argparse.Namespace) -> None:
        from .runs.archive import pack

        only = None if a.study is None else _study_run_paths(a.study, a.config)
        manifest = pack(a.runs, a.out, only=only)
        of = "" if only is None else f" of the {len(only)} of study {a.study!r}"
        print(f"packed {len(manifest['records'])} run records{of} into {a.out}")

    p.set_defaults(func=pack)

    p = sub.add_parser("restore", help="restore an archive's run JSONs into a runs folder")
    p.add_argument("archive", type=Path)
    p.add_argument("--runs", type=Path, required=True, help="results/STUDY/runs")
    p.add_argument(
        "--overwrite", action="store_true", help="replace records that differ from the archive's"
    )

    def restore(a: argparse.Namespace) -> None:
        from .runs.archive import restore

        counts = restore(a.archive, a.runs, a.overwrite)
        print(", ".join(f"{v} {k}" for k, v in counts.items()) + f" in {a.runs}")

    p.set_defaults(func=restore)

    p = sub.add_parser(
        "verify",
        help="retrain published runs from their specs and compare them with their records",
        description="Retrain a run JSON, or runs of an archive, and report per quantity "
        "whether it is bit-identical or by how much it differs, with the machine of both "
        "sides. Exit status 0 unless --strict and something differs (then 1).",
    )
    p.add_argument("source", type=Path, help="a run JSON or a runs.tar.xz archive")
    p.add_argument("--run", action="append", help="a record of the archive (path below runs/)")
    p.add_argument("--sample", type=int, default=1, help="records drawn from the archive")
    p.add_argument("--sample-seed", type=int, default=0)
    p.add_argument("--data-root", type=Path, help="instead of the recorded data root")
    p.add_argument("--device", choices=["cpu", "cuda"], help="instead of the recorded device")
    p.add_argument("--threads", type=int, help="instead of the recorded thread count")
    p.add_argument("--out", type=Path, help="write the reports as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 unless all are identical")

    def verify(a: argparse.Namespace) -> int:
        from .runs import verify as v
        from .runs.record import RunRecord
        from .runs.storage import write_json

        kw = {"data_root": a.data_root, "device": a.device, "threads": a.threads}
        if a.source.name.endswith(".tar.xz"):
            reports = v.verify_archive(a.source, a.run, a.sample, a.sample_seed, **kw)
        else:
            try:
                record = RunRecord.read(a.source)
            except (OSError, ValueError) as err:
                raise ValueError(f"source: cannot read run JSON {str(a.source)!r}: {err}") from err
            reports = [v.compare(record, v.retrain(record, **kw))]
            reports[0]["run"] = str(a.source)
        print(v.report_markdown(reports))
        if a.out:
            write_json(a.out, reports)
        return 1 if a.strict and not all(r["identical"] for r in reports) else 0

    p.set_defaults(func=verify)


def _add_readme(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "readme",
        help="rebuild the README's generated blocks from the committed study outputs",
    )
    p.add_argument(
        "--readme",
        type=Path,
        nargs="+",
        help="the files to rebuild (default: those of docgen.readme.FILES under --root)",
    )
    p.add_argument("--root", type=Path, default=Path("."), help="the repository root")
    p.add_argument("--check", action="store_true", help="exit 1 if a block is out of date")

    def readme(a: argparse.Namespace) -> int:
        # the generator is repository tooling, not library code: load it from the checkout
        import importlib

        # (the checkout at --root, else the one this package runs from, src/ layout)
        homes = [a.root.resolve(), Path(__file__).resolve().parents[2]]
        home = next((h for h in homes if (h / "docgen" / "readme.py").is_file()), None)
        if home is None:
            raise SpecError(
                f"--root: no docgen/readme.py under {str(homes[0])!r}: run it in a checkout"
            )
        sys.path.insert(0, str(home))
        gen = importlib.import_module("docgen.readme")
        files = a.readme or [a.root / f for f in gen.FILES]
        return max(gen.readme_cmd(f, a.root, a.check) for f in files)

    p.set_defaults(func=readme)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="byzstress",
        description="Stress-test Byzantine-robust distributed learning under data "
        "heterogeneity. 'byzstress train --help' lists every training knob.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    p = sub.add_parser("download", help="download a dataset with torchvision (needs internet)")
    p.add_argument("dataset", choices=["fmnist", "cifar10"])
    p.add_argument("--data-root", type=Path, default=Path("data"))
    p.set_defaults(func=_cmd_download)
    p = sub.add_parser("list", help="list datasets, models, attacks and defenses")
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser(
        "runs", help="print the run files of a study (or of one slice: run a study in parts)"
    )
    p.add_argument("study")
    p.add_argument("--config", type=Path, default=Path("config.yaml"))
    which = p.add_mutually_exclusive_group()
    which.add_argument("--slice", help="only this slice's runs (its 'name' in config.yaml)")
    which.add_argument(
        "--slices", action="store_true", help="instead: print the study's slice names, in order"
    )
    which.add_argument(
        "--runs-dir",
        action="store_true",
        help="instead: print the folder its runs train into (runs_of: shares another's)",
    )
    p.set_defaults(func=_cmd_runs)
    _add_reporting(sub)
    _add_sensitivity(sub)
    _add_records(sub)
    _add_readme(sub)
    _add_detection(sub)
    _add_split_effect(sub)
    _add_claims(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "train":
            return _cmd_train(args)
        return int(args.func(args) or 0)
    except SpecError as err:
        parser.exit(2, f"byzstress {args.command}: error: {err}\n")
    except ValueError as err:
        parser.exit(2, f"byzstress {args.command}: error: {err}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
