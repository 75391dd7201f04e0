import sys

from outpost.cli import main

sys.exit(main())
