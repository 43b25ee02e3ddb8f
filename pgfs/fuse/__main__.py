"""`python -m pgfs.fuse MOUNTPOINT --dsn ...`: a foreground mount (see pgfs.fuse.control)."""

import sys

from pgfs.fuse.control import main

sys.exit(main())
