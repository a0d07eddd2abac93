import gc
import sys

from machine_learning.cli import main

status = main()
# Leave what the command built to the OS: the interpreter's last garbage collection walks every
# object MLflow, scikit-learn and XGBoost made, ~1 s of each command (benchmarks/exit_cost.py).
gc.freeze()
sys.exit(status)
