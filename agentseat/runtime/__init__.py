"""agentseat.runtime"""
