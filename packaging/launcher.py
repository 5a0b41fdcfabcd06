"""Entry script of the frozen FreeSwim Studio.

PyInstaller runs its entry script as ``__main__``. Calling ``freeswim_app.main``
from here keeps it an ordinary module, so its ``__file__`` points into the
bundled ``freeswim_app`` folder where the icons and style sheet are.
"""

import sys

from freeswim_app.main import main

if __name__ == "__main__":
    sys.exit(main())
