import sys

from chicago_taxi.streaming.cli import main

sys.exit(main())
