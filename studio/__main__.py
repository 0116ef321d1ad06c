"""``python -m studio`` (and the ``restoration-studio`` gui-script, ``studio.__main__:main``)."""

import sys

from studio.app import main

if __name__ == "__main__":
    sys.exit(main())
