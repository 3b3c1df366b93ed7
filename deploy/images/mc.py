#!/opt/s3/bin/python
"""The few MinIO client (`mc`) commands compose.yaml runs, against an S3 API (moto's server here):
`mc ready ALIAS`, `mc alias set ALIAS URL USER PASSWORD`, `mc mb [--ignore-existing] ALIAS/BUCKET`,
`mc anonymous set none ALIAS/BUCKET`."""

import json
import os
import sys
import urllib.request
from pathlib import Path

import boto3

ALIASES = Path(os.environ.get("MC_CONFIG_DIR", "/tmp/mc")) / "aliases.json"
DEFAULT = {"local": {"url": "http://127.0.0.1:9000", "user": "minio", "password": "minio"}}


def aliases() -> dict:
    return {**DEFAULT, **(json.loads(ALIASES.read_text()) if ALIASES.exists() else {})}


def client(alias: str):
    target = aliases()[alias]
    return boto3.client("s3", endpoint_url=target["url"], aws_access_key_id=target["user"],
                        aws_secret_access_key=target["password"], region_name="us-east-1")


def main(args: list[str]) -> int:
    match args:
        case ["ready", alias]:
            try:
                urllib.request.urlopen(aliases()[alias]["url"] + "/moto-api/", timeout=2)
            except OSError as exc:
                print(f"not ready: {exc}", file=sys.stderr)
                return 1
        case ["alias", "set", alias, url, user, password]:
            ALIASES.parent.mkdir(parents=True, exist_ok=True)
            ALIASES.write_text(json.dumps({**aliases(), alias: {"url": url, "user": user, "password": password}}))
        case ["mb", *options, target] if set(options) <= {"--ignore-existing", "-p"}:
            alias, bucket = target.split("/", 1)
            s3 = client(alias)
            existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
            if bucket in existing and not options:
                print(f"bucket {bucket} exists", file=sys.stderr)
                return 1
            if bucket not in existing:
                s3.create_bucket(Bucket=bucket)
            print(f"Bucket created successfully `{target}`.")
        case ["anonymous", "set", "none", target]:
            alias, bucket = target.split("/", 1)
            s3 = client(alias)
            try:
                s3.delete_bucket_policy(Bucket=bucket)
            except s3.exceptions.ClientError:
                pass
            s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
                "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                "RestrictPublicBuckets": True})
        case _:
            print(f"mc (stand-in): unsupported command {' '.join(args)}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
