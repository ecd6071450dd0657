import sys

from valle2.cli import main

sys.exit(main())
