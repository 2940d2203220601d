"""Timmy's signed approvals (protocol/APPROVAL.md): write the canonical statement for a gated action
and sign it with Timmy's own OpenSSH Ed25519 key.

    from allegro_client import approval
    made = approval.approve("merge_pr", "timmy/allegro", pull=42, head="feature/x",
                            head_sha="4b825dc642cb6eb9a060e54bf8d69288fbee4904", base="main",
                            key_path="~/.ssh/id_ed25519")
    made.statement     # "allegro-approval/v1\\naction=merge_pr\\n..."
    made.signature     # "-----BEGIN SSH SIGNATURE-----\\n...-----END SSH SIGNATURE-----\\n"
    # Let Hermes run one command it asked approval for (the Request's id and exact command text):
    approval.approve("hermes_approve", request="hermes-run_0123abcd-1",
                     command_sha256=approval.hash_command("rm -rf build"), key_path="~/.ssh/id_ed25519")

Signing runs `ssh-keygen -Y sign -n allegro-approval -f KEY statement.txt`: Python only passes the
key's path to ssh-keygen (or to `ssh-keygen -l`, which says the key's type); it never opens, reads
or copies the key file, so a passphrase prompt or an ssh-agent works exactly as with `git commit -S`.
A key that is not Ed25519 is refused before anything is signed, and the signature ssh-keygen made
is checked once more (Ed25519, namespace, sha512) before it is handed out.
"""

import argparse
import base64
import hashlib
import json
import os
import re
import secrets
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

__all__ = ["Approval", "ApprovalError", "SigningError", "statement", "parse_statement", "sign", "approve", "main",
           "hash_command",
           "VERSION_LINE", "NAMESPACE", "AUDIENCE", "FIELD_ORDER", "ACTIONS", "MAX_VALID_FOR", "MAX_STATEMENT_BYTES"]

VERSION_LINE = "allegro-approval/v1"
NAMESPACE = "allegro-approval"
AUDIENCE = "allegro"
HASH_ALGORITHM = "sha512"
KEY_TYPE = "ssh-ed25519"
MAX_STATEMENT_BYTES = 4096
MAX_VALID_FOR = timedelta(hours=24)
MAX_NUMBER = 9223372036854775807

# The global order of keys; every action lists its keys in this order (APPROVAL.md, "Statement").
FIELD_ORDER: Tuple[str, ...] = ("action", "repo", "issue", "pull", "head", "head_sha", "base", "request",
                                "command_sha256", "not_after", "nonce", "audience")

ACTIONS: Dict[str, Tuple[str, ...]] = {
    "create_pr": ("action", "repo", "head", "head_sha", "base", "not_after", "nonce", "audience"),
    "close_issue": ("action", "repo", "issue", "not_after", "nonce", "audience"),
    "merge_pr": ("action", "repo", "pull", "head", "head_sha", "base", "not_after", "nonce", "audience"),
    "hermes_approve": ("action", "request", "command_sha256", "not_after", "nonce", "audience"),
}

_REPO_PART = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
_NUMBER = re.compile(r"[1-9][0-9]*")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_NONCE = re.compile(r"[0-9a-f]{32}")
_REQUEST = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_COMMAND_SHA256 = re.compile(r"[0-9a-f]{64}")
_ACTION = re.compile(r"[a-z_]{1,64}")
_AUDIENCE = re.compile(r"[a-z0-9._-]{1,64}")
_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")
_BRANCH_FORBIDDEN = set("~^:?*[\\")
_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


class ApprovalError(ValueError):
    """The fields given cannot make a valid statement (or a statement is not canonical)."""


class SigningError(RuntimeError):
    """ssh-keygen could not sign, or the key or the signature it made is not one Allegro accepts."""


@dataclass(frozen=True)
class Approval:
    """A signed approval: the statement's exact text and ssh-keygen's armored signature over it."""

    statement: str
    signature: str

    @property
    def fields(self) -> Dict[str, str]:
        return parse_statement(self.statement)


# -- values ------------------------------------------------------------------------------------------

def _check_repo(repo: object) -> str:
    if not isinstance(repo, str) or repo.count("/") != 1 or not all(
            _REPO_PART.fullmatch(part) for part in repo.split("/")):
        raise ApprovalError("repo %r is not OWNER/NAME (each part 1 to 100 characters of A-Z a-z 0-9 . _ -, "
                            "not starting with '.')" % (repo,))
    return repo


def _check_number(name: str, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ApprovalError("%s must be a number, not %r" % (name, value))
    if isinstance(value, str):
        if not _NUMBER.fullmatch(value) or int(value) > MAX_NUMBER:
            raise ApprovalError("%s %r is not a decimal number from 1 to %d (no sign, no leading zeros)"
                                % (name, value, MAX_NUMBER))
        return value
    if not 1 <= value <= MAX_NUMBER:
        raise ApprovalError("%s %d is not from 1 to %d" % (name, value, MAX_NUMBER))
    return str(value)


def _branch_problem(value: str) -> Optional[str]:
    if not 1 <= len(value) <= 255:
        return "is not 1 to 255 characters long"
    bad = sorted({c for c in value if not "\x21" <= c <= "\x7e" or c in _BRANCH_FORBIDDEN})
    if bad:
        return "contains %s (printable ASCII only, none of ~^:?*[\\ and no spaces)" % ", ".join(repr(c) for c in bad)
    if ".." in value:
        return "contains '..'"
    if value[0] in "/." or value[-1] in "/.":
        return "starts or ends with '/' or '.'"
    if value.endswith(".lock"):
        return "ends with '.lock'"
    return None


def _check_branch(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ApprovalError("%s must be a branch name, not %r" % (name, value))
    problem = _branch_problem(value)
    if problem:
        raise ApprovalError("%s %r is not a branch name: it %s" % (name, value, problem))
    return value


def _check_sha(value: object) -> str:
    if not isinstance(value, str) or not _SHA.fullmatch(value):
        hint = " (lowercase, please)" if isinstance(value, str) and _SHA.fullmatch(value.lower()) else ""
        raise ApprovalError("head_sha %r is not a commit id: 40 or 64 lowercase hex digits%s" % (value, hint))
    return value


def _check_request(value: object) -> str:
    if not isinstance(value, str) or not _REQUEST.fullmatch(value):
        raise ApprovalError("request %r is not a request id: 1 to 128 characters of A-Z a-z 0-9 . _ : -" % (value,))
    return value


def _check_command_sha256(value: object) -> str:
    if not isinstance(value, str) or not _COMMAND_SHA256.fullmatch(value):
        hint = " (lowercase, please)" if isinstance(value, str) and _COMMAND_SHA256.fullmatch(value.lower()) else ""
        raise ApprovalError("command_sha256 %r is not a SHA-256: 64 lowercase hex digits%s" % (value, hint))
    return value


def hash_command(command: Union[str, bytes]) -> str:
    """The command_sha256 of a command: the SHA-256 of its UTF-8 bytes (of `command` itself if
    bytes), as 64 lowercase hex digits. Give the text exactly as Allegro's Request shows it."""
    if isinstance(command, str):
        try:
            data = command.encode("utf-8")
        except UnicodeEncodeError:
            raise ApprovalError("command is not valid UTF-8 text") from None
    elif isinstance(command, (bytes, bytearray)):
        data = bytes(command)
    else:
        raise ApprovalError("command must be text, not %r" % (command,))
    return hashlib.sha256(data).hexdigest()


def _check_nonce(value: object) -> str:
    if not isinstance(value, str) or not _NONCE.fullmatch(value):
        raise ApprovalError("nonce %r is not 32 lowercase hex digits" % (value,))
    return value


def _check_time(value: str) -> datetime:
    match = _TIME.fullmatch(value)
    if not match:
        raise ApprovalError("not_after %r is not YYYY-MM-DDTHH:MM:SSZ" % (value,))
    try:
        year, month, day, hour, minute, second = (int(part) for part in match.groups())
        return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError:
        raise ApprovalError("not_after %r is not a real UTC time" % (value,)) from None


def _utc(name: str, value: datetime) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise ApprovalError("%s must be a timezone-aware datetime, not %r" % (name, value))
    return value.astimezone(timezone.utc)


# -- the statement -----------------------------------------------------------------------------------

def statement(action: str, repo: Optional[str] = None, *, issue: Optional[Union[int, str]] = None,
              pull: Optional[Union[int, str]] = None, head: Optional[str] = None, head_sha: Optional[str] = None,
              base: Optional[str] = None, request: Optional[str] = None, command_sha256: Optional[str] = None,
              valid_for: timedelta = timedelta(hours=1), not_after: Optional[datetime] = None,
              nonce: Optional[str] = None, now: Optional[datetime] = None) -> str:
    """The canonical statement approving `action` on exactly this target.

    The target is the action's fields (ACTIONS): `repo` and `issue`, `pull`, `head`, `head_sha`,
    `base` for the forge actions; `request` and `command_sha256` (hash_command) for hermes_approve,
    which takes no repo.

    It expires `valid_for` after `now` (rounded down to the second; at most 24 hours), or at
    `not_after` if given (which must lie in (now, now + 24 h]). The nonce is 128 fresh random
    bits unless given. Raises ApprovalError naming the first field that is wrong."""
    if action not in ACTIONS:
        raise ApprovalError("action %r is not one of %s" % (action, ", ".join(sorted(ACTIONS))))
    wanted = ACTIONS[action]
    given = {"repo": repo, "issue": issue, "pull": pull, "head": head, "head_sha": head_sha, "base": base,
             "request": request, "command_sha256": command_sha256}
    for name, value in given.items():
        if name in wanted and value is None:
            raise ApprovalError("%s needs %s" % (action, name))
        if name not in wanted and value is not None:
            raise ApprovalError("%s takes no %s (its fields: %s)" % (action, name, ", ".join(wanted)))

    values: Dict[str, Optional[str]] = {
        "action": action,
        "repo": _check_repo(repo) if repo is not None else None,
        "issue": _check_number("issue", issue) if issue is not None else None,
        "pull": _check_number("pull", pull) if pull is not None else None,
        "head": _check_branch("head", head) if head is not None else None,
        "head_sha": _check_sha(head_sha) if head_sha is not None else None,
        "base": _check_branch("base", base) if base is not None else None,
        "request": _check_request(request) if request is not None else None,
        "command_sha256": _check_command_sha256(command_sha256) if command_sha256 is not None else None,
        "not_after": "",
        "nonce": _check_nonce(nonce) if nonce is not None else secrets.token_hex(16),
        "audience": AUDIENCE,
    }
    clock = _utc("now", now) if now is not None else datetime.now(timezone.utc)
    if not_after is None:
        if not isinstance(valid_for, timedelta) or valid_for <= timedelta(0) or valid_for > MAX_VALID_FOR:
            raise ApprovalError("valid_for %s must be more than 0 and at most 24 hours" % (valid_for,))
        expiry = clock + valid_for
    else:
        expiry = _utc("not_after", not_after)
    expiry = expiry.replace(microsecond=0)
    if expiry <= clock:
        raise ApprovalError("not_after %s is not later than now (%s)" % (expiry.strftime(_TIME_FORMAT),
                                                                         clock.strftime(_TIME_FORMAT)))
    if expiry - clock > MAX_VALID_FOR:
        raise ApprovalError("not_after %s is more than 24 hours after now (%s)" % (expiry.strftime(_TIME_FORMAT),
                                                                                  clock.strftime(_TIME_FORMAT)))

    values["not_after"] = expiry.strftime(_TIME_FORMAT)
    text = VERSION_LINE + "\n" + "".join("%s=%s\n" % (key, values[key]) for key in wanted)
    if len(text.encode("ascii")) > MAX_STATEMENT_BYTES:
        raise ApprovalError("the statement is longer than %d bytes" % MAX_STATEMENT_BYTES)
    return text


def parse_statement(text: Union[str, bytes]) -> Dict[str, str]:
    """The fields of a canonical statement, in order; ApprovalError says what is not canonical.

    Checks syntax only (APPROVAL.md, "Statement"): not the audience's value, not the expiry against
    a clock, not the signature."""
    raw = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    if len(raw) > MAX_STATEMENT_BYTES:
        raise ApprovalError("statement: longer than %d bytes" % MAX_STATEMENT_BYTES)
    if b"\r" in raw:
        raise ApprovalError("statement: contains a CR (line ends are LF only)")
    if any(byte > 0x7e or (byte < 0x20 and byte != 0x0a) for byte in raw):
        raise ApprovalError("statement: contains a byte that is not printable ASCII")
    if not raw.endswith(b"\n"):
        raise ApprovalError("statement: the last line does not end with LF")
    lines = raw.decode("ascii")[:-1].split("\n")
    if lines[0] != VERSION_LINE:
        raise ApprovalError("statement: line 1 is not %s" % VERSION_LINE)
    fields: Dict[str, str] = {}
    for number, line in enumerate(lines[1:], start=2):
        key, equals, value = line.partition("=")
        if not line:
            raise ApprovalError("statement: line %d is blank" % number)
        if not equals:
            raise ApprovalError("statement: line %d is not key=value" % number)
        if key not in FIELD_ORDER:
            raise ApprovalError("statement: line %d: unknown key %r" % (number, key))
        if key in fields:
            raise ApprovalError("statement: line %d: duplicate key %s" % (number, key))
        if fields and FIELD_ORDER.index(key) < FIELD_ORDER.index(list(fields)[-1]):
            raise ApprovalError("statement: line %d: %s comes after %s (keys in the fixed order)"
                                % (number, key, list(fields)[-1]))
        fields[key] = value
    action = fields.get("action")
    if action is None:
        raise ApprovalError("statement: no action")
    if not _ACTION.fullmatch(action) or action not in ACTIONS:
        raise ApprovalError("statement: unknown action %r" % action)
    wanted = ACTIONS[action]
    missing = [key for key in wanted if key not in fields]
    extra = [key for key in fields if key not in wanted]
    if missing:
        raise ApprovalError("statement: %s needs %s" % (action, ", ".join(missing)))
    if extra:
        raise ApprovalError("statement: %s takes no %s" % (action, ", ".join(extra)))
    checks: Dict[str, Callable[[str], object]] = {"repo": _check_repo, "head_sha": _check_sha, "nonce": _check_nonce, "not_after": _check_time,
              "issue": lambda value: _check_number("issue", value), "pull": lambda value: _check_number("pull", value),
              "head": lambda value: _check_branch("head", value), "base": lambda value: _check_branch("base", value),
              "request": _check_request, "command_sha256": _check_command_sha256}
    for key, value in fields.items():
        try:
            if key in checks:
                checks[key](value)
            elif key == "audience" and not _AUDIENCE.fullmatch(value):
                raise ApprovalError("audience %r is not 1 to 64 characters of a-z 0-9 . _ -" % value)
        except ApprovalError as error:
            raise ApprovalError("statement: %s" % error) from None
    return fields


# -- signing -----------------------------------------------------------------------------------------

def _key_type(key_path: str, ssh_keygen: str) -> Optional[str]:
    """The key's type as `ssh-keygen -l` names it (ED25519, RSA, ECDSA, ED25519-SK, ...), or None if
    ssh-keygen cannot tell without the passphrase (an old PEM key): then the signature says."""
    try:
        result = subprocess.run([ssh_keygen, "-l", "-f", key_path], stdin=subprocess.DEVNULL,
                                capture_output=True, text=True, timeout=30)
    except FileNotFoundError:
        raise SigningError("ssh-keygen not found (%s); install openssh-client" % ssh_keygen) from None
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        return None
    match = re.search(r"\(([A-Za-z0-9@._-]+)\)\s*$", lines[-1])
    return match.group(1).upper() if match else None


def _ssh_string(blob: bytes, offset: int) -> Tuple[bytes, int]:
    if offset + 4 > len(blob):
        raise SigningError("ssh-keygen wrote a signature that is cut short")
    (length,) = struct.unpack(">I", blob[offset:offset + 4])
    end = offset + 4 + length
    if end > len(blob):
        raise SigningError("ssh-keygen wrote a signature whose lengths run past its end")
    return blob[offset + 4:end], end


def _check_signature(armored: str) -> None:
    """The armored signature is SSHSIG v1 by an ssh-ed25519 key, in our namespace, with sha512."""
    lines = armored.strip().splitlines()
    if len(lines) < 3 or lines[0] != "-----BEGIN SSH SIGNATURE-----" or lines[-1] != "-----END SSH SIGNATURE-----":
        raise SigningError("ssh-keygen did not write an armored SSH signature")
    try:
        blob = base64.b64decode("".join(lines[1:-1]), validate=True)
    except ValueError:
        raise SigningError("ssh-keygen wrote a signature that is not base64") from None
    if blob[:6] != b"SSHSIG" or blob[6:10] != b"\x00\x00\x00\x01":
        raise SigningError("ssh-keygen wrote a signature that is not SSHSIG version 1")
    public_key, offset = _ssh_string(blob, 10)
    namespace, offset = _ssh_string(blob, offset)
    _reserved, offset = _ssh_string(blob, offset)
    hash_algorithm, offset = _ssh_string(blob, offset)
    key_type, _ = _ssh_string(public_key, 0)
    if key_type != KEY_TYPE.encode():
        raise SigningError("the key is %s; Allegro accepts only ssh-ed25519 keys (make one with "
                           "ssh-keygen -t ed25519)" % key_type.decode("ascii", "replace"))
    if namespace != NAMESPACE.encode() or hash_algorithm != HASH_ALGORITHM.encode():
        raise SigningError("ssh-keygen signed in namespace %r with %r, not %s with %s" % (
            namespace.decode("ascii", "replace"), hash_algorithm.decode("ascii", "replace"), NAMESPACE, HASH_ALGORITHM))


def sign(statement_text: str, key_path: Union[str, "os.PathLike[str]"], ssh_keygen: str = "ssh-keygen") -> str:
    """Signs the statement with `ssh-keygen -Y sign -n allegro-approval -f KEY`; returns the armored
    signature. The key's path is only handed to ssh-keygen (a private key, or a public key whose
    private half is in ssh-agent; `~` is expanded); the statement goes through a private
    temporary directory."""
    parse_statement(statement_text)
    key = os.path.expanduser(os.fspath(key_path))
    key_type = _key_type(key, ssh_keygen)
    if key_type is not None and key_type != "ED25519":
        raise SigningError("%s is an %s key; Allegro accepts only Ed25519 keys (ssh-ed25519; not RSA, ECDSA, "
                           "security keys or certificates): make one with ssh-keygen -t ed25519" % (key, key_type))
    with tempfile.TemporaryDirectory(prefix="allegro-approval-") as directory:
        message = os.path.join(directory, "statement.txt")
        with open(message, "wb") as handle:
            handle.write(statement_text.encode("ascii"))
        try:
            result = subprocess.run([ssh_keygen, "-Y", "sign", "-n", NAMESPACE, "-f", key, message],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except FileNotFoundError:
            raise SigningError("ssh-keygen not found (%s); install openssh-client" % ssh_keygen) from None
        if result.returncode != 0:
            detail = " ".join(line for line in result.stderr.splitlines() if not line.startswith("Signing file"))
            raise SigningError("ssh-keygen -Y sign failed (exit %d): %s" % (result.returncode, detail.strip()))
        with open(message + ".sig", "r", encoding="ascii") as handle:
            armored = handle.read()
    _check_signature(armored)
    return armored


def approve(action: str, repo: Optional[str] = None, *, key_path: Union[str, "os.PathLike[str]"],
            issue: Optional[Union[int, str]] = None, pull: Optional[Union[int, str]] = None, head: Optional[str] = None,
            head_sha: Optional[str] = None, base: Optional[str] = None, request: Optional[str] = None,
            command_sha256: Optional[str] = None, valid_for: timedelta = timedelta(hours=1),
            not_after: Optional[datetime] = None, nonce: Optional[str] = None, now: Optional[datetime] = None,
            ssh_keygen: str = "ssh-keygen") -> Approval:
    """statement() and sign() in one call."""
    text = statement(action, repo, issue=issue, pull=pull, head=head, head_sha=head_sha, base=base, request=request,
                     command_sha256=command_sha256, valid_for=valid_for, not_after=not_after, nonce=nonce, now=now)
    return Approval(text, sign(text, key_path, ssh_keygen=ssh_keygen))


# -- allegro-approve ---------------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="allegro-approve",
        description="Write and sign Timmy's approval of one action (protocol/APPROVAL.md) with an Ed25519 "
                    "SSH key. Prints {\"statement\": ..., \"signature\": ...} as JSON, or with --out DIR "
                    "writes DIR/statement.txt and DIR/statement.txt.sig.")
    parser.add_argument("--action", required=True, choices=sorted(ACTIONS))
    parser.add_argument("--repo", help="OWNER/NAME (create_pr, close_issue, merge_pr)")
    parser.add_argument("--issue", help="the issue number (close_issue)")
    parser.add_argument("--pull", help="the pull request number (merge_pr)")
    parser.add_argument("--head", help="the head branch (create_pr, merge_pr)")
    parser.add_argument("--head-sha", dest="head_sha", help="the head commit, 40 or 64 lowercase hex digits")
    parser.add_argument("--base", help="the base branch (create_pr, merge_pr)")
    parser.add_argument("--request", metavar="ID",
                        help="the id of the Allegro Request that forwarded Hermes' prompt (hermes_approve)")
    command = parser.add_mutually_exclusive_group()
    command.add_argument("--command-sha256", dest="command_sha256", metavar="HEX",
                         help="the SHA-256 of the command's UTF-8 bytes, 64 lowercase hex digits (hermes_approve)")
    command.add_argument("--command", metavar="TEXT",
                         help="the command exactly as the Request shows it; its SHA-256 is computed (hermes_approve)")
    parser.add_argument("--key", required=True, help="Timmy's Ed25519 key (private, or public with ssh-agent)")
    parser.add_argument("--valid-for", dest="valid_for", type=int, default=60, metavar="MINUTES",
                        help="minutes until the approval expires (1 to 1440, default 60)")
    parser.add_argument("--out", metavar="DIR", help="write DIR/statement.txt and DIR/statement.txt.sig")
    parser.add_argument("--ssh-keygen", dest="ssh_keygen", default="ssh-keygen", help=argparse.SUPPRESS)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """allegro-approve: exit 0 with the signed approval, 1 when signing fails or the key is refused,
    2 for arguments that cannot make a valid statement."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not 1 <= args.valid_for <= 1440:
        parser.error("--valid-for %d is not from 1 to 1440 minutes (at most 24 hours)" % args.valid_for)
    if args.action == "hermes_approve" and args.command is None and args.command_sha256 is None:
        parser.error("hermes_approve needs command_sha256: give --command-sha256 HEX or --command TEXT")
    if args.action != "hermes_approve" and args.command is not None:
        parser.error("%s takes no command (--command is for hermes_approve)" % args.action)
    try:
        command_sha256 = hash_command(args.command) if args.command is not None else args.command_sha256
        text = statement(args.action, args.repo, issue=args.issue, pull=args.pull, head=args.head,
                         head_sha=args.head_sha, base=args.base, request=args.request, command_sha256=command_sha256,
                         valid_for=timedelta(minutes=args.valid_for))
    except ApprovalError as error:
        parser.error(str(error))
    try:
        signature = sign(text, args.key, ssh_keygen=args.ssh_keygen)
    except SigningError as error:
        print("allegro-approve: %s" % error, file=sys.stderr)
        return 1
    fields = parse_statement(text)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        written: List[str] = []
        for name, content in (("statement.txt", text), ("statement.txt.sig", signature)):
            path = os.path.join(args.out, name)
            with open(path, "w", encoding="ascii", newline="") as handle:
                handle.write(content)
            written.append(path)
        print("allegro-approve: wrote %s and %s (%s, nonce %s, valid until %s)" % (
            written[0], written[1], fields["action"], fields["nonce"], fields["not_after"]), file=sys.stderr)
    else:
        json.dump({"statement": text, "signature": signature}, sys.stdout)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
