"""The Terraform module in infra/: formatting, what it declares, and what the code needs.

The IAM policy is checked against the code itself: the S3 and DynamoDB client
calls made by ``durable_state/storage/s3.py``,
``durable_state/storage/dynamodb.py`` and
``durable_state/locks/dynamodb.py`` are read from their syntax trees and
mapped to IAM actions, so a new call the policy does not grant (or a grant
the code no longer needs) fails here.

``terraform validate`` and ``terraform test`` (against a mocked provider)
need the hashicorp/aws provider on this machine, since Terraform cannot
download it here: they run when a local copy is found (see
:func:`find_aws_provider_mirror`) and are skipped otherwise. Applying the
moto example takes minutes (the AWS provider polls S3 lifecycle rules for at
least half a minute), so it is marked ``long``: it runs with
``DURABLE_STATE_SLOW=1`` (``.ci/run``, ``nox -s slow``).
"""

from __future__ import annotations

import ast
import os
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
PACKAGE = ROOT / "durable_state"

#: boto3 client method -> the IAM action that authorises it.
CALL_TO_ACTION = {
    "get_object": "s3:GetObject",
    "head_object": "s3:GetObject",  # HeadObject is authorised as GetObject
    "put_object": "s3:PutObject",
    "delete_object": "s3:DeleteObject",
    "delete_objects": "s3:DeleteObject",
    "copy_object": "s3:PutObject",
    "list_objects": "s3:ListBucket",
    "list_objects_v2": "s3:ListBucket",
    "list_object_versions": "s3:ListBucketVersions",
    "get_item": "dynamodb:GetItem",
    "put_item": "dynamodb:PutItem",
    "update_item": "dynamodb:UpdateItem",
    "delete_item": "dynamodb:DeleteItem",
    "query": "dynamodb:Query",
    "scan": "dynamodb:Scan",
    "batch_get_item": "dynamodb:BatchGetItem",
    "batch_write_item": "dynamodb:BatchWriteItem",
    "transact_write_items": "dynamodb:PutItem",
    "describe_table": "dynamodb:DescribeTable",
}

#: Functions whose calls need no runtime grant: create_table() is a development
#: helper, and production tables come from the Terraform module.
NOT_GRANTED = {"create_table"}


def _tf_env() -> dict[str, str]:
    """The environment for terraform: the current one (read now, after fixtures ran)."""
    return {
        **os.environ,
        "TF_IN_AUTOMATION": "1",
        "TF_INPUT": "0",
        "CHECKPOINT_DISABLE": "1",
        # No user CLI config (provider installation rules, credentials helpers).
        "TF_CLI_CONFIG_FILE": os.devnull,
    }


# --------------------------------------------------------------------------- #
# What the code calls
# --------------------------------------------------------------------------- #


def _is_client(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "client") or (
        isinstance(node, ast.Attribute) and node.attr == "_client"
    )


def _client_calls(tree: ast.AST) -> Iterator[str]:
    """The client methods called in ``tree`` (paginators as their operation)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if not _is_client(node.func.value):
            continue
        if node.func.attr == "get_paginator":
            arg = node.args[0]
            assert isinstance(arg, ast.Constant), ast.dump(node)
            yield str(arg.value)
        else:
            yield node.func.attr


def _skipping(tree: ast.Module, skip: set[str]) -> ast.Module:
    """``tree`` without the functions named in ``skip`` (at any depth)."""

    class Drop(ast.NodeTransformer):
        def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST | None:
            return None if node.name in skip else self.generic_visit(node)

        def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> ast.AST | None:
            return None if node.name in skip else self.generic_visit(node)

    result = Drop().visit(tree)
    assert isinstance(result, ast.Module)
    return result


def library_calls() -> set[str]:
    """Every S3/DynamoDB client method the runtime code calls."""
    calls: set[str] = set()
    sources = ("storage/s3.py", "storage/dynamodb.py", "locks/dynamodb.py")
    for source in (PACKAGE / name for name in sources):
        tree = _skipping(ast.parse(source.read_text()), NOT_GRANTED)
        calls.update(_client_calls(tree))
    return calls


def test_the_call_scan_sees_the_known_calls() -> None:
    calls = library_calls()
    # A restructured module must not make the scan silently find nothing.
    assert {"get_object", "put_object", "update_item"} <= calls, calls
    # create_table() is excluded, and nothing else makes a table.
    assert "create_table" not in calls
    unmapped = calls - CALL_TO_ACTION.keys()
    assert not unmapped, f"map these client calls to IAM actions in CALL_TO_ACTION: {unmapped}"


# --------------------------------------------------------------------------- #
# What the module declares (python-hcl2)
# --------------------------------------------------------------------------- #


def _plain(value: Any) -> Any:
    """hcl2 output without block markers and with strings unquoted (any hcl2 version)."""
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items() if k != "__is_block__"}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


@pytest.fixture(scope="module")
def module_hcl() -> dict[str, Any]:
    hcl2 = pytest.importorskip("hcl2", reason="python-hcl2 is part of the test extra")
    merged: dict[str, Any] = {"resource": {}, "locals": {}, "variable": {}, "output": {}}
    for path in sorted(INFRA.glob("*.tf")):
        doc = _plain(hcl2.loads(path.read_text()))
        for block in doc.get("resource", []):
            for rtype, named in block.items():
                merged["resource"].setdefault(rtype, {}).update(named)
        for block in doc.get("locals", []):
            merged["locals"].update(block)
        for kind in ("variable", "output"):
            for block in doc.get(kind, []):
                merged[kind].update(block)
    return merged


def test_lock_table_matches_the_lock_manager(module_hcl: dict[str, Any]) -> None:
    from durable_state.locks.dynamodb import TTL_ATTRIBUTE

    table = module_hcl["resource"]["aws_dynamodb_table"]["locks"]
    source = (PACKAGE / "locks" / "dynamodb.py").read_text()
    key = re.search(r'KeySchema=\[\{"AttributeName": "(\w+)", "KeyType": "HASH"\}\]', source)
    assert key is not None, "create_table()'s KeySchema moved: update this test"
    assert re.search(r'Key=\{"' + key.group(1) + r'": \{"S": key\}\}', source)

    assert table["hash_key"] == key.group(1) == "id"
    assert table["attribute"][0] == {"name": "id", "type": "S"}
    assert table["ttl"] == [{"attribute_name": TTL_ATTRIBUTE, "enabled": True}]
    assert TTL_ATTRIBUTE == "expireAt"
    assert table["billing_mode"] == "PAY_PER_REQUEST"
    assert table["point_in_time_recovery"] == [{"enabled": "${var.point_in_time_recovery}"}]
    assert module_hcl["variable"]["table_name"]["default"] == "lockingTable"


def test_bucket_is_versioned_encrypted_private_and_expires_old_versions(
    module_hcl: dict[str, Any],
) -> None:
    res = module_hcl["resource"]
    assert res["aws_s3_bucket_versioning"]["this"]["versioning_configuration"] == [
        {"status": "Enabled"}
    ]
    block = res["aws_s3_bucket_public_access_block"]["this"]
    assert all(block[k] is True for k in ("block_public_acls", "block_public_policy"))
    assert all(block[k] is True for k in ("ignore_public_acls", "restrict_public_buckets"))
    sse = res["aws_s3_bucket_server_side_encryption_configuration"]["this"]["rule"][0]
    default = sse["apply_server_side_encryption_by_default"][0]
    assert default["kms_master_key_id"] == "${var.kms_key_arn}"
    rule = res["aws_s3_bucket_lifecycle_configuration"]["this"]["rule"][0]
    assert rule["filter"] == [{"prefix": "${var.prefix}"}]
    assert rule["noncurrent_version_expiration"] == [
        {"noncurrent_days": "${var.noncurrent_version_expiration_days}"}
    ]


def test_policy_grants_exactly_what_the_code_calls(module_hcl: dict[str, Any]) -> None:
    local = module_hcl["locals"]
    granted = {
        *local["s3_object_actions"],
        *local["s3_bucket_actions"],
        *local["dynamodb_actions"],
    }
    needed = {CALL_TO_ACTION[call] for call in library_calls()}
    assert granted == needed, (
        f"missing from the policy: {sorted(needed - granted)}; "
        f"granted but never called: {sorted(granted - needed)}"
    )
    assert local["s3_bucket_actions"] == ["s3:ListBucket"]
    # Object actions on the prefix only; listing only under the prefix, and
    # never without one: StringLikeIfExists would let a request that sends no
    # prefix list the whole bucket.
    statements = re.sub(r"\s+", " ", local["policy_statements"])
    assert '"${aws_s3_bucket.this.arn}/${var.prefix}*"' in statements
    assert 'Condition = {StringLike = {"s3:prefix" = ["${var.prefix}*"]}}' in statements
    assert "IfExists" not in statements
    # Only an empty prefix (the whole bucket is the snapshots') lists unconditioned.
    assert 'var.prefix == "" ? [local.list_statement] : []' in statements
    assert local["list_statement"]["Action"] == "${local.s3_bucket_actions}"
    assert "Condition" not in local["list_statement"]


def list_calls_without_prefix(source: str) -> tuple[int, list[int]]:
    """ListObjects(V2) requests in ``source`` and the lines of those that send no ``Prefix``.

    A request is a direct ``list_objects[_v2](...)`` call or ``paginate(...)``
    on a paginator of either.

    Returns:
        How many requests there are, and the lines of those without ``Prefix=``.
    """
    tree = ast.parse(source)
    paginators = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Attribute)
        and node.value.func.attr == "get_paginator"
        and node.value.args
        and isinstance(node.value.args[0], ast.Constant)
        and node.value.args[0].value in ("list_objects", "list_objects_v2")
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    requests: list[ast.Call] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr in ("list_objects", "list_objects_v2") or (
            node.func.attr == "paginate"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in paginators
        ):
            requests.append(node)
    unprefixed = [
        call.lineno for call in requests if not any(k.arg == "Prefix" for k in call.keywords)
    ]
    return len(requests), unprefixed


def test_every_listing_the_code_makes_sends_a_prefix() -> None:
    # The policy's StringLike condition on s3:prefix refuses a listing without one.
    count, unprefixed = list_calls_without_prefix((PACKAGE / "storage" / "s3.py").read_text())
    assert count >= 1, "no ListObjectsV2 request found in S3Storage: update this test"
    assert unprefixed == [], f"ListObjectsV2 without Prefix= at line(s) {unprefixed} of s3.py"


def test_the_prefix_check_catches_a_listing_without_one() -> None:
    source = (
        "async def ls(client):\n"
        '    pages = client.get_paginator("list_objects_v2")\n'
        '    pages.paginate(Bucket="b", Prefix="p/")\n'
        '    pages.paginate(Bucket="b")\n'
        '    await client.list_objects_v2(Bucket="b")\n'
        '    await client.list_objects(Bucket="b", Prefix="")\n'
    )
    assert list_calls_without_prefix(source) == (4, [4, 5])


# --------------------------------------------------------------------------- #
# The terraform binary
# --------------------------------------------------------------------------- #


def _terraform() -> str:
    found = shutil.which("terraform")
    if found is None:
        pytest.skip("terraform is not installed")
    return found


def _platform() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
    return f"{platform.system().lower()}_{arch.get(machine, machine)}"


def find_aws_provider_mirror() -> Path | None:
    """A local provider directory holding hashicorp/aws 5.x or 6.x for this platform.

    Looks where Terraform itself looks for local providers, plus the usual
    mirror locations: ``DURABLE_STATE_TF_PLUGIN_DIR``, ``TF_PLUGIN_CACHE_DIR``,
    a ``plugin_cache_dir`` in the CLI config, ``~/.terraform.d/plugins``, the
    XDG data directories, ``/usr/share/terraform/plugins`` and ``/opt``.
    """
    candidates = [
        os.environ.get("DURABLE_STATE_TF_PLUGIN_DIR"),
        os.environ.get("TF_PLUGIN_CACHE_DIR"),
    ]
    for config in (os.environ.get("TF_CLI_CONFIG_FILE"), "~/.terraformrc"):
        path = Path(config).expanduser() if config else None
        if path is not None and path.is_file():
            match = re.search(r'plugin_cache_dir\s*=\s*"([^"]+)"', path.read_text())
            candidates.append(match.group(1) if match else None)
    candidates += [
        "~/.terraform.d/plugins",
        "~/.local/share/terraform/plugins",
        *(f"{d}/terraform/plugins" for d in os.environ.get("XDG_DATA_DIRS", "").split(":") if d),
        "/usr/local/share/terraform/plugins",
        "/usr/share/terraform/plugins",
        "/opt/terraform/plugins",
        "/opt/tf-plugins",
    ]
    for candidate in candidates:
        if not candidate:
            continue
        root = Path(candidate).expanduser()
        # Layout: <root>/<provider source host>/hashicorp/aws/<version>/<platform>/
        for versions in sorted(root.glob("*/hashicorp/aws")):
            for version in sorted(versions.iterdir(), reverse=True):
                major = version.name.split(".", 1)[0]
                if major in ("5", "6") and list(
                    (version / _platform()).glob("terraform-provider-aws*")
                ):
                    return root
    return None


def _run(*args: str, cwd: Path, timeout: float = 300) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=_tf_env(), capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_terraform_fmt() -> None:
    terraform = _terraform()
    _run(terraform, "fmt", "-check", "-recursive", "-diff", str(INFRA), cwd=ROOT)


@pytest.fixture(scope="module")
def provider_mirror() -> Path:
    _terraform()
    mirror = find_aws_provider_mirror()
    if mirror is None:
        pytest.skip(
            "no local copy of the hashicorp/aws provider (5.x or 6.x) was found and "
            "terraform cannot download it here; set DURABLE_STATE_TF_PLUGIN_DIR to a "
            "provider mirror directory to run this"
        )
    return mirror


def test_terraform_validate_and_test(provider_mirror: Path, tmp_path: Path) -> None:
    terraform = shutil.which("terraform")
    assert terraform is not None
    # A copy, so that .terraform and the lock file never land in the checkout.
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy, ignore=shutil.ignore_patterns(".terraform*", "*.tfstate*"))
    _run(terraform, "init", "-backend=false", f"-plugin-dir={provider_mirror}", cwd=copy)
    validated = _run(terraform, "validate", "-no-color", cwd=copy)
    assert "Success" in validated
    tested = _run(terraform, "test", "-no-color", cwd=copy)
    assert re.search(r"Success! (\d+) passed, 0 failed", tested), tested


@pytest.mark.long  # minutes: the AWS provider waits on S3 lifecycle rules
@pytest.mark.timeout(900)
def test_moto_example_applies_and_runs_an_actor(provider_mirror: Path, moto_server: Any) -> None:
    script = INFRA / "examples" / "moto" / "run.py"
    args = ["--endpoint", moto_server.url, "--plugin-dir", str(provider_mirror)]
    done = subprocess.run(
        [sys.executable, str(script), *args],
        env=_tf_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr
    assert 'actor order-1: {"context": {"items": 2}, "status": "done", "value": "paid"}' in (
        done.stdout
    )
