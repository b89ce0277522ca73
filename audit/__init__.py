"""Audits from the event log alone: replay a stream, verify every rule over the whole log,
tamper evidence (a hash chain over the stored records), and export for external tools."""
