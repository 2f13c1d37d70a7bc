"""Every name this package takes from Dagster's private modules (``dagster._*``), each with why no public API
does the job. dagster is pinned exactly (1.13.27); ranking_pipeline_tests/test_dagster_internals.py imports
each of them and fails, naming the one that moved, if an upgrade breaks it.

Why, by name:

- ``dev_command``: `ranking-pipeline dev` checks the arguments it passes on to `dagster dev` with dagster
  dev's own parser, so a mistake is one line before anything starts; the click command is not exported.
- ``AssetCheckEvaluationTargetMaterializationData``: a check result counts as current in the UI only when it
  names the materialization it checked; the public AssetCheckResult has no argument for it.
- ``InMemoryJob``, ``ReconstructableRepository``, ``execute_run``, ``InProcessCodeLocationOrigin``,
  ``RemoteJobOrigin``, ``RemoteRepositoryOrigin``, ``LoadableTargetOrigin``: the command line executes runs
  in its own process as runs *of the code location* (with its origin), so the daemon's run-status sensors,
  which match runs by origin, alert on them and follow them like launched runs; dg.execute_job creates runs
  without an origin, and there is no public way to give a run one.
- ``InstanceRef``: the instance `dagster dev` uses when started from the project folder without DAGSTER_HOME
  (settings from ./dagster.yaml, scratch files elsewhere); DagsterInstance.get() needs DAGSTER_HOME.
- ``AssetCheckExecutionRecordStatus``: the anomaly alert reads check execution records, whose status enum is
  not exported.
- ``DagsterSqliteStorage``: dagster.yaml's storage relative to DAGSTER_HOME whatever folder a process starts
  in; Dagster's `sqlite:` storage resolves a relative base_dir against the current folder, and only a storage
  class can change that.
- ``get_current_datetime``, ``get_current_timestamp``: Dagster's clock, which the daemon's run monitoring
  reads too; the long-run warning and the batch metrics use it so that a test freezing it moves all of them.
"""

from dagster._cli.dev import dev_command  # noqa: F401
from dagster._core.definitions.asset_checks.asset_check_evaluation import (  # noqa: F401
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.definitions.job_base import InMemoryJob  # noqa: F401
from dagster._core.definitions.reconstruct import ReconstructableRepository  # noqa: F401
from dagster._core.execution.api import execute_run  # noqa: F401
from dagster._core.instance.ref import InstanceRef  # noqa: F401
from dagster._core.remote_origin import (  # noqa: F401
    InProcessCodeLocationOrigin,
    RemoteJobOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus  # noqa: F401
from dagster._core.storage.sqlite_storage import DagsterSqliteStorage  # noqa: F401
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin  # noqa: F401
from dagster._time import get_current_datetime, get_current_timestamp  # noqa: F401
