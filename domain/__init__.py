"""The pure domain: aggregates, their events and rules. No I/O, nothing else of ours."""
