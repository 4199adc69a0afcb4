"""agentseat.identity"""
