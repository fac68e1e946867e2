"""The per-replica concept cache and resolution: Ray-free, usable and tested on its own.

`ConceptStore` (tiers, pinning, single-flight, merged sets) ← `ConceptResolver` (request refs →
one delta) ← the Serve deployment; `RegistryWatcher` keeps the store current (hot swap).
"""
