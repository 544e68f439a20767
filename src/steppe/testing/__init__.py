"""Helpers for tests of Steppe and of code built on it: mock objects and an in-memory
scheduler harness. Nothing here touches the network or the clock."""
