"""`python -m tasks`: the task list; `python -m tasks benchmark`: the table."""

import sys

from tasks.suite import main

sys.exit(main())
