"""python -m scopeml.serving.edge: the scopeml-export command."""

import sys

from scopeml.serving.edge.cli import main

sys.exit(main())
