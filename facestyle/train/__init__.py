"""Trainers, one per stage: generator, mapping networks, flows, harmony classifier, parser."""
