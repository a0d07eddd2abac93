from machine_learning.cli import main
from machine_learning.contract.failures import exit_process

exit_process(main())
