"""Slack's side of the gateway: reading its forms (:mod:`.form`), answering later through a
``response_url`` (:mod:`.respond`). What the answers say is :mod:`chatops.answers`."""
