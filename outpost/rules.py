"""
The master's rules for app names, versions and how deep a manifest nests, from
``_utils/outpost_release.py``: the CLI refuses exactly what a client would refuse, with no second
copy to drift. A built wheel carries that file inside this package (``setup.py`` copies it); a
checkout or an editable install reads it from ``_utils/`` beside this package. Either way it comes
from where outpost is installed, never from a folder the operators control.
"""

import importlib.util
import pathlib

from outpost.errors import OutpostError

PACKAGE = pathlib.Path(__file__).resolve().parent
IN_WHEEL = PACKAGE / "outpost_release.py"
IN_CHECKOUT = PACKAGE.parent / "_utils" / "outpost_release.py"


def _release_library_path():
    for path in (IN_WHEEL, IN_CHECKOUT):
        if path.is_file():
            return path
    raise OutpostError(f"neither {IN_WHEEL} nor {IN_CHECKOUT} exists; reinstall outpost")


RELEASE_LIBRARY = _release_library_path()


def _load_release_library():
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
