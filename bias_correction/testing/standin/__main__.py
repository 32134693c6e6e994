"""``python -m bias_correction.testing.standin --workdir DIR --today YYYY-MM-DD [--port N]``."""

import sys

from bias_correction.testing.standin.app import main

sys.exit(main())
