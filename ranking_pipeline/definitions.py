"""The one entry point: every Dagster object under ranking_pipeline/defs/, assembled by Dagster."""

from pathlib import Path

import dagster as dg

from ranking_pipeline.lib import settings


@dg.definitions
def defs() -> dg.Definitions:
    # The settings are checked before the defs folder loads, and a wrong one is raised as a Dagster error:
    # Dagster passes those through its loading boundary unwrapped, so the code location's load error (in the
    # UI, `dagster dev`'s log, `dagster definitions validate`) starts with the one line naming the variable.
    try:
        settings.validate()
    except settings.SettingsError as error:
        raise dg.DagsterInvalidDefinitionError(str(error)) from None
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
