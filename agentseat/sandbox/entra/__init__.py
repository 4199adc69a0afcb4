"""agentseat.sandbox.entra"""
