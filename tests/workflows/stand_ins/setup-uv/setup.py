"""The setup-uv stand-in's step: see action.yml beside it."""

import os
import subprocess
import sys
from pathlib import Path

folder = Path(os.environ["STAND_IN_UV_DIR"])
uv = folder / "uv"
found = subprocess.run([uv, "--version"], capture_output=True, text=True, check=True)
version = found.stdout.split()[1]
wanted = os.environ.get("WANTED", "").strip()
if wanted and wanted not in ("latest", version):
    print(f"::error::setup-uv stand-in: uv {wanted} was asked for; this machine has {version}")
    sys.exit(1)
with open(os.environ["GITHUB_PATH"], "a", encoding="utf-8") as path:
    path.write(f"{folder}\n")
with open(os.environ["GITHUB_OUTPUT"], "a", encoding="utf-8") as outputs:
    outputs.write(f"uv-version={version}\nuv-path={uv}\n")
if os.environ.get("PYTHON_VERSION"):
    with open(os.environ["GITHUB_ENV"], "a", encoding="utf-8") as env:
        env.write(f"UV_PYTHON={os.environ['PYTHON_VERSION']}\n")
print(f"uv {version} on PATH (stand-in for astral-sh/setup-uv)")
