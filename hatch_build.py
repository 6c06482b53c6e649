"""Editable installs get the start-up .pth too, so `lm_eval` sees m1 tasks in a dev checkout."""

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CustomBuildHook(BuildHookInterface):
    def initialize(self, version, build_data):
        if version == "editable":
            build_data["force_include_editable"]["m1_harness_autoload.pth"] = "m1_harness_autoload.pth"
