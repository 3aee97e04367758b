"""The internal step I/O endpoint: only a running step's own token reaches its job's folders."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from epic.compute.local import RUNNER_SOURCE
from epic.compute.remote import BUNDLE_FILE, BUNDLE_FOLDER, step_token
from epic.compute.slurm import wrapper
from epic.jobs.models import JobStep
from epic.jobs.states import StepState
from epic.worker import stepio
from epic.worker.launches import launch_for

pytestmark = pytest.mark.django_db


# The Slurm job id the worker recorded for every step of these tests.
SLURM_JOB = 4242


class StepCaller:
    """An HTTP client of one step's I/O, with the step's folders at hand."""

    def __init__(self, step: JobStep):
        self.step = step
        self.launch = launch_for(step)
        self.client = APIClient()
        self.bootstrap = step_token(step.job_id, step.pk)
        self.token = ""

    def request(self, method: str, path: str, body: bytes = b"", token: str | None = None):
        """One request to the step's endpoint with its session secret, raw body and all."""
        url = f"/internal/steps/{self.step.pk}/{path}"
        header = f"Bearer {token if token is not None else self.token}"
        return self.client.generic(
            method, url, body, content_type="application/octet-stream", HTTP_AUTHORIZATION=header
        )

    def exchange(self, slurm_job: int = SLURM_JOB):
        """The node's first contact: spend the bootstrap token; keep the session secret given."""
        answer = self.request("PUT", "scheduler-job/", str(slurm_job).encode(), self.bootstrap)
        if answer.status_code == 200:
            self.token = answer.json()["session"]
        return answer

    def send_case(self, archive: bytes):
        """Upload an archive in one part and commit it."""
        self.request("POST", "case/parts/?offset=0", archive)
        description = {"size": len(archive), "sha256": hashlib.sha256(archive).hexdigest()}
        return self.request("PUT", "case/", json.dumps(description).encode())


@pytest.fixture
def running_step(submit_script):
    """A step handed to its backend, with a case folder and a prepared bundle; and its caller."""

    def make(state: str = StepState.RUNNING, exchanged: bool = True) -> StepCaller:
        job_id = submit_script(f"case{JobStep.objects.count()}", "echo hi\n")
        step = JobStep.objects.get(job_id=job_id)
        JobStep.objects.filter(pk=step.pk).update(state=StepState.RUNNING, local_job_id=SLURM_JOB)
        step.refresh_from_db()
        caller = StepCaller(step)
        if exchanged:
            assert caller.exchange().status_code == 200
        JobStep.objects.filter(pk=step.pk).update(state=state)
        (caller.launch.case_dir / "system").mkdir(parents=True)
        (caller.launch.case_dir / "system" / "controlDict").write_text("endTime 1;\n")
        (caller.launch.case_dir / "old.txt").write_text("to be deleted\n")
        caller.launch.step_dir.mkdir(parents=True, exist_ok=True)
        files = {"spec.json": "{}", "start_script.sh": "echo start\n"}
        (caller.launch.step_dir / BUNDLE_FILE).write_text(json.dumps(files))
        return caller

    return make


def tar_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    """A tar archive of the given members and contents."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for member, content in members:
            member.size = len(content) if member.isreg() else 0
            archive.addfile(member, io.BytesIO(content))
    return buffer.getvalue()


def file_member(name: str) -> tarfile.TarInfo:
    """A regular file's header."""
    return tarfile.TarInfo(name)


def link_member(name: str, target: str) -> tarfile.TarInfo:
    """A symbolic link's header."""
    member = tarfile.TarInfo(name)
    member.type, member.linkname = tarfile.SYMTYPE, target
    return member


def hard_link_member(name: str, target: str) -> tarfile.TarInfo:
    """A hard link's header."""
    member = tarfile.TarInfo(name)
    member.type, member.linkname = tarfile.LNKTYPE, target
    return member


def special_member(name: str, kind: bytes) -> tarfile.TarInfo:
    """The header of a device or FIFO."""
    member = tarfile.TarInfo(name)
    member.type = kind
    return member


def names_in(answer) -> dict[str, bytes]:
    """The regular files of a streamed tar answer, by name."""
    data = b"".join(answer.streaming_content)
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {
            member.name: archive.extractfile(member).read()
            for member in archive.getmembers()
            if member.isreg()
        }


def folder_contents(folder: Path) -> dict[str, str]:
    """Every file under a folder, by relative name."""
    return {
        str(path.relative_to(folder)): path.read_text()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


# Downloads


def test_bundle_and_case_are_served_as_tar_streams(running_step):
    caller = running_step()

    bundle = caller.request("GET", "bundle/")
    case = caller.request("GET", "case/")

    assert (bundle.status_code, bundle["Content-Type"]) == (200, "application/x-tar")
    assert names_in(bundle) == {
        "runner.py": RUNNER_SOURCE.encode(),
        "spec.json": b"{}",
        "start_script.sh": b"echo start\n",
    }
    assert names_in(case) == {
        "old.txt": b"to be deleted\n",
        "system/controlDict": b"endTime 1;\n",
    }


def test_a_bundle_prepared_by_an_earlier_version_is_served_from_its_folder(running_step):
    caller = running_step()
    (caller.launch.step_dir / BUNDLE_FILE).unlink()
    folder = caller.launch.step_dir / BUNDLE_FOLDER
    folder.mkdir()
    (folder / "runner.py").write_text("print('runner')\n")
    (folder / "spec.json").write_text("{}")

    bundle = caller.request("GET", "bundle/")

    assert names_in(bundle) == {"runner.py": b"print('runner')\n", "spec.json": b"{}"}


def test_submitted_step_is_served_too(running_step):
    caller = running_step(StepState.SUBMITTED)

    assert caller.request("GET", "bundle/").status_code == 200


def test_step_being_handed_over_is_asked_to_retry(running_step):
    caller = running_step(StepState.QUEUED, exchanged=False)

    answer = caller.exchange()

    assert (answer.status_code, answer["Retry-After"]) == (503, "1")
    assert answer.json()["code"] == "step_not_started"


# Refusals


@pytest.mark.parametrize("state", [StepState.COMPLETE, StepState.CANCELLED, StepState.PENDING])
def test_step_not_in_its_backends_hands_is_refused(running_step, state):
    caller = running_step(state)

    answer = caller.request("POST", "logs/stdout/?offset=0", b"late\n")

    assert (answer.status_code, answer.json()["code"]) == (403, "step_io_denied")
    assert not (caller.launch.step_dir / "stdout").exists()


def test_wrong_token_and_another_steps_token_are_refused(running_step):
    caller, other = running_step(), running_step()
    foreign = other.token

    answers = [
        caller.request("GET", "case/", token="not-the-token"),
        caller.request("GET", "case/", token=foreign),
        caller.request("POST", "logs/stdout/?offset=0", b"x", token=foreign),
        caller.request("PUT", "exit/", b"0", token=foreign),
        caller.client.get(f"/internal/steps/{caller.step.pk}/bundle/"),
    ]

    assert [answer.status_code for answer in answers] == [403] * 5
    assert {answer.json()["code"] for answer in answers} == {"step_io_denied"}
    assert not (caller.launch.step_dir / "stdout").exists()
    assert not (caller.launch.step_dir / "exit").exists()


def test_unknown_step_answers_like_a_wrong_token(running_step):
    caller = running_step()
    caller.step.pk = 999999

    answer = caller.request("GET", "bundle/")

    assert (answer.status_code, answer.json()["code"]) == (403, "step_io_denied")


# Logs


def test_log_bytes_are_appended_at_their_offsets_and_repeats_are_harmless(running_step):
    caller = running_step()

    sizes = [
        caller.request("POST", "logs/stdout/?offset=0", b"abc").json(),
        caller.request("POST", "logs/stdout/?offset=0", b"abc").json(),
        caller.request("POST", "logs/stdout/?offset=2", b"cde").json(),
        caller.request("POST", "logs/stderr/?offset=0", b"oops\n").json(),
    ]

    assert sizes == [{"size": 3}, {"size": 3}, {"size": 5}, {"size": 5}]
    assert (caller.launch.step_dir / "stdout").read_bytes() == b"abcde"
    assert (caller.launch.step_dir / "stderr").read_bytes() == b"oops\n"


def test_gap_in_log_offsets_is_refused_with_the_size_held(running_step):
    caller = running_step()
    caller.request("POST", "logs/stdout/?offset=0", b"abc")

    answer = caller.request("POST", "logs/stdout/?offset=10", b"later")

    assert (answer.status_code, answer.json()["code"]) == (409, "offset_gap")
    assert answer.json()["size"] == 3
    assert (caller.launch.step_dir / "stdout").read_bytes() == b"abc"


def test_log_bodies_and_offsets_are_validated(running_step):
    caller = running_step()

    too_big = caller.request("POST", "logs/stdout/?offset=0", b"x" * (1024 * 1024 + 1))
    no_offset = caller.request("POST", "logs/stdout/", b"x")
    unknown = caller.request("POST", "logs/runner.py/?offset=0", b"x")
    traversal = caller.request("POST", "logs/..%2Fexit/?offset=0", b"x")

    assert (too_big.status_code, too_big.json()["code"]) == (413, "request_too_large")
    assert no_offset.status_code == 400
    assert unknown.status_code == traversal.status_code == 404
    assert not (caller.launch.step_dir / "stdout").exists()
    assert not (caller.launch.step_dir / "exit").exists()


def test_gap_in_a_log_not_started_creates_no_file(running_step):
    caller = running_step()

    answer = caller.request("POST", "logs/stdout/?offset=10", b"later")

    assert (answer.status_code, answer.json()["size"]) == (409, 0)
    assert not (caller.launch.step_dir / "stdout").exists()


@pytest.mark.parametrize("offset", ["%C2%B2", "%D9%A1", "-1", "1" * 16, "+1", "%201"])
def test_offsets_other_than_ascii_digits_are_refused(running_step, offset):
    caller = running_step()

    answer = caller.request("POST", f"logs/stdout/?offset={offset}", b"x")

    assert answer.status_code == 400
    assert not (caller.launch.step_dir / "stdout").exists()


def test_negative_content_length_is_refused(running_step):
    caller = running_step()
    url = f"/internal/steps/{caller.step.pk}/logs/stdout/?offset=0"

    answer = caller.client.generic(
        "POST", url, b"", HTTP_AUTHORIZATION=f"Bearer {caller.token}", CONTENT_LENGTH="-5"
    )

    assert answer.status_code == 400
    assert not (caller.launch.step_dir / "stdout").exists()


# The case folder


def test_case_sent_back_replaces_the_case_and_mirrors_deletions(running_step):
    caller = running_step()
    archive = tar_of(
        (file_member("system/controlDict"), b"endTime 2;\n"),
        (file_member("0.5/U"), b"results\n"),
    )

    answer = caller.send_case(archive)

    assert answer.status_code == 204
    case = caller.launch.case_dir
    assert folder_contents(case) == {"0.5/U": "results\n", "system/controlDict": "endTime 2;\n"}
    assert sorted(path.name for path in case.parent.iterdir()) == ["case", "steps"]
    assert caller.send_case(archive).status_code == 204


@pytest.mark.parametrize(
    "member",
    [
        (file_member("../escaped.txt"), b"out\n"),
        (file_member("/tmp/absolute.txt"), b"out\n"),
        (link_member("passwd", "/etc/passwd"), b""),
        (link_member("up", "../../.."), b""),
        (link_member("latest", "0.5"), b""),
        (hard_link_member("hard", "new.txt"), b""),
        (special_member("fifo", tarfile.FIFOTYPE), b""),
        (special_member("null", tarfile.CHRTYPE), b""),
        (file_member("/".join(["d" * 200] * 6)), b"long\n"),
        (file_member("n" * 256), b"long\n"),
    ],
    ids=[
        "dot-dot",
        "absolute",
        "absolute-link",
        "link-out",
        "link-inside",
        "hard-link",
        "fifo",
        "device",
        "name-over-1024-bytes",
        "name-part-over-255-bytes",
    ],
)
def test_case_archive_leaving_the_case_is_refused_and_changes_nothing(running_step, member):
    caller = running_step()
    before = folder_contents(caller.launch.case_dir)

    answer = caller.send_case(tar_of((file_member("new.txt"), b"new\n"), member))

    assert (answer.status_code, answer.json()["case"][0][:30]) == (
        400,
        "The case archive was refused: ",
    )
    assert folder_contents(caller.launch.case_dir) == before
    assert sorted(path.name for path in caller.launch.case_dir.parent.iterdir()) == [
        "case",
        "steps",
    ]
    assert not (caller.launch.case_dir.parent / "escaped.txt").exists()


def link_attack_archive() -> bytes:
    """The shape that defeats the "data" filter: long folders reached through a link chain."""
    members, path = [], ""
    for letter in "abcdefghijklmnop":
        members.append((dir_member(f"{path}{letter * 247}"), b""))
        members.append((link_member(f"{path}{letter}", letter * 247), b""))
        path += f"{letter}/"
    members.append((link_member(f"{path}{'l' * 254}", "../" * 16), b""))
    members.append((link_member("escape", f"{path}{'l' * 254}/../../../../etc"), b""))
    members.append((file_member("escape/cron.d/epic"), b"* * * * * root id\n"))
    return tar_of(*members)


def dir_member(name: str) -> tarfile.TarInfo:
    """A folder's header."""
    member = tarfile.TarInfo(name)
    member.type = tarfile.DIRTYPE
    return member


def sparse_archive() -> bytes:
    """A GNU tar holding one sparse file."""
    member = tarfile.TarInfo("sparse")
    member.type = tarfile.GNUTYPE_SPARSE
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        archive.addfile(member)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("archive", "limits"),
    [
        (link_attack_archive, {}),
        (sparse_archive, {}),
        (lambda: tar_of(*[(file_member(f"f{n}"), b"x") for n in range(4)]), {"MEMBERS": 3}),
        (lambda: tar_of((file_member("big"), b"x" * 200)), {"BYTES": 100}),
    ],
    ids=["links-to-long-folders", "sparse", "too-many-members", "too-many-bytes"],
)
def test_case_archive_beyond_the_rules_is_refused_and_changes_nothing(
    running_step, monkeypatch, archive, limits
):
    for name, value in limits.items():
        monkeypatch.setattr(stepio, f"CASE_MAX_{name}", value)
    caller = running_step()
    before = folder_contents(caller.launch.case_dir)

    answer = caller.send_case(archive())

    assert (answer.status_code, answer.json()["case"][0][:30]) == (
        400,
        "The case archive was refused: ",
    )
    assert folder_contents(caller.launch.case_dir) == before
    assert sorted(path.name for path in caller.launch.case_dir.parent.iterdir()) == [
        "case",
        "steps",
    ]


@pytest.mark.parametrize(
    "archive",
    [
        link_attack_archive,
        sparse_archive,
        lambda: tar_of((link_member("latest", "0.5"), b"")),
        lambda: tar_of(
            (file_member("new.txt"), b"new\n"), (hard_link_member("h", "new.txt"), b"")
        ),
        lambda: tar_of((special_member("fifo", tarfile.FIFOTYPE), b"")),
        lambda: tar_of((file_member("/".join(["d" * 200] * 6)), b"long\n")),
        lambda: tar_of((file_member("n" * 256), b"long\n")),
    ],
    ids=["links-to-long-folders", "sparse", "link", "hard-link", "fifo", "long-name", "long-part"],
)
def test_node_refuses_the_same_archives_before_extracting_anything(tmp_path, archive):
    (tmp_path / "download.tar").write_bytes(archive())
    (tmp_path / "case").mkdir()

    with pytest.raises(ValueError, match="archive member"):
        wrapper.extract(tmp_path / "download.tar", tmp_path / "case")

    assert list((tmp_path / "case").iterdir()) == []


def test_node_refuses_an_archive_of_too_many_members(tmp_path, monkeypatch):
    monkeypatch.setattr(wrapper, "MAX_MEMBERS", 3)
    (tmp_path / "download.tar").write_bytes(
        tar_of(*[(file_member(f"f{n}"), b"x") for n in range(4)])
    )
    (tmp_path / "case").mkdir()

    with pytest.raises(ValueError, match="more than 3 members"):
        wrapper.extract(tmp_path / "download.tar", tmp_path / "case")

    assert list((tmp_path / "case").iterdir()) == []


def test_case_that_cannot_fit_is_refused_with_507(running_step, monkeypatch):
    caller = running_step()
    before = folder_contents(caller.launch.case_dir)
    caller.request("POST", "case/parts/?offset=0", tar_of((file_member("big"), b"x" * 4096)))
    monkeypatch.setattr(stepio, "free_bytes", lambda folder: stepio.MIN_FREE_BYTES + 100)

    archive = tar_of((file_member("big"), b"x" * 4096))
    description = {"size": len(archive), "sha256": hashlib.sha256(archive).hexdigest()}
    answer = caller.request("PUT", "case/", json.dumps(description).encode())

    assert (answer.status_code, answer.json()["code"]) == (507, "insufficient_storage")
    assert folder_contents(caller.launch.case_dir) == before


def test_case_part_that_cannot_fit_is_refused_with_507(running_step, monkeypatch):
    caller = running_step()
    monkeypatch.setattr(stepio, "free_bytes", lambda folder: stepio.MIN_FREE_BYTES)

    answer = caller.request("POST", "case/parts/?offset=0", b"x" * 1000)

    assert answer.status_code == 507
    assert (caller.launch.step_dir / stepio.CASE_UPLOAD).read_bytes() == b""


def test_case_commit_that_does_not_match_what_was_received_is_refused(running_step):
    caller = running_step()
    before = folder_contents(caller.launch.case_dir)
    archive = tar_of((file_member("new.txt"), b"new\n"))
    caller.request("POST", "case/parts/?offset=0", archive[:1000])

    description = {"size": len(archive), "sha256": hashlib.sha256(archive).hexdigest()}
    answer = caller.request("PUT", "case/", json.dumps(description).encode())

    assert (answer.status_code, answer.json()["code"]) == (409, "upload_mismatch")
    assert folder_contents(caller.launch.case_dir) == before


def test_case_part_larger_than_allowed_is_refused(running_step):
    caller = running_step()

    answer = caller.request("POST", "case/parts/?offset=0", b"x" * (16 * 1024 * 1024 + 1))

    assert answer.status_code == 413
    assert not (caller.launch.step_dir / stepio.CASE_UPLOAD).exists()


# First contact and the end


def test_bootstrap_token_is_exchanged_once_for_a_session_secret(running_step):
    caller = running_step(exchanged=False)

    first = caller.exchange()
    again = caller.exchange()
    bootstrap_elsewhere = caller.request("GET", "bundle/", token=caller.bootstrap)

    assert first.status_code == 200
    assert caller.request("GET", "bundle/").status_code == 200
    assert (again.status_code, again.json()["code"]) == (403, "step_io_denied")
    assert bootstrap_elsewhere.status_code == 403
    assert (caller.launch.step_dir / "scheduler_job_id").read_text() == str(SLURM_JOB)
    assert caller.token not in (caller.launch.step_dir / "session").read_text()


def test_exchange_from_another_slurm_job_is_refused(running_step):
    caller = running_step(exchanged=False)

    other_job = caller.exchange(SLURM_JOB + 1)
    invalid = caller.request("PUT", "scheduler-job/", b"../../x", caller.bootstrap)
    superscript = caller.request("PUT", "scheduler-job/", "²".encode(), caller.bootstrap)

    assert (other_job.status_code, other_job.json()["code"]) == (403, "step_io_denied")
    assert [invalid.status_code, superscript.status_code] == [400, 400]
    assert not (caller.launch.step_dir / "session").exists()
    assert caller.exchange().status_code == 200


def test_exchange_waits_until_the_slurm_job_is_recorded(running_step):
    caller = running_step(exchanged=False)
    JobStep.objects.filter(pk=caller.step.pk).update(local_job_id=None)

    answer = caller.exchange()

    assert (answer.status_code, answer["Retry-After"]) == (503, "1")


def test_exchange_for_a_step_that_ended_is_refused(running_step):
    caller = running_step(StepState.COMPLETE, exchanged=False)

    assert caller.exchange().status_code == 403


def test_requests_without_the_session_secret_are_refused(running_step):
    caller = running_step()

    answers = [
        caller.request("GET", "bundle/", token=caller.bootstrap),
        caller.request("POST", "logs/stdout/?offset=0", b"x", token=caller.bootstrap),
        caller.request("PUT", "exit/", b"0", token=caller.bootstrap),
        caller.request("GET", "case/", token=""),
        caller.request("GET", "case/", token="café"),
        caller.client.get(f"/internal/steps/{caller.step.pk}/case/"),
    ]

    assert [answer.status_code for answer in answers] == [403] * 6
    assert not (caller.launch.step_dir / "stdout").exists()
    assert not (caller.launch.step_dir / "exit").exists()


def test_exit_code_is_recorded_once_and_a_repeat_changes_nothing(running_step):
    caller = running_step()

    recorded = caller.request("PUT", "exit/", b"3")
    JobStep.objects.filter(pk=caller.step.pk).update(state=StepState.FAILED)
    repeated = caller.request("PUT", "exit/", b"3")
    changed = caller.request("PUT", "exit/", b"0")
    invalid = caller.request("PUT", "exit/", b"999")

    assert [recorded.status_code, repeated.status_code] == [204, 204]
    assert (changed.status_code, changed.json()["code"]) == (409, "step_ended")
    assert invalid.status_code == 400
    assert (caller.launch.step_dir / "exit").read_text() == "3"


def test_nothing_changes_after_the_exit_code(running_step):
    caller = running_step()
    before = folder_contents(caller.launch.case_dir)
    caller.request("PUT", "exit/", b"0")

    answers = [
        caller.request("PUT", "exit/", b"3"),
        caller.request("POST", "logs/stdout/?offset=0", b"late\n"),
        caller.request("POST", "case/parts/?offset=0", b"x"),
        caller.send_case(tar_of((file_member("new.txt"), b"new\n"))),
    ]

    assert [answer.status_code for answer in answers] == [409] * 4
    assert {answer.json()["code"] for answer in answers} == {"step_ended"}
    assert (caller.launch.step_dir / "exit").read_text() == "0"
    assert not (caller.launch.step_dir / "stdout").exists()
    assert folder_contents(caller.launch.case_dir) == before


def test_step_io_is_left_out_of_the_openapi_document(alice):
    schema = alice.get("/api/v2/schema/?format=json").json()

    assert not [path for path in schema["paths"] if "internal" in path]
