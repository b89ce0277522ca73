"""read_api"""
