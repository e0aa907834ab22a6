"""Reads: the log search language (language.py) compiled to SQL (logs_sql.py), traces, metrics, tail.

Everything here returns SQL strings; the API runs them against the store.
"""
