import sys

from mlops_module.cli import main

sys.exit(main())
