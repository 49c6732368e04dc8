"""``python -m avsr.models.convert SRC DST.safetensors``."""

from avsr.models.convert import main

raise SystemExit(main())
