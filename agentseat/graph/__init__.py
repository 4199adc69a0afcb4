"""agentseat.graph"""
