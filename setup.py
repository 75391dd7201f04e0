"""
Everything about the package is in pyproject.toml. This file only copies the clients' naming
rules, _utils/outpost_release.py, into the package of a built wheel, so an installed outpost
carries them while the checkout keeps one copy, which the minions import by its bare name.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

RELEASE_RULES = Path("_utils") / "outpost_release.py"


class BuildWithReleaseRules(build_py):
    def run(self):
        super().run()
        # An editable install has no copy: outpost/rules.py reads the checkout's _utils/.
        if not self.editable_mode:
            target = Path(self.build_lib) / "outpost" / RELEASE_RULES.name
            self.copy_file(str(RELEASE_RULES), str(target))


setup(cmdclass={"build_py": BuildWithReleaseRules})
