"""Stages: functions over batches run by ferry.runtime.runner (parser, writer; later router, sampler, exporter)."""
