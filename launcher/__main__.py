import sys

from graddrop_launcher.cli import main

sys.exit(main())
