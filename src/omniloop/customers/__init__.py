"""One customer across every channel: profiles, identities, merges, consent, touchpoint events."""
