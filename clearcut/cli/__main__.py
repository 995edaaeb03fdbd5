import sys

from clearcut.cli.main import main

sys.exit(main())
