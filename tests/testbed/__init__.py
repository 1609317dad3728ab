"""The real-component test bed: sshd hosts in network namespaces, Tomcat, the example app's repo.

See ``tests/testbed/fixtures.py`` for the fixtures and ``tests/testbed/hosts.py`` for the hosts.
"""
