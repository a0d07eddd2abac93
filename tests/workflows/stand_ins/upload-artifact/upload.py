"""The upload-artifact stand-in's step: see action.yml beside it."""

import glob
import json
import os
import sys
import zipfile
from pathlib import Path


def matched_files(patterns: list[str], hidden: bool) -> list[Path]:
    """Files the paths and globs name (folders: every file under them), as the action finds
    them: exclusions start with ``!``; hidden files only when asked for."""
    include = [p for p in patterns if not p.startswith("!")]
    exclude = {Path(f).resolve() for p in patterns if p.startswith("!") for f in glob.glob(p[1:])}
    files: set[Path] = set()
    for pattern in include:
        for match in map(Path, glob.glob(pattern, recursive=True, include_hidden=hidden)):
            found = [match] if match.is_file() else [p for p in match.rglob("*") if p.is_file()]
            files |= {f.resolve() for f in found}
    here = Path.cwd().resolve()
    return sorted(f for f in files - exclude if hidden or not _hidden(f.relative_to(here)))


def _hidden(path: Path) -> bool:
    return any(part.startswith(".") for part in path.parts)


def main() -> int:
    os.chdir(os.environ["GITHUB_WORKSPACE"])  # where the action resolves relative paths
    name = os.environ["NAME"]
    patterns = [line.strip() for line in os.environ["PATHS"].splitlines() if line.strip()]
    files = matched_files(patterns, os.environ.get("INCLUDE_HIDDEN_FILES") == "true")
    if not files:
        where = ", ".join(patterns)
        mode = os.environ.get("IF_NO_FILES_FOUND") or "warn"
        message = (
            f"No files were found with the provided path: {where}. No artifacts will be uploaded."
        )
        if mode == "error":
            print(f"::error::{message}")
            return 1
        if mode == "warn":
            print(f"::warning::{message}")
        return 0
    root = Path(os.path.commonpath([f.parent for f in files]))
    store = Path(os.environ["STAND_IN_ARTIFACTS"]) / os.environ["GITHUB_RUN_ID"]
    store.mkdir(parents=True, exist_ok=True)
    target = store / f"{name}.zip"
    if target.exists() and os.environ.get("OVERWRITE") != "true":
        print(f"::error::Failed to CreateArtifact: an artifact named {name} already exists")
        return 1
    # What GitHub knows of the run that uploaded it (the REST API's ``workflow_run``).
    ref = os.environ.get("GITHUB_REF", "")
    branch = os.environ.get("GITHUB_REF_NAME") or ref.removeprefix("refs/heads/")
    run = {"head_branch": branch, "head_sha": os.environ.get("GITHUB_SHA", "")}
    (store / "run.json").write_text(json.dumps(run), encoding="utf-8")
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            archive.write(file, file.relative_to(root).as_posix())
    print(f"Artifact {name} has been successfully uploaded ({len(files)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
