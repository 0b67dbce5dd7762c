"""python -m scopeml.serving.edge: the scopeml-export command."""

import sys

from scopeml.cli.export import main

sys.exit(main())
