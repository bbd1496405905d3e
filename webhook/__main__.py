"""``python -m webhook`` runs the same command line as ``agent-sandbox-webhook``."""

import sys

from webhook.cli import main

sys.exit(main())
