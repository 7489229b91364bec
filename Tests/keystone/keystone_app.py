"""WSGI entry point for Keystone under gunicorn, for the integration tests.

`keystone.wsgi.api` initialises oslo.config with the process's own command line (sys.argv[1:]),
which under gunicorn is gunicorn's arguments: keystone rejects them and the worker exits with
status 2, over and over. Forget them before keystone is imported (this runs in the worker, after
gunicorn has parsed its own options). The configuration file comes from OS_KEYSTONE_CONFIG_FILES.
"""

import sys

sys.argv = sys.argv[:1]

from keystone.wsgi.api import application  # noqa: E402,F401
