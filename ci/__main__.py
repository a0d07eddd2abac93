import gc
import sys

from ci.cli import main

status = main()
# Leave what the command built to the OS: the interpreter's last garbage collection walks every
# object MLflow and pydantic made, ~1 s of each command (benchmarks/exit_cost.py).
gc.freeze()
sys.exit(status)
