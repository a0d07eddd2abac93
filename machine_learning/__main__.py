import sys

from machine_learning.cli import main

sys.exit(main())
