"""``build.json``: which commit, branch and PR a train run was for, handed to the comment job.

A fork's run writes it, so the privileged comment job reads it as untrusted data: through
this record's validating loader only (standard library, no symlinks, bounded size).
"""

from __future__ import annotations

from dataclasses import dataclass

from machine_learning.contract.provenance import BuildContext
from machine_learning.contract.records import JsonRecord

SHA_LENGTH = 40


@dataclass(frozen=True)
class BuildInfo(JsonRecord):
    head_sha: str
    pr_number: int | None = None
    branch: str = ""
    event: str = ""
    run_url: str = ""

    def __post_init__(self) -> None:
        if len(self.head_sha) != SHA_LENGTH or not all(
            c in "0123456789abcdef" for c in self.head_sha
        ):
            raise ValueError(f"head_sha {self.head_sha[:48]!r} is not a 40-digit commit SHA")
        if self.pr_number is not None and self.pr_number <= 0:
            raise ValueError(f"pr_number must be a positive integer, got {self.pr_number}")

    @classmethod
    def of(cls, context: BuildContext) -> BuildInfo:
        return cls(
            head_sha=context.git_sha,
            pr_number=context.pr_number,
            branch=context.branch,
            event=context.event,
            run_url=context.run_url,
        )
