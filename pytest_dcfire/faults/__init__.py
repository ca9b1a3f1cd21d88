"""What a fire does to a site: network cuts, storage freezes, power loss and pauses."""
