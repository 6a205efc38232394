"""``python -m maskrep ...`` (and ``torchrun ... -m maskrep ...``): the ``maskrep`` command."""

import sys

from .cli import main

sys.exit(main())
