"""When the package was imported: the "seconds after start" of progress logs."""

import time

STARTED = time.time()
