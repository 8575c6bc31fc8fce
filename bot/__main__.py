"""`python -m bot` is the `byoi` command."""

import sys

from bot.cli import main

sys.exit(main())
