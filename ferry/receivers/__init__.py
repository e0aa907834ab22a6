"""Receivers ("wrappers"): protocol bytes in -> columnar batches -> durable on a bus topic."""
