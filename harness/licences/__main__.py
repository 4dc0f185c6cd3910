"""`python -m harness.licences`: the licence check (see harness/licences/__init__.py)."""

from __future__ import annotations

import sys

from harness.licences import main

sys.exit(main())
