"""write_api"""
