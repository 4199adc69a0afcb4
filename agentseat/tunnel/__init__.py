"""agentseat.tunnel"""
