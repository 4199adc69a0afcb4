"""agentseat.sandbox.graph"""
