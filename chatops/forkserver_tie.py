"""Imported by the runner's forkserver (see :mod:`chatops.warmstart`), for this side effect only:
the forkserver dies with the runner, and every flow process it forks dies with the forkserver
(:mod:`chatops.lifeline`). Nothing else may import it: it would tie the importer to its parent.
"""

from chatops.lifeline import tie_forks_to_this_process

tie_forks_to_this_process()
