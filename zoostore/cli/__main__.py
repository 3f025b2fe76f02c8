import sys

from zoostore.cli import main

sys.exit(main())
