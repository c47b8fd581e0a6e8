"""Least-privilege IAM policies for running a config on EMR, printed by `dp deploy --print-iam-policy`.

Two principals act: the **orchestrator** (the code location and the Dagster run worker: loads the
pinned config and its SQL from the release, starts and watches EMR work, owns the Pipes transport,
dumps deliveries into the lake) and the **job** (the cluster's instance profile or the Serverless
execution role: reads the release, reads and writes the lake, writes its Pipes messages). Each
gets only the buckets and prefixes the config names and only the EMR actions its launcher uses.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from dp_assets.config.loader import LoadedConfig
from dp_assets.config.model import Emr

Statement = dict[str, Any]


def _s3_parts(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


def s3_statements(sid: str, uris: list[str], write: bool, versions: bool = False) -> list[Statement]:
    """Object access under each s3:// prefix, and listing limited to those prefixes. ``versions``
    adds s3:GetObjectVersion, which a GetObject naming a VersionId (a pinned config) needs."""
    actions = ["s3:GetObject"] + (["s3:GetObjectVersion"] if versions else [])
    actions += ["s3:PutObject", "s3:DeleteObject"] if write else []
    parts = sorted({_s3_parts(u) for u in uris if u.startswith("s3://")})
    if not parts:
        return []
    objects = [f"arn:aws:s3:::{b}/{p + '/' if p else ''}*" for b, p in parts]
    statements: list[Statement] = [
        {"Sid": f"{sid}Objects", "Effect": "Allow", "Action": actions, "Resource": objects}
    ]
    for i, (bucket, prefix) in enumerate(parts):
        listing: Statement = {
            "Sid": f"{sid}List{i}",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": f"arn:aws:s3:::{bucket}",
        }
        if prefix:
            listing["Condition"] = {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}
        statements.append(listing)
    return statements


def _emr_arn(emr: Emr, resource: str) -> str:
    return f"arn:aws:elasticmapreduce:{emr.region or '*'}:*:{resource}"


def launcher_statements(launcher: str, emr: Emr) -> list[Statement]:
    """The EMR control-plane actions the orchestrator needs for one launcher, and the roles it passes."""
    if launcher == "emr":
        roles = [emr.cluster.job_flow_role, emr.cluster.service_role]
        return [
            {
                "Sid": "StartCluster",
                "Effect": "Allow",
                "Action": ["elasticmapreduce:RunJobFlow"],
                "Resource": "*",
            },
            {
                "Sid": "WatchAndStopOwnCluster",
                "Effect": "Allow",
                "Action": [
                    "elasticmapreduce:DescribeCluster",
                    "elasticmapreduce:DescribeStep",
                    "elasticmapreduce:ListSteps",
                    "elasticmapreduce:TerminateJobFlows",
                ],
                "Resource": _emr_arn(emr, "cluster/*"),
            },
            {
                "Sid": "PassClusterRoles",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": [f"arn:aws:iam::*:role/{r}" for r in roles]
                + [f"arn:aws:iam::*:instance-profile/{emr.cluster.job_flow_role}"],
            },
        ]
    if launcher == "emr-existing":
        return [
            {
                "Sid": "StepsOnSharedCluster",
                "Effect": "Allow",
                "Action": [
                    "elasticmapreduce:AddJobFlowSteps",
                    "elasticmapreduce:DescribeCluster",
                    "elasticmapreduce:DescribeStep",
                    "elasticmapreduce:ListSteps",
                    "elasticmapreduce:CancelSteps",
                    "elasticmapreduce:ListInstances",  # the CPU of its nodes, for a run that dumps
                ],
                "Resource": _emr_arn(emr, f"cluster/{emr.cluster_id}"),
            }
        ]
    return [
        {
            "Sid": "JobRunsOnApplication",
            "Effect": "Allow",
            "Action": [
                "emr-serverless:GetApplication",  # its release label: the runtime the jobs run on
                "emr-serverless:StartJobRun",
                "emr-serverless:GetJobRun",
                "emr-serverless:CancelJobRun",
            ],
            "Resource": [
                f"arn:aws:emr-serverless:{emr.region or '*'}:*:/applications/{emr.application_id}",
                f"arn:aws:emr-serverless:{emr.region or '*'}:*:/applications/{emr.application_id}/jobruns/*",
            ],
        },
        {
            "Sid": "PassExecutionRole",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": emr.execution_role_arn,
        },
    ]


def _document(statements: list[Statement]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": statements}


def policies(loaded: LoadedConfig, launcher: str, release_uri: str) -> dict[str, dict[str, Any]]:
    """IAM policy documents from the config: the orchestrator's, the job's and, with an [aws] role
    chain, each hop's (the last one holds the data access the others then do not need)."""
    config, emr = loaded.config, loaded.config.spark.emr
    assert emr is not None, "the EMR launchers need [spark.emr]"
    messages, logs = [emr.messages_uri], [emr.log_uri] if emr.log_uri else []
    second = loaded.secondary_environment()  # [secondary]: its lake and database are written too
    lakes = [loaded.output_path, *([second.output_path] if second else [])]
    databases = [d for d in (config.catalog_database, second and second.config.catalog_database) if d]
    data = [
        *s3_statements("Landing", [loaded.input_path], write=False),
        *s3_statements("Lake", lakes, write=True),
    ]
    chain = config.aws.role_chain
    orchestrator = [
        # Start-up: the pinned CONFIG_S3_URI (by VersionId) and the transforms/ listed and read beside
        # it, with the process's own credentials (before any role chain hop).
        *s3_statements("Release", [release_uri], write=False, versions=True),
        *launcher_statements(launcher, emr),
        *s3_statements("PipesTransport", messages, write=True),
        *s3_statements("StepLogs", logs, write=False),
    ]
    job = [  # spark-submit fetches the release's zip and scripts by key, never by VersionId
        *s3_statements("Release", [release_uri], write=False),
        *s3_statements("PipesTransport", messages, write=True),
    ]
    if launcher == "emr-serverless":
        job += s3_statements("Logs", logs, write=True)  # Serverless writes logs as the job's role
    if databases:
        job.append(glue_statement(databases))
    documents: dict[str, dict[str, Any]] = {}
    if chain:  # data access goes through the chain: each hop may assume the next, the last reads data
        orchestrator.append(_assume(chain[0]))
        for hop, after in pairwise(chain):
            documents[f"role_chain {hop}"] = _document([_assume(after)])
        documents[f"role_chain {chain[-1]}"] = _document(data)
    else:
        orchestrator += data
        job += s3_statements("Lake", lakes, write=True)
    return {"orchestrator": _document(orchestrator), "job": _document(job), **documents}


def _assume(role_arn: str) -> Statement:
    return {
        "Sid": "NextHopOfRoleChain",
        "Effect": "Allow",
        "Action": ["sts:AssumeRole"],
        "Resource": role_arn,
    }


def glue_statement(databases: list[str]) -> Statement:
    """What the load's catalog registration needs when the cluster's metastore is Glue: creating
    tables and partitions, and switching a partition's location when a day is republished."""
    return {
        "Sid": "GlueCatalog",
        "Effect": "Allow",
        "Action": [
            "glue:GetDatabase",
            "glue:CreateDatabase",
            "glue:GetTable",
            "glue:CreateTable",
            "glue:UpdateTable",
            "glue:GetPartition",
            "glue:GetPartitions",
            "glue:BatchCreatePartition",
            "glue:UpdatePartition",
            "glue:BatchUpdatePartition",
            "glue:BatchDeletePartition",
        ],
        "Resource": [
            "arn:aws:glue:*:*:catalog",
            *(f"arn:aws:glue:*:*:database/{d}" for d in databases),
            *(f"arn:aws:glue:*:*:table/{d}/*" for d in databases),
        ],
    }
