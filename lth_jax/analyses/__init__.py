"""Analyses that read a study's stored trees: linear mode connectivity, tickets that
travel (export, transfer), compaction and the edge trainer."""
