"""Every run executes its steps in the run's own process.

The steps are few and the scoring step already uses parallel database sessions; the default multiprocess
executor would start a new Python process (and import Dagster and this project again) for every step of a
UI materialization, which cost more than the step itself.
"""

import dagster as dg


@dg.definitions
def executor() -> dg.Definitions:
    return dg.Definitions(executor=dg.in_process_executor)
