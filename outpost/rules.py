"""
The master's rules for app names, versions and how deep a manifest nests, from
``_utils/outpost_release.py`` beside this package: the CLI refuses exactly what a client would
refuse, with no second copy to drift.
"""

import importlib.util
import pathlib

from outpost.errors import OutpostError

RELEASE_LIBRARY = pathlib.Path(__file__).resolve().parent.parent / "_utils" / "outpost_release.py"


def _load_release_library():
    if not RELEASE_LIBRARY.is_file():
        raise OutpostError(f"{RELEASE_LIBRARY} is missing; outpost runs from its checkout")
    spec = importlib.util.spec_from_file_location("outpost_release", RELEASE_LIBRARY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_library = _load_release_library()
APP_NAME = _library.APP_NAME
VERSION = _library.VERSION
MANIFEST_MAX_DEPTH = _library.MANIFEST_MAX_DEPTH
app_name_problem = _library.app_name_problem
nesting_depth = _library.nesting_depth
version_problem = _library.version_problem
