"""process_managers"""
