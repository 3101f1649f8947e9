import sys

from graddrop_dist.trainer.cli import main

sys.exit(main())
