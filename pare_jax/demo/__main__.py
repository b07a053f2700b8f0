import sys

from pare_jax.demo.app import main

sys.exit(main())
