"""Timmy's signed approvals (protocol/APPROVAL.md): the canonical statement, allegro-approve, and real
signatures checked by OpenSSH's own `ssh-keygen -Y verify` and by `allegro approval verify`."""

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

from allegro_client import approval
from allegro_client.approval import ApprovalError, SigningError

SSH_KEYGEN = "/usr/bin/ssh-keygen"
ROOT = Path(__file__).resolve().parents[3]
PACKAGE = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 3, 14, 9, 26, 53, 589793, tzinfo=timezone.utc)
SHA1 = "8d3f0c6a1e2b4d5f60718293a4b5c6d7e8f90123"
SHA256 = "4f1c" * 16
NONCE = "5f2c9a1e7b3d4c6f8a0b1c2d3e4f5a6b"
REQUEST = "hermes-run_0123abcd.ef:42-1"
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # SHA-256 of b"abc" (FIPS 180-2)

# The actions table of APPROVAL.md, section 2, written out again here so the module cannot drift from it.
FIELDS = {
    "create_pr": ["action", "repo", "head", "head_sha", "base", "not_after", "nonce", "audience"],
    "close_issue": ["action", "repo", "issue", "not_after", "nonce", "audience"],
    "merge_pr": ["action", "repo", "pull", "head", "head_sha", "base", "not_after", "nonce", "audience"],
    "hermes_approve": ["action", "request", "command_sha256", "not_after", "nonce", "audience"],
}
TARGETS: Dict[str, Dict[str, Any]] = {
    "create_pr": {"head": "feature/approvals", "head_sha": SHA1, "base": "main"},
    "close_issue": {"issue": 16},
    "merge_pr": {"pull": 42, "head": "feature/approvals", "head_sha": SHA1, "base": "main"},
    "hermes_approve": {"request": REQUEST, "command_sha256": ABC_SHA256},
}


def target(action: str) -> Dict[str, Any]:
    """The action's target fields as keyword arguments, with repo for the actions that have one."""
    return dict({"repo": "timmy/allegro"} if "repo" in FIELDS[action] else {}, **TARGETS[action])


def keygen(directory: Path, name: str, kind: str = "ed25519") -> Path:
    path = directory / name
    subprocess.run([SSH_KEYGEN, "-q", "-t", kind, "-N", "", "-C", name + "@laptop", "-f", str(path)], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True)
    return path


def public_key(key: Path) -> str:
    """`keytype base64` from KEY.pub (the test reads the public half; approval.py never reads either)."""
    return " ".join(Path(str(key) + ".pub").read_text().split()[:2])


def allowed_signers(directory: Path, key: Path, principal: str = "timmy") -> Path:
    path = directory / "allowed_signers"
    path.write_text('%s namespaces="allegro-approval" %s\n' % (principal, public_key(key)))
    return path


def ssh_verify(signers: Path, signature: Path, message: bytes,
               namespace: str = "allegro-approval") -> "subprocess.CompletedProcess[bytes]":
    return subprocess.run([SSH_KEYGEN, "-Y", "verify", "-f", str(signers), "-I", "timmy", "-n", namespace,
                           "-s", str(signature)], input=message, capture_output=True, timeout=60)


def fingerprint(key: Path) -> str:
    out = subprocess.run([SSH_KEYGEN, "-l", "-f", str(key) + ".pub"], check=True, capture_output=True, text=True)
    return out.stdout.split()[1]


def write_approval(directory: Path, made: approval.Approval) -> Tuple[Path, Path]:
    statement = directory / "statement.txt"
    signature = directory / "statement.txt.sig"
    statement.write_bytes(made.statement.encode("ascii"))
    signature.write_bytes(made.signature.encode("ascii"))
    return statement, signature


def blob_of(armored: str) -> bytes:
    return base64.b64decode("".join(armored.strip().splitlines()[1:-1]))


# -- the statement -----------------------------------------------------------------------------------

def test_each_action_is_written_byte_for_byte_in_the_canonical_form() -> None:
    expected = {
        "merge_pr": (b"allegro-approval/v1\naction=merge_pr\nrepo=timmy/allegro\npull=42\nhead=feature/approvals\n"
                     b"head_sha=8d3f0c6a1e2b4d5f60718293a4b5c6d7e8f90123\nbase=main\nnot_after=2026-03-14T10:26:53Z\n"
                     b"nonce=5f2c9a1e7b3d4c6f8a0b1c2d3e4f5a6b\naudience=allegro\n"),
        "create_pr": (b"allegro-approval/v1\naction=create_pr\nrepo=timmy/allegro\nhead=feature/approvals\n"
                      b"head_sha=8d3f0c6a1e2b4d5f60718293a4b5c6d7e8f90123\nbase=main\nnot_after=2026-03-14T10:26:53Z\n"
                      b"nonce=5f2c9a1e7b3d4c6f8a0b1c2d3e4f5a6b\naudience=allegro\n"),
        "close_issue": (b"allegro-approval/v1\naction=close_issue\nrepo=timmy/allegro\nissue=16\n"
                        b"not_after=2026-03-14T10:26:53Z\nnonce=5f2c9a1e7b3d4c6f8a0b1c2d3e4f5a6b\naudience=allegro\n"),
    }
    for action, text in expected.items():
        made = approval.statement(action, "timmy/allegro", nonce=NONCE, now=NOW, **TARGETS[action])
        assert made.encode("ascii") == text, action


def test_the_statement_of_each_action_has_exactly_its_keys_in_the_global_order() -> None:
    order = ["action", "repo", "issue", "pull", "head", "head_sha", "base", "request", "command_sha256", "not_after",
             "nonce", "audience"]
    assert list(approval.FIELD_ORDER) == order
    assert sorted(approval.ACTIONS) == sorted(FIELDS)
    for action, keys in FIELDS.items():
        lines = approval.statement(action, now=NOW, **target(action)).split("\n")
        assert lines[0] == "allegro-approval/v1" and lines[-1] == ""
        assert [line.split("=", 1)[0] for line in lines[1:-1]] == keys
        assert keys == sorted(keys, key=order.index)
        assert list(approval.ACTIONS[action]) == keys


def test_a_statement_is_ascii_with_lf_line_ends_and_a_fresh_128_bit_nonce_each_time() -> None:
    first = approval.statement("close_issue", "timmy/allegro", issue=7)
    second = approval.statement("close_issue", "timmy/allegro", issue=7)
    for text in (first, second):
        raw = text.encode("ascii")
        assert b"\r" not in raw and raw.endswith(b"\n") and b"\n\n" not in raw
        assert re.fullmatch(r"[0-9a-f]{32}", approval.parse_statement(text)["nonce"])
    assert approval.parse_statement(first)["nonce"] != approval.parse_statement(second)["nonce"]


def test_a_sha256_commit_id_and_the_largest_number_are_accepted() -> None:
    fields = approval.parse_statement(approval.statement("merge_pr", "a/b", pull=9223372036854775807, head="h",
                                                         head_sha=SHA256, base="b", now=NOW))
    assert fields["pull"] == "9223372036854775807" and fields["head_sha"] == SHA256
    assert approval.parse_statement(approval.statement("close_issue", "o.-_/n.a-m_e", issue="1", now=NOW))["issue"] == "1"


def test_not_after_is_now_plus_valid_for_rounded_down_and_at_most_24_hours_ahead() -> None:
    def expiry(**kwargs: Any) -> str:
        return approval.parse_statement(approval.statement("close_issue", "a/b", issue=1, now=NOW, **kwargs))["not_after"]

    assert expiry() == "2026-03-14T10:26:53Z"
    assert expiry(valid_for=timedelta(minutes=5)) == "2026-03-14T09:31:53Z"
    assert expiry(valid_for=timedelta(hours=24)) == "2026-03-15T09:26:53Z"
    assert expiry(not_after=datetime(2026, 3, 14, 11, 0, 0, 999999, tzinfo=timezone.utc)) == "2026-03-14T11:00:00Z"
    assert expiry(not_after=datetime(2026, 3, 14, 12, 0, tzinfo=timezone(timedelta(hours=2)))) == "2026-03-14T10:00:00Z"
    with pytest.raises(ApprovalError, match="more than 0 and at most 24 hours"):
        expiry(valid_for=timedelta(hours=24, seconds=1))
    with pytest.raises(ApprovalError, match="more than 0 and at most 24 hours"):
        expiry(valid_for=timedelta(0))
    with pytest.raises(ApprovalError, match="more than 24 hours after now"):
        expiry(not_after=NOW + timedelta(hours=25))
    with pytest.raises(ApprovalError, match="not later than now"):
        expiry(not_after=NOW - timedelta(seconds=1))
    with pytest.raises(ApprovalError, match="timezone-aware"):
        expiry(not_after=datetime(2026, 3, 14, 11, 0))
    with pytest.raises(ApprovalError, match="timezone-aware"):
        approval.statement("close_issue", "a/b", issue=1, now=datetime(2026, 3, 14, 11, 0))


BAD_INPUTS = [
    ({"action": "delete_repo"}, "action 'delete_repo' is not one of close_issue, create_pr, hermes_approve, merge_pr"),
    ({"repo": "timmy"}, "repo 'timmy' is not OWNER/NAME"),
    ({"repo": "timmy/allegro/extra"}, "is not OWNER/NAME"),
    ({"repo": ".hidden/allegro"}, "is not OWNER/NAME"),
    ({"repo": "timmy/" + "a" * 101}, "is not OWNER/NAME"),
    ({"repo": "tim my/allegro"}, "is not OWNER/NAME"),
    ({"repo": "timmy/allegro\naction=close_issue"}, "is not OWNER/NAME"),
    ({"repo": "timmy/allegro\n"}, "is not OWNER/NAME"),
    ({"pull": 0}, "pull 0 is not from 1 to 9223372036854775807"),
    ({"pull": -3}, "pull -3 is not from 1"),
    ({"pull": 2 ** 63}, "is not from 1 to 9223372036854775807"),
    ({"pull": "042"}, "no leading zeros"),
    ({"pull": "+42"}, "no sign"),
    ({"pull": "9223372036854775808"}, "is not a decimal number from 1 to 9223372036854775807"),
    ({"pull": True}, "pull must be a number"),
    ({"pull": 4.2}, "pull must be a number"),
    ({"head_sha": SHA1.upper()}, "40 or 64 lowercase hex digits (lowercase, please)"),
    ({"head_sha": SHA1[:-1]}, "is not a commit id"),
    ({"head_sha": "g" * 40}, "is not a commit id"),
    ({"head_sha": SHA1 + "0"}, "is not a commit id"),
    ({"head": ""}, "is not 1 to 255 characters long"),
    ({"head": "x" * 256}, "is not 1 to 255 characters long"),
    ({"head": "feature..x"}, "contains '..'"),
    ({"head": "/feature"}, "starts or ends with '/' or '.'"),
    ({"head": "feature/"}, "starts or ends with '/' or '.'"),
    ({"head": ".feature"}, "starts or ends with '/' or '.'"),
    ({"head": "feature.lock"}, "ends with '.lock'"),
    ({"head": "my feature"}, "contains ' '"),
    ({"head": "owner:feature"}, "contains ':'"),
    ({"base": "main~1"}, "base 'main~1' is not a branch name"),
    ({"base": "ma\\in"}, "contains '\\\\'"),
    ({"base": "caf\u00e9"}, "printable ASCII only"),
    ({"base": "main\n"}, "printable ASCII only"),
    ({"nonce": "xyz"}, "nonce 'xyz' is not 32 lowercase hex digits"),
    ({"nonce": NONCE[:-1]}, "is not 32 lowercase hex digits"),
    ({"nonce": NONCE.upper()}, "is not 32 lowercase hex digits"),
    ({"pull": None}, "merge_pr needs pull"),
    ({"head_sha": None}, "merge_pr needs head_sha"),
    ({"issue": 3}, "merge_pr takes no issue"),
]


@pytest.mark.parametrize("change, message", BAD_INPUTS, ids=[repr(case[0]) for case in BAD_INPUTS])
def test_a_bad_value_is_refused_with_a_message_naming_the_field_and_the_rule(change: Dict[str, Any],
                                                                               message: str) -> None:
    arguments: Dict[str, Any] = {"action": "merge_pr", "repo": "timmy/allegro", "now": NOW, **TARGETS["merge_pr"]}
    arguments.update(change)
    with pytest.raises(ApprovalError) as refused:
        approval.statement(**arguments)
    assert message in str(refused.value)


def test_close_issue_takes_no_branch_and_create_pr_takes_no_number() -> None:
    with pytest.raises(ApprovalError, match="close_issue takes no head"):
        approval.statement("close_issue", "a/b", issue=1, head="main", now=NOW)
    with pytest.raises(ApprovalError, match="create_pr takes no pull"):
        approval.statement("create_pr", "a/b", pull=1, head="x", head_sha=SHA1, base="main", now=NOW)
    with pytest.raises(ApprovalError, match="close_issue needs issue"):
        approval.statement("close_issue", "a/b", now=NOW)


def test_repo_stays_the_second_positional_argument_and_may_also_be_given_by_keyword() -> None:
    positional = approval.statement("close_issue", "o/r", issue=7, nonce=NONCE, now=NOW)
    assert positional == approval.statement("close_issue", repo="o/r", issue=7, nonce=NONCE, now=NOW)
    assert approval.parse_statement(positional)["repo"] == "o/r"
    with pytest.raises(ApprovalError, match="close_issue needs repo"):
        approval.statement("close_issue", issue=7, now=NOW)


# -- hermes_approve ----------------------------------------------------------------------------------

def test_a_hermes_approve_statement_is_written_byte_for_byte_with_its_fields_in_order() -> None:
    made = approval.statement("hermes_approve", request=REQUEST, command_sha256=ABC_SHA256, nonce=NONCE, now=NOW)
    assert made.encode("ascii") == (b"allegro-approval/v1\naction=hermes_approve\nrequest=hermes-run_0123abcd.ef:42-1\n"
                                    b"command_sha256=ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n"
                                    b"not_after=2026-03-14T10:26:53Z\nnonce=5f2c9a1e7b3d4c6f8a0b1c2d3e4f5a6b\n"
                                    b"audience=allegro\n")
    assert list(approval.parse_statement(made).items()) == [
        ("action", "hermes_approve"), ("request", REQUEST), ("command_sha256", ABC_SHA256),
        ("not_after", "2026-03-14T10:26:53Z"), ("nonce", NONCE), ("audience", "allegro")]


def test_hash_command_is_the_sha256_of_the_commands_utf8_bytes_in_lowercase_hex() -> None:
    assert approval.hash_command("abc") == ABC_SHA256 == approval.hash_command(b"abc")
    assert approval.hash_command("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    command = "rm -rf build/ && echo 'caf\u00e9'\n"
    assert approval.hash_command(command) == hashlib.sha256(command.encode("utf-8")).hexdigest()
    assert approval.hash_command(command) != approval.hash_command(command.rstrip("\n"))
    with pytest.raises(ApprovalError, match="command is not valid UTF-8"):
        approval.hash_command("rm \udcff")


def test_a_request_id_of_128_characters_of_the_whole_alphabet_is_accepted() -> None:
    request = ("AZaz09._:-" * 13)[:128]
    fields = approval.parse_statement(approval.statement("hermes_approve", request=request,
                                                         command_sha256=ABC_SHA256, now=NOW))
    assert fields["request"] == request and len(request) == 128


BAD_HERMES_INPUTS = [
    ({"request": ""}, "request '' is not a request id: 1 to 128 characters of A-Z a-z 0-9 . _ : -"),
    ({"request": "r" * 129}, "is not a request id"),
    ({"request": "hermes run-1"}, "request 'hermes run-1' is not a request id"),
    ({"request": "hermes/run-1"}, "is not a request id"),
    ({"request": "hermes-run-1\n"}, "is not a request id"),
    ({"request": "hermes-run-1\naction=merge_pr"}, "is not a request id"),
    ({"request": "caf\u00e9"}, "is not a request id"),
    ({"request": 42}, "request 42 is not a request id"),
    ({"command_sha256": ABC_SHA256.upper()}, "is not a SHA-256: 64 lowercase hex digits (lowercase, please)"),
    ({"command_sha256": ABC_SHA256[:-1]},
     "command_sha256 '%s' is not a SHA-256: 64 lowercase hex digits" % ABC_SHA256[:-1]),
    ({"command_sha256": ABC_SHA256 + "0"}, "command_sha256 '%s0' is not a SHA-256" % ABC_SHA256),
    ({"command_sha256": SHA1}, "command_sha256 '%s' is not a SHA-256" % SHA1),
    ({"command_sha256": "g" * 64}, "is not a SHA-256"),
    ({"command_sha256": "rm -rf build"}, "command_sha256 'rm -rf build' is not a SHA-256"),
    ({"request": None}, "hermes_approve needs request"),
    ({"command_sha256": None}, "hermes_approve needs command_sha256"),
    ({"repo": "timmy/allegro"}, "hermes_approve takes no repo (its fields: action, request, command_sha256, not_after"),
    ({"pull": 42}, "hermes_approve takes no pull"),
]


@pytest.mark.parametrize("change, message", BAD_HERMES_INPUTS, ids=[repr(case[0]) for case in BAD_HERMES_INPUTS])
def test_a_bad_request_id_or_command_hash_is_refused_with_a_message_naming_the_key(change: Dict[str, Any],
                                                                                     message: str) -> None:
    arguments: Dict[str, Any] = {"action": "hermes_approve", "now": NOW, **TARGETS["hermes_approve"]}
    arguments.update(change)
    with pytest.raises(ApprovalError) as refused:
        approval.statement(**arguments)
    assert message in str(refused.value)


def test_the_forge_actions_take_no_request_or_command_hash() -> None:
    with pytest.raises(ApprovalError, match="close_issue takes no request"):
        approval.statement("close_issue", "a/b", issue=1, request=REQUEST, now=NOW)
    with pytest.raises(ApprovalError, match="merge_pr takes no command_sha256"):
        approval.statement("merge_pr", "a/b", command_sha256=ABC_SHA256, now=NOW, **TARGETS["merge_pr"])


HERMES = approval.statement("hermes_approve", nonce=NONCE, now=NOW, **TARGETS["hermes_approve"])
HERMES_NOT_CANONICAL = [
    (HERMES.replace("action=hermes_approve\n", "action=hermes_approve\nrepo=timmy/allegro\n"),
     "hermes_approve takes no repo"),
    (HERMES.replace("request=%s\n" % REQUEST, ""), "hermes_approve needs request"),
    (HERMES.replace("request=%s\ncommand_sha256=%s\n" % (REQUEST, ABC_SHA256),
                    "command_sha256=%s\nrequest=%s\n" % (ABC_SHA256, REQUEST)), "request comes after command_sha256"),
    (HERMES.replace("command_sha256=%s\n" % ABC_SHA256, "command_sha256=%s\nbase=main\n" % ABC_SHA256),
     "base comes after command_sha256"),
    (HERMES.replace("request=" + REQUEST, "request=hermes run"), "request 'hermes run' is not a request id"),
    (HERMES.replace("command_sha256=" + ABC_SHA256, "command_sha256=" + ABC_SHA256.upper()),
     "command_sha256 '%s' is not a SHA-256" % ABC_SHA256.upper()),
    (HERMES.replace("command_sha256=" + ABC_SHA256, "command_sha256=" + SHA1), "is not a SHA-256"),
]


@pytest.mark.parametrize("text, message", HERMES_NOT_CANONICAL, ids=[case[1] for case in HERMES_NOT_CANONICAL])
def test_parse_statement_refuses_a_hermes_approve_statement_with_a_repo_or_a_bad_value(text: str,
                                                                                       message: str) -> None:
    with pytest.raises(ApprovalError) as refused:
        approval.parse_statement(text)
    assert str(refused.value).startswith("statement: ") and message in str(refused.value)


GOOD = approval.statement("merge_pr", "timmy/allegro", nonce=NONCE, now=NOW, **TARGETS["merge_pr"])
NOT_CANONICAL = [
    (GOOD.replace("\n", "\r\n"), "contains a CR"),
    (GOOD[:-1], "the last line does not end with LF"),
    (GOOD.replace("pull=42\n", "pull=42\n\n"), "line 5 is blank"),
    (GOOD.replace("allegro-approval/v1", "allegro-approval/v2"), "line 1 is not allegro-approval/v1"),
    (GOOD.replace("pull=42\n", "pull=42\npull=42\n"), "line 5: duplicate key pull"),
    (GOOD.replace("repo=timmy/allegro\npull=42\n", "pull=42\nrepo=timmy/allegro\n"), "repo comes after pull"),
    (GOOD.replace("pull=42\n", ""), "merge_pr needs pull"),
    (GOOD.replace("pull=42\n", "issue=7\npull=42\n"), "merge_pr takes no issue"),
    (GOOD.replace("audience=allegro\n", "audience=allegro\ncomment=hi\n"), "unknown key 'comment'"),
    (GOOD.replace("pull=42\n", "pull 42\n"), "line 4 is not key=value"),
    (GOOD.replace("not_after=2026-03-14T10:26:53Z", "not_after=2026-03-14T10:26:53.5Z"), "is not YYYY-MM-DDTHH:MM:SSZ"),
    (GOOD.replace("not_after=2026-03-14T10:26:53Z", "not_after=2026-03-14T10:26:53+00:00"), "is not YYYY-MM-DDTHH:MM:SSZ"),
    (GOOD.replace("not_after=2026-03-14T10:26:53Z", "not_after=2026-02-30T10:26:53Z"), "is not a real UTC time"),
    (GOOD.replace("audience=allegro", "audience=Allegro!"), "audience 'Allegro!' is not"),
    (GOOD.replace("action=merge_pr", "action=merge_all"), "unknown action 'merge_all'"),
    (GOOD.replace("head=feature/approvals", "head=feature/approv\u00e4ls"), "not printable ASCII"),
    (GOOD + "x" * 4097 + "\n", "longer than 4096 bytes"),
]


@pytest.mark.parametrize("text, message", NOT_CANONICAL, ids=[case[1] for case in NOT_CANONICAL])
def test_parse_statement_refuses_what_is_not_canonical_and_says_what(text: str, message: str) -> None:
    with pytest.raises(ApprovalError) as refused:
        approval.parse_statement(text)
    assert str(refused.value).startswith("statement: ") and message in str(refused.value)


def test_parse_statement_returns_the_fields_of_a_canonical_statement_in_order() -> None:
    fields = approval.parse_statement(GOOD.encode("ascii"))
    assert list(fields.items()) == [("action", "merge_pr"), ("repo", "timmy/allegro"), ("pull", "42"),
                                    ("head", "feature/approvals"), ("head_sha", SHA1), ("base", "main"),
                                    ("not_after", "2026-03-14T10:26:53Z"), ("nonce", NONCE), ("audience", "allegro")]


# -- signing with ssh-keygen -------------------------------------------------------------------------

def test_the_signature_verifies_with_ssh_keygen_in_the_allegro_approval_namespace_only(tmp_path: Path) -> None:
    key = keygen(tmp_path, "timmy")
    made = approval.approve("merge_pr", "timmy/allegro", key_path=key, ssh_keygen=SSH_KEYGEN, **TARGETS["merge_pr"])
    statement, signature = write_approval(tmp_path, made)
    signers = allowed_signers(tmp_path, key)

    good = ssh_verify(signers, signature, statement.read_bytes())
    assert good.returncode == 0, good.stderr
    assert b'Good "allegro-approval" signature for timmy with ED25519 key ' + fingerprint(key).encode() in good.stdout

    assert made.signature.startswith("-----BEGIN SSH SIGNATURE-----\n")
    assert made.signature.endswith("-----END SSH SIGNATURE-----\n")
    blob = blob_of(made.signature)
    assert blob[:10] == b"SSHSIG\x00\x00\x00\x01" and len(blob) == 186
    assert b"\x00\x00\x00\x10allegro-approval\x00\x00\x00\x00\x00\x00\x00\x06sha512" in blob

    assert ssh_verify(signers, signature, statement.read_bytes(), namespace="git").returncode != 0
    tampered = statement.read_bytes().replace(b"pull=42", b"pull=43")
    assert ssh_verify(signers, signature, tampered).returncode != 0
    other = keygen(tmp_path, "mallory")
    assert ssh_verify(allowed_signers(tmp_path, other), signature, statement.read_bytes()).returncode != 0


def test_a_hermes_approve_signed_by_approve_verifies_with_ssh_keygen_and_not_for_another_command(
        tmp_path: Path) -> None:
    key = keygen(tmp_path, "timmy")
    command = "rm -rf build/ && make"
    made = approval.approve("hermes_approve", request=REQUEST, command_sha256=approval.hash_command(command),
                            key_path=key, ssh_keygen=SSH_KEYGEN)
    assert made.fields["command_sha256"] == hashlib.sha256(command.encode()).hexdigest()
    assert list(made.fields) == FIELDS["hermes_approve"]
    statement, signature = write_approval(tmp_path, made)
    signers = allowed_signers(tmp_path, key)

    good = ssh_verify(signers, signature, statement.read_bytes())
    assert good.returncode == 0, good.stderr
    assert b'Good "allegro-approval" signature for timmy with ED25519 key ' + fingerprint(key).encode() in good.stdout
    assert len(blob_of(made.signature)) == 186

    other_command = statement.read_bytes().replace(made.fields["command_sha256"].encode(),
                                                   approval.hash_command("rm -rf /").encode())
    assert approval.parse_statement(other_command)["command_sha256"] == approval.hash_command("rm -rf /")
    assert ssh_verify(signers, signature, other_command).returncode != 0
    other_request = statement.read_bytes().replace(REQUEST.encode(), b"hermes-run_0123abcd.ef:42-2")
    assert ssh_verify(signers, signature, other_request).returncode != 0


def test_sign_refuses_a_statement_that_is_not_canonical_before_running_ssh_keygen(tmp_path: Path) -> None:
    with pytest.raises(ApprovalError, match="contains a CR"):
        approval.sign(GOOD.replace("\n", "\r\n"), tmp_path / "no-such-key", ssh_keygen="/nonexistent/ssh-keygen")


def test_a_missing_key_is_a_signing_error_with_ssh_keygens_reason(tmp_path: Path) -> None:
    with pytest.raises(SigningError, match=r"ssh-keygen -Y sign failed \(exit 255\).*no-such-key"):
        approval.sign(GOOD, tmp_path / "no-such-key", ssh_keygen=SSH_KEYGEN)
    with pytest.raises(SigningError, match="ssh-keygen not found"):
        approval.sign(GOOD, tmp_path / "no-such-key", ssh_keygen=str(tmp_path / "ssh-keygen"))


def test_allegro_approve_writes_statement_txt_and_its_sig_that_ssh_keygen_accepts(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = keygen(tmp_path, "timmy")
    out = tmp_path / "approval"
    code = approval.main(["--action", "create_pr", "--repo", "timmy/allegro", "--head", "feature/approvals",
                          "--head-sha", SHA1, "--base", "main", "--key", str(key), "--valid-for", "15",
                          "--out", str(out), "--ssh-keygen", SSH_KEYGEN])
    captured = capsys.readouterr()
    assert code == 0 and captured.out == ""
    statement = (out / "statement.txt").read_bytes()
    fields = approval.parse_statement(statement)
    assert fields["action"] == "create_pr" and fields["head_sha"] == SHA1
    expires = datetime.strptime(fields["not_after"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert timedelta(minutes=14) < expires - datetime.now(timezone.utc) <= timedelta(minutes=15)
    assert "wrote %s" % (out / "statement.txt") in captured.err and fields["nonce"] in captured.err
    verdict = ssh_verify(allowed_signers(tmp_path, key), out / "statement.txt.sig", statement)
    assert verdict.returncode == 0, verdict.stderr


def test_allegro_approve_prints_the_statement_and_signature_as_json_without_out(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = keygen(tmp_path, "timmy")
    assert approval.main(["--action", "close_issue", "--repo", "timmy/allegro", "--issue", "16", "--key", str(key),
                          "--ssh-keygen", SSH_KEYGEN]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert sorted(printed) == ["signature", "statement"]
    assert list(approval.parse_statement(printed["statement"])) == FIELDS["close_issue"]
    statement, signature = write_approval(tmp_path, approval.Approval(printed["statement"], printed["signature"]))
    assert ssh_verify(allowed_signers(tmp_path, key), signature, statement.read_bytes()).returncode == 0


def test_allegro_approve_with_command_signs_the_sha256_of_the_command_text(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = keygen(tmp_path, "timmy")
    command = "git push --force origin feature/x && echo 'd\u00e9j\u00e0 vu'"
    assert approval.main(["--action", "hermes_approve", "--request", REQUEST, "--command", command,
                          "--key", str(key), "--ssh-keygen", SSH_KEYGEN]) == 0
    printed = json.loads(capsys.readouterr().out)
    fields = approval.parse_statement(printed["statement"])
    assert list(fields) == FIELDS["hermes_approve"]
    assert fields["request"] == REQUEST
    assert fields["command_sha256"] == hashlib.sha256(command.encode("utf-8")).hexdigest()
    statement, signature = write_approval(tmp_path, approval.Approval(printed["statement"], printed["signature"]))
    verdict = ssh_verify(allowed_signers(tmp_path, key), signature, statement.read_bytes())
    assert verdict.returncode == 0, verdict.stderr


def test_allegro_approve_with_command_sha256_writes_the_hash_as_given(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = keygen(tmp_path, "timmy")
    out = tmp_path / "approval"
    assert approval.main(["--action", "hermes_approve", "--request", REQUEST, "--command-sha256", ABC_SHA256,
                          "--key", str(key), "--out", str(out), "--ssh-keygen", SSH_KEYGEN]) == 0
    assert "hermes_approve" in capsys.readouterr().err
    fields = approval.parse_statement((out / "statement.txt").read_bytes())
    assert fields["command_sha256"] == ABC_SHA256 and "repo" not in fields


HERMES_CLI_ERRORS = [
    (["--command", "ls", "--command-sha256", ABC_SHA256], "not allowed with argument"),
    ([], "hermes_approve needs command_sha256: give --command-sha256 HEX or --command TEXT"),
    (["--command-sha256", ABC_SHA256.upper()], "command_sha256 '%s' is not a SHA-256" % ABC_SHA256.upper()),
    (["--command", "ls", "--repo", "timmy/allegro"], "hermes_approve takes no repo"),
]


@pytest.mark.parametrize("extra, message", HERMES_CLI_ERRORS, ids=[case[1] for case in HERMES_CLI_ERRORS])
def test_allegro_approve_hermes_approve_takes_exactly_one_of_command_and_command_sha256_and_no_repo(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: List[str], message: str) -> None:
    with pytest.raises(SystemExit) as exited:
        approval.main(["--action", "hermes_approve", "--request", REQUEST, "--key", str(tmp_path / "key"),
                       "--ssh-keygen", "/nonexistent/ssh-keygen"] + extra)
    captured = capsys.readouterr()
    assert exited.value.code == 2 and captured.out == ""
    assert message in captured.err


def test_allegro_approve_refuses_command_for_a_forge_action(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        approval.main(["--action", "close_issue", "--repo", "a/b", "--issue", "1", "--command", "ls",
                       "--key", str(tmp_path / "key"), "--ssh-keygen", "/nonexistent/ssh-keygen"])
    assert exited.value.code == 2
    assert "close_issue takes no command (--command is for hermes_approve)" in capsys.readouterr().err


@pytest.mark.parametrize("kind, named", [("rsa", "RSA"), ("ecdsa", "ECDSA")])
def test_allegro_approve_refuses_an_rsa_or_ecdsa_key_with_a_clear_message(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, named: str) -> None:
    key = keygen(tmp_path, "old-" + kind, kind)
    out = tmp_path / "approval"
    code = approval.main(["--action", "close_issue", "--repo", "timmy/allegro", "--issue", "16", "--key", str(key),
                          "--out", str(out), "--ssh-keygen", SSH_KEYGEN])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert captured.err == ("allegro-approve: %s is an %s key; Allegro accepts only Ed25519 keys (ssh-ed25519; not "
                            "RSA, ECDSA, security keys or certificates): make one with ssh-keygen -t ed25519\n"
                            % (key, named))
    assert not out.exists()


def test_a_signature_by_a_key_of_another_type_is_refused_even_when_ssh_keygen_cannot_tell_the_type(
        tmp_path: Path) -> None:
    # `ssh-keygen -l` cannot read an encrypted PEM key, so only the signature ssh-keygen made shows its type;
    # a wrapper that answers `-l` with nothing and signs with an RSA key stands in for that case.
    rsa = keygen(tmp_path, "old-rsa", "rsa")
    wrapper = tmp_path / "ssh-keygen"
    wrapper.write_text('#!/bin/sh\n[ "$1" = "-l" ] && exit 1\nfor last; do :; done\n'
                       'exec %s -Y sign -n allegro-approval -f %s "$last"\n' % (SSH_KEYGEN, rsa))
    wrapper.chmod(0o755)
    with pytest.raises(SigningError, match="the key is ssh-rsa; Allegro accepts only ssh-ed25519 keys"):
        approval.sign(GOOD, tmp_path / "whatever", ssh_keygen=str(wrapper))


def test_allegro_approve_as_a_program_exits_2_on_bad_arguments_and_names_the_rule(tmp_path: Path) -> None:
    environment = dict(os.environ, PYTHONPATH=str(PACKAGE))
    bad = subprocess.run([sys.executable, "-m", "allegro_client.approval", "--action", "merge_pr", "--repo",
                          "timmy/allegro", "--pull", "42", "--head", "feature", "--head-sha", "abc", "--base", "main",
                          "--key", str(tmp_path / "key")], capture_output=True, text=True, env=environment, timeout=60)
    assert bad.returncode == 2 and bad.stdout == ""
    assert "allegro-approve: error: head_sha 'abc' is not a commit id: 40 or 64 lowercase hex digits" in bad.stderr
    long = subprocess.run([sys.executable, "-m", "allegro_client.approval", "--action", "close_issue", "--repo",
                           "a/b", "--issue", "1", "--key", "k", "--valid-for", "1441"],
                          capture_output=True, text=True, env=environment, timeout=60)
    assert long.returncode == 2 and "--valid-for 1441 is not from 1 to 1440 minutes" in long.stderr


def test_the_console_script_is_declared_in_pyproject() -> None:
    assert 'allegro-approve = "allegro_client.approval:main"' in (PACKAGE / "pyproject.toml").read_text()


# -- the key stays where it is -----------------------------------------------------------------------

_AUDIT: Optional[List[Tuple[str, Tuple[Any, ...]]]] = None
_WATCHED = ("open", "os.link", "os.symlink", "os.rename", "shutil.copyfile", "shutil.copymode", "shutil.copystat",
            "shutil.copytree", "subprocess.Popen")


def _audit(event: str, args: Tuple[Any, ...]) -> None:
    if _AUDIT is not None and event in _WATCHED:
        _AUDIT.append((event, args))


sys.addaudithook(_audit)


def test_signing_passes_the_key_path_to_ssh_keygen_and_never_opens_reads_or_copies_the_key(tmp_path: Path) -> None:
    global _AUDIT
    key = keygen(tmp_path, "timmy")
    secret = Path(key).read_bytes()
    key_files = {os.path.realpath(key), os.path.realpath(str(key) + ".pub")}
    _AUDIT = []
    try:
        made = approval.approve("merge_pr", "timmy/allegro", key_path=key, ssh_keygen=SSH_KEYGEN,
                                **TARGETS["merge_pr"])
        events = list(_AUDIT)
    finally:
        _AUDIT = None

    opened = [args[0] for event, args in events if event == "open" and isinstance(args[0], (str, bytes, os.PathLike))]
    assert opened, "the audit hook saw no open() at all"
    assert not [path for path in opened if os.path.realpath(os.fsdecode(path)) in key_files]
    assert not [event for event, _ in events if event.startswith(("shutil.", "os.link", "os.symlink", "os.rename"))]
    commands = [[os.fsdecode(part) for part in args[1]] for event, args in events if event == "subprocess.Popen"]
    assert [command[:2] for command in commands] == [[SSH_KEYGEN, "-l"], [SSH_KEYGEN, "-Y"]]
    for command in commands:
        assert command.count(str(key)) == 1 and command[command.index(str(key)) - 1] == "-f"
    assert commands[1][:7] == [SSH_KEYGEN, "-Y", "sign", "-n", "allegro-approval", "-f", str(key)]
    assert secret not in made.signature.encode() and secret not in made.statement.encode()
    temporary = [os.path.dirname(os.fsdecode(path)) for path in opened if os.fsdecode(path).endswith("statement.txt")]
    assert temporary and not any(os.path.exists(directory) for directory in temporary)


# -- the example in APPROVAL.md ----------------------------------------------------------------------

def test_the_worked_example_in_approval_md_is_canonical_and_verifies_with_ssh_keygen(tmp_path: Path) -> None:
    document = (ROOT / "protocol" / "APPROVAL.md").read_text()
    blocks = re.findall(r"```text\n(.*?)```", document, re.S)
    statement = next(block for block in blocks if block.startswith("allegro-approval/v1\n"))
    signature = next(block for block in blocks if block.startswith("-----BEGIN SSH SIGNATURE-----\n"))
    signer_line = re.search(r'^    (timmy namespaces="allegro-approval" ssh-ed25519 \S+ \S+)$', document, re.M)
    assert signer_line is not None
    assert len(statement.encode()) == 233 and approval.parse_statement(statement)["pull"] == "42"
    assert statement == approval.statement("merge_pr", "timmy/allegro", nonce=NONCE, now=NOW, **TARGETS["merge_pr"])
    assert "SHA-512 of the statement" in document and len(blob_of(signature)) == 186
    (tmp_path / "allowed_signers").write_text(signer_line.group(1) + "\n")
    (tmp_path / "statement.txt.sig").write_text(signature)
    verdict = ssh_verify(tmp_path / "allowed_signers", tmp_path / "statement.txt.sig", statement.encode())
    assert verdict.returncode == 0, verdict.stderr
    assert b"SHA256:SFec0D7xHa0gUQ1YuGU1g/ZtO/Vpn0Y8abnn8kmyob8" in verdict.stdout


# -- Allegro's verifier ------------------------------------------------------------------------------

def test_allegro_approval_verify_prints_the_fields_of_a_good_approval_and_refuses_a_tampered_or_moved_one(
        binary: str, tmp_path: Path) -> None:
    key = keygen(tmp_path, "timmy")
    made = approval.approve("merge_pr", "timmy/allegro", key_path=key, ssh_keygen=SSH_KEYGEN, **TARGETS["merge_pr"])
    statement, signature = write_approval(tmp_path, made)
    signers = allowed_signers(tmp_path, key)

    def verify(statement_file: Path, *extra: str) -> "subprocess.CompletedProcess[str]":
        return subprocess.run([binary, "approval", "verify", "--allowed-signers", str(signers), "--signature",
                               str(signature), "--statement", str(statement_file)] + list(extra),
                              capture_output=True, text=True, timeout=60)

    accepted = verify(statement)
    assert accepted.returncode == 0, accepted.stderr
    printed = json.loads(accepted.stdout)
    assert list(printed) == FIELDS["merge_pr"] + ["signer", "key_fingerprint"]
    assert printed == dict(made.fields, signer="timmy", key_fingerprint=fingerprint(key))

    def as_action(head_sha: str) -> List[str]:
        return ["--action", "merge_pr", "--repo", "timmy/allegro", "--pull", "42", "--head", "feature/approvals",
                "--head-sha", head_sha, "--base", "main"]

    matching = verify(statement, *as_action(SHA1))
    assert matching.returncode == 0, matching.stderr

    tampered = tmp_path / "tampered.txt"
    tampered.write_bytes(statement.read_bytes().replace(b"pull=42", b"pull=43"))
    refused = verify(tampered)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("allegro approval verify: refused: signature"), refused.stderr

    moved = verify(statement, *as_action("0" * 40))
    assert moved.returncode == 1 and moved.stdout == ""
    assert moved.stderr.startswith("allegro approval verify: refused: action: "), moved.stderr
    assert "head_sha" in moved.stderr
