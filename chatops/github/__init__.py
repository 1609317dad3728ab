"""GitHub's side of the gateway: webhook deliveries (:mod:`.events`) become deploy requests."""
