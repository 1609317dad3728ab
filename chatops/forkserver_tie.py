"""Imported by the runner's forkserver (see :mod:`chatops.warmstart`), for these side effects only:
the forkserver dies with the runner, and every flow process it forks dies with the forkserver
(:mod:`chatops.lifeline`); the flow processes' Prefect clients share the forkserver's TLS context
(:mod:`adapters.prefect_tls`). Nothing else may import it: it would tie the importer to its
parent.
"""

from adapters import prefect_tls
from chatops.lifeline import tie_forks_to_this_process

prefect_tls.share()
tie_forks_to_this_process()
