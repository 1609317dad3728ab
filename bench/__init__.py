"""The benchmark of the user path against a hand-written fabric script: run ``bench/run.sh``."""
